"""The contract layer: the model's lockdep and KASAN, which every kernel path goes through.

Every lock acquisition and release, every sleep and every PTE write of the reference engine
calls into this module (or into the lock modules built on it: `mmap_lock`, `folio`,
`pgtable`), which keeps, per task, the list of locks it holds and checks the rules of MODEL.md
§4.2 *independently of the handler logic*. A broken rule is recorded as a `Violation` with its
stable rule id; the run goes on unless continuing would corrupt the model (`FatalViolationError`).

Rules checked here (the rest live with the lock they are about):

=========================  ======================================================================
rule                       checked where
=========================  ======================================================================
lock.release-unheld        `lock_released`: the task does not hold the lock in that mode
lock.recursive             `lock_acquired`: the task already holds the lock (any mode)
lock.sleep-under-ptl       `might_sleep`: a blocking wait, I/O or timed sleep with a spinlock held
lock.held-at-return        `assert_no_locks_held`: a user operation returns holding something
lock.held-at-quiescence    `reference.snapshot.check_quiescence`
=========================  ======================================================================

**Spinlocks** (PTL, ``mm->page_table_lock``): a task may reach an ``[I]`` yield point while
holding one (another CPU interleaves), but never a sleeping one. A task that finds a spinlock
held *spins*: it is not runnable until the holder releases it (all spinners then retry).

**Lock summary.** Every acquisition and release also updates `reference.sched.Task.locks`, the
summary of what the task holds that the scheduler's interleaving features read: a 4-bit count
per lock class (`reference.sched.LOCK_FIELDS`; the class of a lock comes from its name). A
folio's ``PG_locked`` counts for the task that took it until anyone unlocks the folio (the I/O
completion, for a folio handed to writeback).

Tasks carry a `Current` (``task.data``), the model of ``current``: the locks it holds, its
fatal signal, whether it sleeps killably, and its ``mmu_gather`` batch of folio references.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from fuzz.record import LockEvent, Violation
from reference.sched import LOCK_FIELDS, Runtime, Task

if TYPE_CHECKING:
    from reference.objects import Folio, Kernel

T = TypeVar("T")
Gen: TypeAlias = Generator[str, None, T]

MAX_VIOLATIONS = 64

# `Task.locks` shifts: the read (or only) mode of each lock class; write mode is 4 bits higher.
_SHIFT_MMAP = 4 * LOCK_FIELDS.index("mmap_lock:r")
_SHIFT_VM = 4 * LOCK_FIELDS.index("vm_lock:r")
_SHIFT_PTL = 4 * LOCK_FIELDS.index("ptl")
_SHIFT_PAGE_TABLE_LOCK = 4 * LOCK_FIELDS.index("page_table_lock")
FOLIO_LOCK_WEIGHT = 1 << 4 * LOCK_FIELDS.index("folio_lock")


def lock_shift(name: str) -> int:
    """The `Task.locks` shift of the lock called `name` (read or spin mode)."""
    if name.endswith(".ptl"):
        return _SHIFT_PTL
    if name.endswith(".page_table_lock"):
        return _SHIFT_PAGE_TABLE_LOCK
    if name.endswith(".vm_lock"):
        return _SHIFT_VM
    return _SHIFT_MMAP


class ModelError(Exception):
    """A broken internal invariant of the model itself (never an expected outcome)."""


class FatalViolationError(Exception):
    """Raised after a violation that would corrupt the model if the run went on."""


class Contract:
    """Per-run lockdep/KASAN state: the violations found and (with tracing) the lock events."""

    __slots__ = ("events", "folio_owner", "rt", "violations")

    def __init__(self, rt: Runtime, trace: bool) -> None:
        self.rt = rt
        self.violations: list[Violation] = []
        self.events: list[LockEvent] | None = [] if trace else None
        self.folio_owner: dict[str, int] = {}  # locked folio -> the task that locked it

    def violate(self, tid: int, rule: str, function: str, message: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(Violation(rule, function, message, self.rt.step, tid))

    def event(self, tid: int, action: str, primitive: str, obj: str, mode: str) -> None:
        if primitive == "folio_lock":
            self._folio_lock_summary(tid, action, obj)
        if self.events is not None:
            self.events.append(LockEvent(self.rt.step, tid, action, primitive, obj, mode))

    def _folio_lock_summary(self, tid: int, action: str, obj: str) -> None:
        tasks = self.rt.tasks
        if action == "acquire":
            self.folio_owner[obj] = tid
            tasks[tid].locks += FOLIO_LOCK_WEIGHT
        elif action == "release":
            owner = self.folio_owner.pop(obj, None)
            if owner is not None:
                tasks[owner].locks -= FOLIO_LOCK_WEIGHT


class Lock:
    """Base of every lock object: a name for reports and the tasks that hold it."""

    __slots__ = ("name", "weight_read", "weight_write")

    def __init__(self, name: str) -> None:
        self.name = name
        # What holding it adds to `Task.locks`: in read (or spin) mode, in write mode.
        shift = lock_shift(name)
        self.weight_read = 1 << shift
        self.weight_write = 1 << shift + 4

    def describe(self) -> str:
        return self.name

    def holder_tids(self) -> tuple[int, ...]:
        raise NotImplementedError


class Current:
    """The model of ``current``: one per task (``task.data``)."""

    __slots__ = (
        "contract",
        "held",
        "kernel",
        "killable",
        "killed",
        "nspin",
        "op_index",
        "task",
        "tid",
        "tlb",
    )

    def __init__(self, task: Task, kernel: Kernel, contract: Contract) -> None:
        self.task = task
        self.tid = task.tid
        self.kernel = kernel
        self.contract = contract
        self.held: list[tuple[Lock, str]] = []
        self.nspin = 0
        self.killed = False  # fatal_signal_pending(current)
        self.killable = False  # sleeping in a killable (or interruptible) wait
        self.tlb: list[Folio] = []  # mmu_gather: references put by tlb_finish_mmu
        self.op_index = -1  # the case operation this task is running (for reports)

    @property
    def rt(self) -> Runtime:
        return self.contract.rt

    def __repr__(self) -> str:
        return f"Current({self.tid})"


def violate(cur: Current, rule: str, function: str, message: str, fatal: bool = False) -> None:
    """Record a broken rule; with `fatal`, stop the run (continuing would corrupt the model)."""
    cur.contract.violate(cur.tid, rule, function, message)
    if fatal:
        raise FatalViolationError(f"{rule} in {function}: {message}")


def fatal_signal_pending(cur: Current) -> bool:
    return cur.killed


def holds(cur: Current, lock: Lock, mode: str | None = None) -> bool:
    """Whether `cur` holds `lock` (in `mode`, if given)."""
    # A loop rather than any(generator): this runs on every acquisition and every lock
    # assertion, and building the generator costs more than the search.
    for held, m in cur.held:  # noqa: SIM110
        if held is lock and (mode is None or m == mode):
            return True
    return False


def lock_acquired(cur: Current, lock: Lock, mode: str, primitive: str) -> None:
    """Account an acquisition by `cur` (after it succeeded)."""
    held = cur.held
    for h, _ in held:  # holds(cur, lock), inlined: every acquisition comes through here
        if h is lock:
            violate(cur, "lock.recursive", primitive, f"{lock.name} acquired ({mode}) while held")
            break
    held.append((lock, mode))
    cur.task.locks += lock.weight_write if mode == "w" else lock.weight_read
    if mode == "spin":
        cur.nspin += 1
    cur.contract.event(cur.tid, "acquire", primitive, lock.name, mode)


def lock_released(cur: Current, lock: Lock, mode: str, primitive: str) -> bool:
    """Account a release by `cur`; False (and a violation) if it did not hold the lock."""
    held = cur.held
    for i in range(len(held) - 1, -1, -1):
        h = held[i]
        if h[0] is lock and h[1] == mode:
            del held[i]
            cur.task.locks -= lock.weight_write if mode == "w" else lock.weight_read
            if mode == "spin":
                cur.nspin -= 1
            cur.contract.event(cur.tid, "release", primitive, lock.name, mode)
            return True
    violate(cur, "lock.release-unheld", primitive, f"{lock.name} released ({mode}) but not held")
    return False


def might_sleep(cur: Current, function: str) -> None:
    """``might_sleep()``: a blocking point must not be reached holding a spinlock."""
    if cur.nspin:
        names = ", ".join(lk.name for lk, m in cur.held if m == "spin")
        violate(cur, "lock.sleep-under-ptl", function, f"may sleep holding {names}")


def assert_no_locks_held(cur: Current, function: str, rule: str = "lock.held-at-return") -> None:
    """Return to user space (or quiescence): the task must hold nothing."""
    if cur.held:
        names = ", ".join(f"{lk.name}:{m}" for lk, m in cur.held)
        violate(cur, rule, function, f"still holding {names}")


def schedule_timeout_uninterruptible(cur: Current, site: str) -> Gen[None]:
    """``schedule_timeout_uninterruptible(1)``: sleep until another task has run."""
    might_sleep(cur, site.partition(":")[0])
    cur.rt.sleep_timed(cur.task)
    yield site


def io_schedule(cur: Current, site: str) -> Gen[None]:
    """Synchronous I/O (zram-like): may sleep, completes inside the call."""
    might_sleep(cur, site.partition(":")[0])
    yield site


# ---------------------------------------------------------------------------------------------
# Spinlocks


class SpinLock(Lock):
    """A spinlock (PTL, ``page_table_lock``); spinners are not runnable until it is free."""

    __slots__ = ("owner", "spinners")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.owner: Current | None = None
        self.spinners: list[Task] = []

    def holder_tids(self) -> tuple[int, ...]:
        return () if self.owner is None else (self.owner.tid,)


def spin_trylock(cur: Current, lock: SpinLock) -> bool:
    if lock.owner is not None:
        return False
    lock.owner = cur
    lock_acquired(cur, lock, "spin", "spin_lock")
    return True


def spin_lock(cur: Current, lock: SpinLock) -> Gen[None]:
    """``spin_lock()``: spins (not runnable) while another task holds `lock`."""
    while lock.owner is not None:
        if lock.owner is cur:
            violate(cur, "lock.recursive", "spin_lock", f"{lock.name} taken twice", fatal=True)
        cur.contract.event(cur.tid, "wait", "spin_lock", lock.name, "spin")
        lock.spinners.append(cur.task)
        cur.rt.block(cur.task, lock)
        yield "spin_lock:spin"
    lock.owner = cur
    lock_acquired(cur, lock, "spin", "spin_lock")


def spin_unlock(cur: Current, lock: SpinLock) -> None:
    if lock.owner is not cur:
        violate(cur, "lock.release-unheld", "spin_unlock", f"{lock.name} not held by the task")
        return
    lock_released(cur, lock, "spin", "spin_unlock")
    lock.owner = None
    if lock.spinners:
        rt = cur.rt
        for t in lock.spinners:
            rt.wake(t)
        lock.spinners.clear()


class WaitQueue(Lock):
    """A plain wait queue (the I/O daemon's, the uffd monitor's): waking wakes everyone."""

    __slots__ = ("sleepers",)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.sleepers: list[Task] = []

    def holder_tids(self) -> tuple[int, ...]:
        return ()

    def sleep(self, cur: Current, site: str) -> Gen[None]:
        """Sleep once on the queue (callers re-check their condition in a loop)."""
        might_sleep(cur, site.partition(":")[0])
        self.sleepers.append(cur.task)
        cur.rt.block(cur.task, self)
        yield site

    def wake_up(self, rt: Runtime) -> None:
        for t in self.sleepers:
            rt.wake(t)
        self.sleepers.clear()
