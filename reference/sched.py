"""The deterministic scheduler runtime (mirrored bit for bit by `optimized/src/sched.rs`).

**Tasks** are Python generators. A task runs from one ``yield`` to the next in one *step*; the
value it yields names the yield point (a *site*, e.g. ``"lock_vma_under_rcu:mas_walk"``). Kernel
code is written as straight-line generator functions chained with ``yield from``, so every
``yield`` in the model is a visible scheduling point. Task ids are dense and fixed at spawn:
the engines give user threads 0..T-1 and then the daemons (swap I/O completion, the RCU grace
period, the userfaultfd monitor when the case names one).

A task *blocks* by calling `Runtime.block` with the object it waits on and then yielding; it is
not runnable again until someone calls `Runtime.wake`. A *timed sleep* (`Runtime.sleep_timed`,
the model of ``schedule_timeout(1)``: a tick passes on every CPU) makes it unrunnable until every
task that was runnable when it went to sleep has taken a step since, or is no longer runnable,
or until nothing else can run. (So two tasks polling in timed sleeps cannot starve a third
task they wait for.)

**Decisions.** Before every step the runtime lists the runnable tasks in task-id order and asks
the policy for one. A decision with two or more runnable tasks is *real*: the chosen task id
goes to `Runtime.chosen` and its index in the runnable list to `Runtime.choice_log`, so any run
can be replayed exactly as an explicit schedule. The policies:

* ``serial``: at most one user operation in progress (see `Runtime.op_begin`). While one is, its
  task runs whenever it is runnable, and otherwise the lowest-id runnable daemon; with no
  operation in progress, runnable daemons drain first (lowest id), then the lowest-id user task
  starts its next operation. Setup and post always run this way.
* ``explicit(choices)``: each real decision consumes the next choice byte ``c`` and picks
  ``runnable[c % len(runnable)]``. When the choices run out, the task that ran last keeps
  running while it can (fewest switches); when it cannot, the lowest-id runnable task runs.
* ``random(seed)``: each real decision picks ``runnable[rng.below(len(runnable))]``.
* ``pct(seed, depth, steps)`` (Burckhardt et al., ASPLOS 2010): the n tasks get the priorities
  ``depth .. depth+n-1``, shuffled by Fisher-Yates (``for i in n-1..1: j = below(i+1);
  swap(p[i], p[j])``, p indexed by task id). Then ``depth-1`` change points are drawn: for
  ``i in 1..depth-1``, ``k_i = 1 + below(steps)``, redrawn while it equals an earlier one (when
  ``steps >= depth-1``). Every decision of the concurrent phase counts one PCT step; before step
  ``k_i`` runs, the highest-priority runnable task drops to priority ``i``, and the step goes
  to whichever runnable task now has the highest priority.

**PRNG.** SplitMix64: ``state += 0x9E3779B97F4A7C15; z = state; z = (z ^ z>>30) *
0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB; return z ^ z>>31`` (all mod 2**64),
and ``below(n) = ((next() >> 32) * n) >> 32`` for ``1 <= n <= 2**32``.

**Interleaving features** (with ``features=True``; Krace/SegFuzz-style coverage of the
interleaving rather than of the code). After every step the runtime notes the triple
``(site, locks, prev)``: the yield site the running task reached, `Task.locks` (the summary of
the locks it holds, kept by the engine's contract layer: a 4-bit count per lock class, see
`LOCK_FIELDS`), and the site where the task that ran the previous step stands if that was
another task (a context switch: which sites met), else nothing. `Runtime.feature_buckets`
folds the distinct triples into 16-bit buckets: ``site_hash`` is FNV-1a (32-bit) of the site's
UTF-8 bytes, ``prev`` hashes to 0 when there was no switch, and `feature_bucket` mixes the
three (all mod 2**32)::

    x = site * 0x9E3779B1 ^ prev * 0x85EBCA77 ^ locks * 0xC2B2AE3D
    x ^= x >> 15; x *= 0x2C1B3C6D; x ^= x >> 12; x *= 0x297A2D39; x ^= x >> 15
    bucket = x >> 16

**Budget.** A run stops with `LIVELOCK` after `max_steps` steps in all, or after `stall_steps`
steps in which no operation completed (`op_end`). When no task can run the runtime returns
`IDLE`; the engine then decides whether everything finished, a user program hangs (a task
asleep in ``handle_userfault`` that nothing can wake), or the kernel deadlocked
(`wait_for_graph`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Protocol

MASK64 = (1 << 64) - 1

RUNNABLE = 0  # `Runtime.run` spells it 0
BLOCKED = 1
SLEEPING = 2
DONE = 3

IDLE = "idle"
LIVELOCK = "livelock"

DEFAULT_MAX_STEPS = 200_000
DEFAULT_STALL_STEPS = 20_000

MASK32 = (1 << 32) - 1
FEATURE_BITS = 16

# `Task.locks`: a 4-bit count per lock class, the class's field index times 4 being its shift.
LOCK_FIELDS = (
    "mmap_lock:r",
    "mmap_lock:w",
    "vm_lock:r",
    "vm_lock:w",
    "ptl",
    "page_table_lock",
    "folio_lock",
)

TaskGen = Generator[str, None, None]


class SplitMix64:
    """The PRNG both languages share (see the module docstring)."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """A number in ``[0, n)`` for ``1 <= n <= 2**32``."""
        return ((self.next_u64() >> 32) * n) >> 32


def site_hash(site: str) -> int:
    """FNV-1a (32-bit) of the site's UTF-8 bytes."""
    h = 0x811C9DC5
    for b in site.encode():
        h = ((h ^ b) * 0x01000193) & MASK32
    return h


def feature_bucket(site_h: int, locks: int, prev_h: int) -> int:
    """The 16-bit bucket of one interleaving feature (see the module docstring)."""
    x = ((site_h * 0x9E3779B1) ^ (prev_h * 0x85EBCA77) ^ (locks * 0xC2B2AE3D)) & MASK32
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & MASK32
    x ^= x >> 12
    x = (x * 0x297A2D39) & MASK32
    x ^= x >> 15
    return x >> (32 - FEATURE_BITS)


# Process-wide memos of `site_hash` (sites are the model's string literals: a bounded set) and of
# the bucket of each feature seen (bounded by clearing).
_SITE_HASHES: dict[str, int] = {}
_BUCKETS: dict[tuple[str, int, str | None], int] = {}
_BUCKET_CACHE_MAX = 1 << 18


def _site_h(site: str) -> int:
    h = _SITE_HASHES.get(site)
    if h is None:
        h = _SITE_HASHES[site] = site_hash(site)
    return h


class Waitable(Protocol):
    """Anything a task can block on: it can name itself and the tasks that hold it."""

    def describe(self) -> str: ...

    def holder_tids(self) -> tuple[int, ...]: ...


class Task:
    """A schedulable task. `data` is the engine's per-task state (current, in kernel terms).
    Its `state` changes only through `Runtime` (start, block, wake, sleep_timed, abandon and
    the run loop), which keeps the list of runnable tasks."""

    __slots__ = (
        "daemon",
        "data",
        "gen",
        "last_step",
        "locks",
        "name",
        "site",
        "sleep_step",
        "sleep_wait",
        "state",
        "tid",
        "wait",
    )

    def __init__(self, tid: int, name: str, daemon: bool) -> None:
        self.tid = tid
        self.name = name
        self.daemon = daemon
        self.gen: TaskGen | None = None
        self.state = DONE
        self.wait: Waitable | None = None
        self.site = ""
        self.sleep_step = 0
        self.sleep_wait: list[Task] = []  # runnable when the timed sleep began
        self.last_step = 0  # the last step this task ran
        self.locks = 0  # the locks it holds, per `LOCK_FIELDS` (kept by the contract layer)
        self.data: object = None

    def __repr__(self) -> str:
        return f"Task({self.tid}, {self.name})"


class Policy(Protocol):
    def pick(self, rt: Runtime, runnable: list[Task]) -> Task | None: ...


class Runtime:
    """Runs tasks one step at a time under a policy; see the module docstring."""

    def __init__(
        self,
        max_steps: int = DEFAULT_MAX_STEPS,
        stall_steps: int = DEFAULT_STALL_STEPS,
        trace: bool = False,
        features: bool = False,
    ) -> None:
        self.tasks: list[Task] = []
        self.policy: Policy = SerialPolicy()
        self.step = 0
        self.current: Task | None = None
        self.active: Task | None = None
        self.active_ops = 0
        self.last_progress = 0
        self.max_steps = max_steps
        self.stall_steps = stall_steps
        self.chosen: list[int] = []
        self.choice_log: list[int] = []
        self.trace: list[tuple[int, int, str]] | None = [] if trace else None
        # (site, locks, site of the previous step's task if another) per step, with features.
        self.features: set[tuple[str, int, str | None]] | None = set() if features else None
        self._sleepers = 0
        # The runnable tasks in id order, rebuilt after any state change (None: stale). Task
        # states change only in this class's methods, which drop it.
        self._runnable: list[Task] | None = None

    # -- tasks ------------------------------------------------------------------------------

    def spawn(self, name: str, daemon: bool = False) -> Task:
        """Add a task (with no body yet); ids are given in spawn order."""
        task = Task(len(self.tasks), name, daemon)
        self.tasks.append(task)
        self._runnable = None
        return task

    def start(self, task: Task, body: TaskGen) -> None:
        """Give `task` a body to run; it becomes runnable."""
        task.gen = body
        task.state = RUNNABLE
        task.wait = None
        self._runnable = None

    def block(self, task: Task, wait: Waitable) -> None:
        """Mark `task` blocked on `wait`; the caller must yield right after."""
        task.state = BLOCKED
        task.wait = wait
        self._runnable = None

    def wake(self, task: Task) -> None:
        if task.state == BLOCKED:
            task.state = RUNNABLE
            task.wait = None
            self._runnable = None

    def sleep_timed(self, task: Task) -> None:
        """``schedule_timeout(1)``: sleep until every task runnable now has run (or stopped
        being runnable); caller yields next."""
        task.state = SLEEPING
        self._runnable = None
        task.sleep_step = self.step
        task.sleep_wait = [t for t in self.tasks if t.state == RUNNABLE and t is not task]
        self._sleepers += 1

    def abandon(self, task: Task) -> None:
        """`task` is done without finishing its body (a user task left hanging)."""
        assert task.gen is not None
        task.gen.close()
        task.gen = None
        task.state = DONE
        task.wait = None
        self._runnable = None

    def op_begin(self, task: Task) -> int:
        """`task` starts a user operation; returns the invocation step."""
        self.active = task
        self.active_ops += 1
        return self.step

    def op_end(self, task: Task) -> int:
        """`task`'s operation returned; returns the response step."""
        self.active_ops -= 1
        if self.active is task:
            self.active = None
        self.last_progress = self.step
        return self.step

    # -- running ----------------------------------------------------------------------------

    def run(self) -> str:
        """Run until nothing can run (`IDLE`) or the budget is spent (`LIVELOCK`)."""
        # The hot loop of the reference engine: everything it reads often is a local.
        tasks = self.tasks
        trace = self.trace
        features = self.features
        pick = self.policy.pick
        max_steps, stall_steps = self.max_steps, self.stall_steps
        while True:
            runnable = self._runnable
            if runnable is None:
                runnable = self._runnable = [t for t in tasks if t.state == 0]  # RUNNABLE
            step = self.step
            if runnable and (step >= max_steps or step - self.last_progress >= stall_steps):
                return LIVELOCK
            task = pick(self, runnable) if runnable else None
            if task is None:
                if self._sleepers:
                    self._wake_sleepers(force=True)
                    continue
                return IDLE
            self.step = step = step + 1
            prev = self.current
            self.current = task
            task.last_step = step
            gen = task.gen
            assert gen is not None
            try:
                task.site = next(gen)
            except StopIteration:
                task.state = DONE
                task.gen = None
                task.site = ""
                self._runnable = None
            if features is not None:
                other = None if prev is task or prev is None else prev.site
                features.add((task.site, task.locks, other))
            if trace is not None:
                trace.append((step, task.tid, task.site))
            if self._sleepers:
                self._wake_sleepers(force=False)

    def _wake_sleepers(self, force: bool) -> None:
        for t in self.tasks:
            if t.state == SLEEPING and (force or self._tick_passed(t)):
                t.state = RUNNABLE
                t.sleep_wait = []
                self._sleepers -= 1
                self._runnable = None

    @staticmethod
    def _tick_passed(t: Task) -> bool:
        since = t.sleep_step
        return all(o.last_step > since or o.state != RUNNABLE for o in t.sleep_wait)

    def feature_buckets(self) -> list[int]:
        """The distinct buckets of the interleaving features seen so far, sorted."""
        cache = _BUCKETS
        if len(cache) > _BUCKET_CACHE_MAX:
            cache.clear()
        out = set()
        for key in self.features or ():
            b = cache.get(key)
            if b is None:
                s, locks, p = key
                b = cache[key] = feature_bucket(_site_h(s), locks, 0 if p is None else _site_h(p))
            out.add(b)
        return sorted(out)

    def record(self, task: Task, runnable: list[Task]) -> None:
        """Log a real decision (two or more runnable tasks)."""
        self.chosen.append(task.tid)
        self.choice_log.append(runnable.index(task))

    def unfinished(self) -> list[Task]:
        return [t for t in self.tasks if t.state != DONE and not t.daemon]

    def wait_for_graph(self) -> list[tuple[int, str, str, tuple[int, ...]]]:
        """(task, site, waited-on object, holders) for every blocked task."""
        return [
            (t.tid, t.site, t.wait.describe(), t.wait.holder_tids())
            for t in self.tasks
            if t.state == BLOCKED and t.wait is not None
        ]


# ---------------------------------------------------------------------------------------------
# Policies


class SerialPolicy:
    """One user operation at a time; daemons run while it is blocked and drain between ops."""

    def pick(self, rt: Runtime, runnable: list[Task]) -> Task | None:
        active = rt.active
        if active is not None:
            if active.state == RUNNABLE:
                return active
            return next((t for t in runnable if t.daemon), None)
        for t in runnable:
            if t.daemon:
                return t
        return runnable[0] if runnable else None


class ExplicitPolicy:
    __slots__ = ("choices", "pos")

    def __init__(self, choices: Sequence[int]) -> None:
        self.choices = choices
        self.pos = 0

    def pick(self, rt: Runtime, runnable: list[Task]) -> Task | None:
        if len(runnable) == 1:
            return runnable[0]
        if self.pos < len(self.choices):
            task = runnable[self.choices[self.pos] % len(runnable)]
            self.pos += 1
        else:
            cur = rt.current
            task = cur if cur is not None and cur.state == RUNNABLE else runnable[0]
        rt.record(task, runnable)
        return task


class RandomPolicy:
    __slots__ = ("rng",)

    def __init__(self, seed: int) -> None:
        self.rng = SplitMix64(seed)

    def pick(self, rt: Runtime, runnable: list[Task]) -> Task | None:
        if len(runnable) == 1:
            return runnable[0]
        task = runnable[self.rng.below(len(runnable))]
        rt.record(task, runnable)
        return task


class PctPolicy:
    __slots__ = ("change", "count", "prio")

    def __init__(self, seed: int, depth: int, steps: int, ntasks: int) -> None:
        rng = SplitMix64(seed)
        prio = list(range(depth, depth + ntasks))
        for i in range(ntasks - 1, 0, -1):
            j = rng.below(i + 1)
            prio[i], prio[j] = prio[j], prio[i]
        self.prio = prio
        self.change: dict[int, int] = {}
        for i in range(1, depth):
            k = 1 + rng.below(steps)
            while k in self.change and steps >= depth - 1:
                k = 1 + rng.below(steps)
            self.change[k] = i
        self.count = 0

    def pick(self, rt: Runtime, runnable: list[Task]) -> Task | None:
        self.count += 1
        prio = self.prio
        task = self._highest(runnable)
        lowered = self.change.get(self.count)
        if lowered is not None:
            prio[task.tid] = lowered
            task = self._highest(runnable)
        if len(runnable) > 1:
            rt.record(task, runnable)
        return task

    def _highest(self, runnable: list[Task]) -> Task:
        """The runnable task of highest priority (priorities are distinct)."""
        prio = self.prio
        best = runnable[0]
        top = prio[best.tid]
        for t in runnable:
            if prio[t.tid] > top:
                best, top = t, prio[t.tid]
        return best


def make_policy(
    strategy: int, seed: int, depth: int, steps: int, choices: Sequence[int], ntasks: int
) -> Policy:
    """The policy for a case's concurrent phase (strategy codes as in `fuzz.case.Strategy`)."""
    if strategy == 1:
        return ExplicitPolicy(choices)
    if strategy == 2:
        return PctPolicy(seed, depth, steps, ntasks)
    if strategy == 3:
        return RandomPolicy(seed)
    return SerialPolicy()


# ---------------------------------------------------------------------------------------------
# Small synchronisation objects for toy task sets (the engines have their own primitives).


class ToyMutex:
    """A FIFO mutex with direct hand-off, for scheduler tests."""

    def __init__(self, rt: Runtime, name: str) -> None:
        self.rt = rt
        self.name = name
        self.owner: Task | None = None
        self.waiters: list[Task] = []

    def describe(self) -> str:
        return self.name

    def holder_tids(self) -> tuple[int, ...]:
        return () if self.owner is None else (self.owner.tid,)

    def lock(self, task: Task) -> TaskGen:
        if self.owner is None:
            self.owner = task
            return
        self.waiters.append(task)
        self.rt.block(task, self)
        yield "mutex_lock:wait"

    def unlock(self) -> None:
        if self.waiters:
            self.owner = self.waiters.pop(0)
            self.rt.wake(self.owner)
        else:
            self.owner = None


class ToyQueue:
    """A bounded queue whose producers and consumers block when it is full or empty."""

    def __init__(self, rt: Runtime, cap: int) -> None:
        self.rt = rt
        self.cap = cap
        self.items: list[int] = []
        self.blocked: list[Task] = []

    def describe(self) -> str:
        return "queue"

    def holder_tids(self) -> tuple[int, ...]:
        return ()

    def _wake_all(self) -> None:
        for t in self.blocked:
            self.rt.wake(t)
        self.blocked.clear()

    def put(self, task: Task, item: int) -> TaskGen:
        while len(self.items) >= self.cap:
            self.blocked.append(task)
            self.rt.block(task, self)
            yield "queue_put:wait"
        self.items.append(item)
        self._wake_all()

    def get(self, task: Task, out: list[int]) -> TaskGen:
        while not self.items:
            self.blocked.append(task)
            self.rt.block(task, self)
            yield "queue_get:wait"
        out.append(self.items.pop(0))
        self._wake_all()


def toy_ping_pong(rt: Runtime, ntasks: int = 3, rounds: int = 3) -> list[int]:
    """Tasks take one mutex in turn and append their id to a log inside it."""
    mutex = ToyMutex(rt, "mutex")
    log: list[int] = []

    def body(task: Task) -> TaskGen:
        for _ in range(rounds):
            yield "ping:before_lock"
            yield from mutex.lock(task)
            yield "ping:critical"
            log.append(task.tid)
            mutex.unlock()
        rt.op_end(task)

    for i in range(ntasks):
        task = rt.spawn(f"ping{i}")
        rt.start(task, body(task))
        rt.op_begin(task)
    return log


def toy_rw_queue(rt: Runtime, producers: int = 2, consumers: int = 2, items: int = 3) -> list[int]:
    """Producers push `items` numbers each into a queue of capacity 2; consumers pop them."""
    queue = ToyQueue(rt, 2)
    got: list[int] = []
    per_consumer = producers * items // consumers

    def producer(task: Task) -> TaskGen:
        for i in range(items):
            yield "producer:step"
            yield from queue.put(task, task.tid * 100 + i)
        rt.op_end(task)

    def consumer(task: Task) -> TaskGen:
        for _ in range(per_consumer):
            yield "consumer:step"
            yield from queue.get(task, got)
        rt.op_end(task)

    for i in range(producers + consumers):
        task = rt.spawn(f"rw{i}")
        rt.start(task, producer(task) if i < producers else consumer(task))
        rt.op_begin(task)
    return got


def toy_deadlock(rt: Runtime) -> None:
    """Two tasks take two mutexes in opposite orders."""
    a, b = ToyMutex(rt, "A"), ToyMutex(rt, "B")

    def body(task: Task, first: ToyMutex, second: ToyMutex) -> TaskGen:
        yield "dl:start"
        yield from first.lock(task)
        yield "dl:holding_first"
        yield from second.lock(task)
        second.unlock()
        first.unlock()
        rt.op_end(task)

    for i, (x, y) in enumerate([(a, b), (b, a)]):
        task = rt.spawn(f"dl{i}")
        rt.start(task, body(task, x, y))
        rt.op_begin(task)


def toy_spin(rt: Runtime) -> None:
    """Two tasks that yield forever without completing anything (a livelock)."""

    def body() -> TaskGen:
        while True:
            yield "spin"

    for i in range(2):
        rt.start(rt.spawn(f"spin{i}"), body())


def toy_poll(rt: Runtime) -> list[int]:
    """Two tasks poll a flag with timed sleeps while a third works and then sets it."""
    flag = [False]
    log: list[int] = []

    def poller(task: Task) -> TaskGen:
        while not flag[0]:
            yield "poll:check"
            rt.sleep_timed(task)
            yield "poll:sleep"
        log.append(task.tid)
        rt.op_end(task)

    def setter(task: Task) -> TaskGen:
        for _ in range(3):
            yield "set:work"
        flag[0] = True
        log.append(task.tid)
        rt.op_end(task)

    for i in range(3):
        task = rt.spawn(f"poll{i}")
        rt.start(task, poller(task) if i < 2 else setter(task))
        rt.op_begin(task)
    return log


TOYS: dict[str, Callable[[Runtime], object]] = {
    "ping_pong": toy_ping_pong,
    "rw_queue": toy_rw_queue,
    "deadlock": toy_deadlock,
    "spin": toy_spin,
    "poll": toy_poll,
}


def run_toy(
    name: str,
    strategy: int,
    seed: int = 0,
    depth: int = 0,
    steps: int = 0,
    choices: Sequence[int] = (),
    stall_steps: int = DEFAULT_STALL_STEPS,
) -> tuple[
    str,
    int,
    list[int],
    list[int],
    list[int],
    list[int],
    list[tuple[int, str, str, tuple[int, ...]]],
]:
    """Run a toy task set; returns (outcome, steps, chosen, choice_log, log, unfinished, wait_for).

    `optimized._native.toy_run` returns the same tuple for the same arguments."""
    rt, log, outcome = _toy_runtime(name, strategy, seed, depth, steps, choices, stall_steps)
    items = list(log) if isinstance(log, list) else []
    return (
        outcome,
        rt.step,
        rt.chosen,
        rt.choice_log,
        items,
        [t.tid for t in rt.unfinished()],
        rt.wait_for_graph(),
    )


def toy_features(
    name: str,
    strategy: int,
    seed: int = 0,
    depth: int = 0,
    steps: int = 0,
    choices: Sequence[int] = (),
    stall_steps: int = DEFAULT_STALL_STEPS,
) -> list[int]:
    """The interleaving feature buckets of a toy run (`run_toy`'s arguments), sorted.

    `optimized._native.toy_features` returns the same list for the same arguments."""
    rt, _, _ = _toy_runtime(name, strategy, seed, depth, steps, choices, stall_steps, True)
    return rt.feature_buckets()


def _toy_runtime(
    name: str,
    strategy: int,
    seed: int,
    depth: int,
    steps: int,
    choices: Sequence[int],
    stall_steps: int,
    features: bool = False,
) -> tuple[Runtime, object, str]:
    """(the runtime after the run, the toy's log, the outcome) of one toy run."""
    rt = Runtime(stall_steps=stall_steps, features=features)
    log = TOYS[name](rt)
    rt.policy = make_policy(strategy, seed, depth, steps, choices, len(rt.tasks))
    return rt, log, rt.run()
