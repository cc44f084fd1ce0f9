"""``reference.run(case)``: one deterministic run of a case through the reference kernel
(MODEL.md §5).

Tasks: threads ``0..T-1``, ``main`` (T: setup and post), the swap I/O daemon (T+1), the RCU
daemon (T+2: spawned for the shared numbering, never started: with ``CONFIG_PER_VMA_LOCK=n``
nothing is freed through RCU) and, if the case names one, the userfaultfd monitor (T+3).

Phases: setup (serial policy), the concurrent part (the case's strategy), post (serial). At the
end of each phase nothing can run; every unfinished user task then either sleeps in
``handle_userfault`` (its operation is ``hung``, the task leaves) or the run is a deadlock
(with the wait-for graph) and stops. Running out of steps is a livelock. Under the ``serial``
strategy a snapshot is taken after every operation, at the next operation's start (when the
daemons have drained) and at the end. With `features` (the default), the record carries the
run's interleaving features (`reference.sched`), tagged `FEATURE_TAG_REFERENCE`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from fuzz.case import Case, Op, OpKind, Strategy
from fuzz.record import (
    FEATURE_TAG_REFERENCE,
    RES_HUNG,
    RES_KILLED,
    RES_NOT_RUN,
    STATUS_DEADLOCK,
    STATUS_LIVELOCK,
    STATUS_OK,
    VMA_LOCK_COUNTERS,
    OpRecord,
    RunRecord,
    Snapshot,
    WaitEdge,
)
from reference.device import dmirror_migrate_to_device
from reference.fault import user_access
from reference.fork import do_fork
from reference.migrate import do_pages_move
from reference.mmap import do_madvise_dontneed, do_mprotect_pkey, sys_munmap, vm_mmap_pgoff
from reference.objects import Kernel, Mm, UffdWait
from reference.primitives import (
    Contract,
    Current,
    FatalViolationError,
    Gen,
    assert_no_locks_held,
    fatal_signal_pending,
)
from reference.reclaim import do_madvise_pageout
from reference.sched import (
    BLOCKED,
    FEATURE_BITS,
    IDLE,
    LIVELOCK,
    Runtime,
    SerialPolicy,
    Task,
    TaskGen,
    make_policy,
)
from reference.snapshot import check_quiescence, memory_image, take_snapshot
from reference.swap import swap_io_daemon
from reference.userfaultfd import (
    uffd_monitor,
    userfaultfd_copy,
    userfaultfd_register,
    userfaultfd_unregister,
)

ESRCH = -errno.ESRCH

Handler = Callable[[Current, Mm, Op], Gen[int]]

OP_FUNCTIONS = {kind: kind.name.lower() for kind in OpKind}

HANDLERS: dict[OpKind, Handler] = {
    OpKind.READ: lambda c, mm, op: user_access(c, mm, op.page, False, 0),
    OpKind.WRITE: lambda c, mm, op: user_access(c, mm, op.page, True, op.value),
    OpKind.MMAP: lambda c, mm, op: vm_mmap_pgoff(c, mm, op.page, op.npages, op.prot),
    OpKind.MUNMAP: lambda c, mm, op: sys_munmap(c, mm, op.page, op.npages),
    OpKind.MPROTECT: lambda c, mm, op: do_mprotect_pkey(c, mm, op.page, op.npages, op.prot),
    OpKind.MADVISE_DONTNEED: lambda c, mm, op: do_madvise_dontneed(c, mm, op.page, op.npages),
    OpKind.MADVISE_PAGEOUT: lambda c, mm, op: do_madvise_pageout(c, mm, op.page, op.npages),
    OpKind.MIGRATE: lambda c, mm, op: do_pages_move(c, mm, op.page),
    OpKind.TO_DEVICE: lambda c, mm, op: dmirror_migrate_to_device(c, mm, op.page),
    OpKind.UFFD_REGISTER: lambda c, mm, op: userfaultfd_register(c, mm, op.page, op.npages),
    OpKind.UFFD_UNREGISTER: lambda c, mm, op: userfaultfd_unregister(c, mm, op.page, op.npages),
    OpKind.UFFD_COPY: lambda c, mm, op: userfaultfd_copy(c, mm, op.page, op.value),
    OpKind.FORK: lambda c, mm, op: do_fork(c, mm),
}


def run(case: Case, trace: bool = False, features: bool = True) -> RunRecord:
    """Run `case` through the reference engine; the same case gives the same record. With
    `trace`, lock events and the step trace are kept; with `features`, the interleaving
    features."""
    return Engine(case, trace, features).run()


class Engine:
    """The state of one run: the kernel, the tasks, the op records."""

    def __init__(self, case: Case, trace: bool, features: bool = True) -> None:
        self.case = case
        self.trace = trace
        self.rt = Runtime(trace=trace, features=features)
        self.contract = Contract(self.rt, trace)
        self.k = Kernel(self.rt, self.contract, case.nr_pages, case.swap_async)
        mm0 = Mm(0)
        mm0.visible = True
        self.k.add_mm(mm0)
        self.all_ops = case.all_ops()
        self.results: list[list[int]] = [[-1, -1, RES_NOT_RUN] for _ in self.all_ops]
        self.owner: list[int] = [-1] * len(self.all_ops)
        self.monitor_records: list[OpRecord] = []
        self.snapshots: list[Snapshot] = []
        self.pending_snapshot = -1
        self.serial = case.schedule.strategy is Strategy.SERIAL
        self.status = STATUS_OK
        self.stopped = False
        self.wait_for: tuple[WaitEdge, ...] = ()
        nthreads = len(case.threads)
        self.threads = [self._spawn(f"t{i}", False) for i in range(nthreads)]
        self.finished = [False] * nthreads
        self.main = self._spawn("main", False)
        self.io = self._spawn("swap_io", True)
        self._spawn("rcu", True)
        self.monitor = self._spawn("uffd_monitor", True) if case.uffd_monitor else None

    def _spawn(self, name: str, daemon: bool) -> Current:
        task = self.rt.spawn(name, daemon)
        cur = Current(task, self.k, self.contract)
        task.data = cur
        return cur

    def currents(self) -> list[Current]:
        return [t.data for t in self.rt.tasks if isinstance(t.data, Current)]

    # -- phases -----------------------------------------------------------------------------

    def run(self) -> RunRecord:
        rt = self.rt
        rt.start(self.io.task, swap_io_daemon(self.io))
        if self.monitor is not None:
            first = len(self.all_ops)
            rt.start(self.monitor.task, uffd_monitor(self.monitor, self.monitor_records, first))
        indexed = list(enumerate(self.all_ops))
        setup = [(i, op) for i, (part, _, op) in indexed if part == "setup"]
        post = [(i, op) for i, (part, _, op) in indexed if part == "post"]
        try:
            self._phase_setup(setup)
            self._phase_threads(indexed)
            self._phase_post(post)
            if self.status == STATUS_OK:
                self._take_pending_snapshot()
                check_quiescence(self.k, self.currents(), self.main)
        except FatalViolationError:
            self.stopped = True
        record = self._record()
        self._unlink()
        return record

    def _unlink(self) -> None:
        """Break the model's reference cycles once the record is built (a task and its
        `current`, a suspended task body and what its frames hold, an mm and its VMAs and
        uffd context), so that reference counting frees the run at once: a run then leaves
        nothing for the cyclic garbage collector to trace (`fuzz.harness.cyclic_gc_deferred`).
        Nothing of the run may be used afterwards."""
        for t in self.rt.tasks:
            t.data = t.gen = t.wait = None
            t.sleep_wait = []
        for mm in self.k.mms:
            if mm is not None:
                mm.vmas, mm.detached = [], []
                del mm.uffd  # UffdCtx.mm points back

    def _phase_setup(self, setup: list[tuple[int, Op]]) -> None:
        self.rt.policy = SerialPolicy()
        self.rt.start(self.main.task, self._user_body(self.main, setup, -1))
        self._run_phase()

    def _phase_threads(self, indexed: list[tuple[int, tuple[str, int, Op]]]) -> None:
        if self.status != STATUS_OK:
            return
        case, rt = self.case, self.rt
        per_thread: list[list[tuple[int, Op]]] = [[] for _ in self.threads]
        for i, (part, t, op) in indexed:
            if part == "thread":
                per_thread[t].append((i, op))
        for t, cur in enumerate(self.threads):
            rt.start(cur.task, self._user_body(cur, per_thread[t], t))
        s = case.schedule
        rt.policy = make_policy(int(s.strategy), s.seed, s.depth, s.steps, s.choices, len(rt.tasks))
        self._run_phase()

    def _phase_post(self, post: list[tuple[int, Op]]) -> None:
        if self.status != STATUS_OK:
            return
        self.rt.policy = SerialPolicy()
        self.rt.start(self.main.task, self._user_body(self.main, post, -1))
        self._run_phase()

    def _run_phase(self) -> None:
        """Run until nothing can run; settle hung tasks; detect deadlock and livelock."""
        while True:
            outcome = self.rt.run()
            if outcome == LIVELOCK:
                self.status = STATUS_LIVELOCK
                return
            assert outcome == IDLE
            blocked = [t for t in self.rt.unfinished() if t.state == BLOCKED]
            if not blocked:
                return
            if not all(isinstance(t.wait, UffdWait) for t in blocked):
                self.status = STATUS_DEADLOCK
                self.wait_for = tuple(WaitEdge(*e) for e in self.rt.wait_for_graph())
                return
            for t in blocked:
                self._hang(t)  # and the run goes on: other tasks may still have ops to run

    def _hang(self, task: Task) -> None:
        """A user task asleep in handle_userfault that nothing can serve: its op is hung."""
        wait = task.wait
        assert isinstance(wait, UffdWait)
        if wait in wait.ctx.waiters:
            wait.ctx.waiters.remove(wait)
        cur = task.data
        assert isinstance(cur, Current)
        for i, owner in enumerate(self.owner):
            if owner == task.tid and self.results[i][0] >= 0 and self.results[i][1] < 0:
                self.results[i][2] = RES_HUNG
                self.pending_snapshot = i
        self.rt.abandon(task)
        self.rt.active_ops -= 1
        if self.rt.active is task:
            self.rt.active = None
        self._mark_finished(cur)

    def _mark_finished(self, cur: Current) -> None:
        for t, c in enumerate(self.threads):
            if c is cur:
                self.finished[t] = True

    # -- user tasks -------------------------------------------------------------------------

    def _user_body(self, cur: Current, ops: list[tuple[int, Op]], thread: int) -> TaskGen:
        rt = self.rt
        for idx, op in ops:
            yield "op:start"
            self._take_pending_snapshot()
            if cur.killed:
                break  # a killed task stops: its remaining ops are not run
            self.owner[idx] = cur.tid
            cur.op_index = idx
            self.results[idx][0] = rt.op_begin(cur.task)
            self.results[idx][2] = 0  # pending: no result until it returns
            started = self._start_op(cur, op)
            # (A generator handed straight to `yield from`: no extra frame on every step.)
            result = started if isinstance(started, int) else (yield from started)
            if fatal_signal_pending(cur):  # returning to user space with SIGKILL pending
                result = RES_KILLED
            assert_no_locks_held(cur, OP_FUNCTIONS[op.kind])
            self.results[idx][1] = rt.op_end(cur.task)
            self.results[idx][2] = result
            self.pending_snapshot = idx
        if thread >= 0:
            self.finished[thread] = True

    def _start_op(self, cur: Current, op: Op) -> int | Gen[int]:
        """The result of `op` if it is immediate, else the generator that runs it."""
        if op.kind is OpKind.KILL:
            return self._kill(op.target)
        mm = self.k.mm(op.mm)
        if mm is None:
            return ESRCH
        return HANDLERS[op.kind](cur, mm, op)

    def _kill(self, target: int) -> int:
        """``kill(t, SIGKILL)``: wake `t` if it sleeps killably (MODEL.md §5)."""
        if target >= len(self.threads) or self.finished[target]:
            return ESRCH
        cur = self.threads[target]
        cur.killed = True
        if cur.task.state == BLOCKED and cur.killable:
            self.rt.wake(cur.task)
        return 0

    def _take_pending_snapshot(self) -> None:
        if self.serial and self.pending_snapshot >= 0:
            self.snapshots.append(take_snapshot(self.k, self.pending_snapshot, self.currents()))
        self.pending_snapshot = -1

    # -- the record -------------------------------------------------------------------------

    def _record(self) -> RunRecord:
        ops = [
            OpRecord(i, part, self._task_of(i, part, t), op, *self.results[i])
            for i, (part, t, op) in enumerate(self.all_ops)
        ]
        ops.extend(self.monitor_records)
        contract, rt = self.contract, self.rt
        tag = FEATURE_TAG_REFERENCE << FEATURE_BITS
        return RunRecord(
            engine="reference",
            status=self.status,
            ops=tuple(ops),
            image=memory_image(self.k),
            violations=tuple(contract.violations),
            snapshots=tuple(self.snapshots),
            lock_events=tuple(contract.events or ()),
            trace=tuple(rt.trace or ()),
            wait_for=self.wait_for,
            migration_failures=tuple(self.k.migration_failures),
            counters=tuple((name, 0) for name in VMA_LOCK_COUNTERS),
            schedule=tuple(rt.chosen),
            choices=tuple(rt.choice_log),
            steps=rt.step,
            growths=tuple(self.k.growths),
            features=tuple(tag | b for b in rt.feature_buckets()),
            extra={
                "stopped": self.stopped,
            },
        )

    def _task_of(self, i: int, part: str, thread: int) -> int:
        return self.threads[thread].tid if part == "thread" else self.main.tid
