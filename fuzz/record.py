"""The run record: what an engine returns for one case, and what every oracle reads.

Both engines return exactly this shape (`reference.run` builds it directly; `optimized.run`
converts the native result with `RunRecord.from_native`), so the oracles compare values, never
engine internals. Everything is made of tuples, ints and strings so that records compare with
``==``, hash, and pickle across processes.

**Steps.** The scheduler counts steps: one step is one task running from one yield point to the
next. An operation's ``invoke`` is the step at which its task started it and ``response`` the
step at which it returned (``-1`` if it never did). Operation A precedes B in real time iff
``A.response < B.invoke``; that is the order the linearizability checker respects.

**Results** are ints: ``>= 0`` is a success value (the data a read returned, a fork's child mm,
0 for everything else), ``-errno`` is a syscall error, and the constants below stand for a
signal or for an operation that never returned. `result_name` spells them out.

**Memory image** (`PageImage`): per mm (``None`` if it does not exist) and per page: whether a
VMA maps it, the VMA's protection (PROT_* bits), whether the VMA is registered with
userfaultfd (missing mode), whether the page is *populated* (its PTE is not none: a read returns
without asking userfaultfd) and the data a read would return (0 when not populated).

**Snapshot** (`Snapshot`): the abstract kernel state after an operation, taken only under a
serial schedule (serial lockstep, DESIGN.md §2.3). Folios are numbered by first appearance:
scanning mm 0..3 page by page, then the swap cache by slot, so two engines that allocate folios
in different orders still agree.

PTE kinds in a snapshot: see `PTE_KINDS`. For a present, migration or device-private PTE,
``ref`` is the normalised folio id; for a swap PTE it is the slot; for none and the zero page
it is -1. ``data`` is the data the PTE leads to (a swap PTE: the data in the slot).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from fuzz.case import Op, OpKind

RES_SIGSEGV = -1011
RES_SIGBUS = -1007
RES_KILLED = -2001
RES_HUNG = -2002
RES_NOT_RUN = -2003

_SPECIAL = {
    RES_SIGSEGV: "SIGSEGV",
    RES_SIGBUS: "SIGBUS",
    RES_KILLED: "killed",
    RES_HUNG: "hung",
    RES_NOT_RUN: "not run",
}

PTE_NONE = 0
PTE_PRESENT = 1
PTE_ZERO = 2
PTE_SWAP = 3
PTE_MIGRATION = 4
PTE_DEVICE_PRIVATE = 5
PTE_KINDS = ("none", "present", "zero", "swap", "migration", "device_private")

STATUS_OK = "ok"
STATUS_DEADLOCK = "deadlock"
STATUS_LIVELOCK = "livelock"

VMA_LOCK_COUNTERS = ("VMA_LOCK_SUCCESS", "VMA_LOCK_ABORT", "VMA_LOCK_RETRY", "VMA_LOCK_MISS")


def result_name(res: int) -> str:
    """A result as a person reads it: ``0x1f``, ``-ENOMEM``, ``SIGSEGV``, ``hung``."""
    if res in _SPECIAL:
        return _SPECIAL[res]
    if res < 0:
        return "-" + errno.errorcode.get(-res, str(-res))
    return hex(res) if res > 9 else str(res)


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One operation as it ran. ``index`` is its position in `Case.all_ops` order; operations
    the uffd monitor issued on its own are appended after the case's, with ``part ==
    'monitor'``. ``task`` is the scheduler task that ran it."""

    index: int
    part: str
    task: int
    op: Op
    invoke: int
    response: int
    result: int

    @property
    def completed(self) -> bool:
        return self.response >= 0


@dataclass(frozen=True, slots=True)
class PageImage:
    mapped: bool
    prot: int
    uffd: bool
    populated: bool
    value: int


@dataclass(frozen=True, slots=True)
class VmaSnap:
    start: int
    end: int
    prot: int
    uffd: bool
    growsdown: bool
    anon_vma: bool


@dataclass(frozen=True, slots=True)
class PteSnap:
    kind: int
    data: int
    writable: bool
    ref: int


@dataclass(frozen=True, slots=True)
class MmSnap:
    vmas: tuple[VmaSnap, ...]
    ptes: tuple[PteSnap, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Abstract state after one operation (serial schedules only)."""

    after: int
    mms: tuple[MmSnap | None, ...]
    folios: tuple[tuple[int, int], ...]
    swap: tuple[tuple[int, int, bool], ...]
    locks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LockEvent:
    """``action`` is acquire, release, wait, trylock_fail or downgrade. ``seq`` carries
    ``(mm_lock_seq, vm_lock_seq)`` after the event where the engine has them, else ()."""

    step: int
    task: int
    action: str
    primitive: str
    obj: str
    mode: str
    seq: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Violation:
    """A broken rule found by an engine's own contract layer (its lockdep/KASAN)."""

    rule: str
    function: str
    message: str
    step: int
    task: int


@dataclass(frozen=True, slots=True)
class WaitEdge:
    """Deadlock report: `task` sleeps in `site` waiting on `obj`, which `holders` hold."""

    task: int
    site: str
    obj: str
    holders: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MigrationFailure:
    """A refcount check in migration failed (-EAGAIN). ``holders`` names every extra reference:
    (task, site where it was taken, whether that task is asleep waiting for this folio)."""

    step: int
    task: int
    folio: str
    expected: int
    actual: int
    holders: tuple[tuple[int, str, bool], ...]


@dataclass(frozen=True, slots=True)
class StackGrowth:
    """The kernel grew a VM_GROWSDOWN stack at `step` while `task` faulted: pages
    ``[start, end)`` of `mm` joined the VMA, with its protection (PROT_* bits) and its
    userfaultfd registration. An implicit mapping no operation asked for, which the
    linearizability checker needs to know about (`fuzz.spec`'s GROW phase)."""

    step: int
    task: int
    mm: int
    start: int
    end: int
    prot: int
    uffd: bool


@dataclass(frozen=True, slots=True)
class RunRecord:
    engine: str
    status: str
    ops: tuple[OpRecord, ...]
    image: tuple[tuple[PageImage, ...] | None, ...]
    violations: tuple[Violation, ...] = ()
    snapshots: tuple[Snapshot, ...] = ()
    lock_events: tuple[LockEvent, ...] = ()
    trace: tuple[tuple[int, int, str], ...] = ()
    wait_for: tuple[WaitEdge, ...] = ()
    migration_failures: tuple[MigrationFailure, ...] = ()
    counters: tuple[tuple[str, int], ...] = ()
    schedule: tuple[int, ...] = ()
    choices: tuple[int, ...] = ()
    steps: int = 0
    growths: tuple[StackGrowth, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def counter(self, name: str) -> int:
        return dict(self.counters).get(name, 0)

    @staticmethod
    def from_native(t: tuple[Any, ...]) -> RunRecord:
        """Build from the nested tuples `optimized._native.run_bytes` returns (same field
        order; an optional 15th element is the `extra` dict, whose ``growths`` entry, if any,
        lists the `StackGrowth` fields as tuples)."""
        (
            engine,
            status,
            ops,
            image,
            viol,
            snaps,
            locks,
            trace,
            wait,
            migr,
            counters,
            sched,
            choices,
            steps,
        ) = t[:14]
        extra = dict(t[14]) if len(t) > 14 else {}
        growths = tuple(StackGrowth(*g) for g in extra.pop("growths", ()))
        return RunRecord(
            engine=engine,
            status=status,
            ops=tuple(
                OpRecord(i, part, task, Op(OpKind(k), mm, pg, n, pr, v), inv, resp, res)
                for (i, part, task, (k, mm, pg, n, pr, v), inv, resp, res) in ops
            ),
            image=tuple(None if mm is None else tuple(PageImage(*p) for p in mm) for mm in image),
            violations=tuple(Violation(*v) for v in viol),
            snapshots=tuple(
                Snapshot(
                    after,
                    tuple(
                        None
                        if m is None
                        else MmSnap(
                            tuple(VmaSnap(*v) for v in m[0]), tuple(PteSnap(*p) for p in m[1])
                        )
                        for m in mms
                    ),
                    tuple(folios),
                    tuple(swap),
                    tuple(lk),
                )
                for (after, mms, folios, swap, lk) in snaps
            ),
            lock_events=tuple(
                LockEvent(e[0], e[1], e[2], e[3], e[4], e[5], tuple(e[6])) for e in locks
            ),
            trace=tuple(trace),
            wait_for=tuple(WaitEdge(*w) for w in wait),
            migration_failures=tuple(MigrationFailure(*m) for m in migr),
            counters=tuple(counters),
            schedule=tuple(sched),
            choices=tuple(choices),
            steps=steps,
            growths=growths,
            extra=extra,
        )
