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

**Interleaving features** (`features`): what the run's interleaving reached, as sorted ints
``tag << 16 | bucket``: each engine folds every step's (yield site, locks held, site of the
task that ran the step before if another) into 16-bit buckets (`reference.sched` defines them;
the Rust scheduler mirrors it), and tags them with its own `FEATURE_TAG_REFERENCE` or
`FEATURE_TAG_OPTIMIZED`, so the two engines' features never mix. Coverage-guided front ends
read them (`fuzz.campaign.coverage`, the atheris target); no oracle does.

PTE kinds in a snapshot: see `PTE_KINDS`. For a present, migration or device-private PTE,
``ref`` is the normalised folio id; for a swap PTE it is the slot; for none and the zero page
it is -1. ``data`` is the data the PTE leads to (a swap PTE: the data in the slot).
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

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

FEATURE_TAG_REFERENCE = 1
FEATURE_TAG_OPTIMIZED = 2

VMA_LOCK_COUNTERS = ("VMA_LOCK_SUCCESS", "VMA_LOCK_ABORT", "VMA_LOCK_RETRY", "VMA_LOCK_MISS")


def result_name(res: int) -> str:
    """A result as a person reads it: ``0x1f``, ``-ENOMEM``, ``SIGSEGV``, ``hung``."""
    if res in _SPECIAL:
        return _SPECIAL[res]
    if res < 0:
        return "-" + errno.errorcode.get(-res, str(-res))
    return hex(res) if res > 9 else str(res)


class OpRecord(NamedTuple):
    """One operation as it ran. ``index`` is its position in `Case.all_ops` order; operations
    the uffd monitor issued on its own are appended after the case's, with ``part ==
    'monitor'``. ``task`` is the scheduler task that ran it. (A named tuple, not a frozen
    dataclass like the other parts: a run builds one per op in both engines, and a frozen
    dataclass takes three times as long to build; change one with ``_replace``.)"""

    index: int  # type: ignore[assignment]  # the field hides tuple.index(), unused on records
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
    features: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def counter(self, name: str) -> int:
        return dict(self.counters).get(name, 0)

    @staticmethod
    def from_native(t: tuple[Any, ...], case_ops: Sequence[Op] = ()) -> RunRecord:
        """Build from the nested tuples `optimized._native.run_bytes` returns: the fields
        up to `steps` in order, then `features`, then the `extra` dict, whose ``growths``
        entry, if any, lists the `StackGrowth` fields as tuples.

        `case_ops` (the case's `Case.all_ops` operations, if the caller has them) stand for
        the record's operations of the same index: equal values, not built again."""
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
            features,
            extra,
        ) = t
        extra = dict(extra)
        growths = tuple(StackGrowth(*g) for g in extra.pop("growths", ()))
        return RunRecord(
            engine=engine,
            status=status,
            ops=tuple(_op_record(o, case_ops) for o in ops),
            image=tuple(
                None if mm is None else tuple(interned(PageImage, r) for r in mm) for mm in image
            ),
            violations=tuple(Violation(*v) for v in viol),
            snapshots=_snapshots(snaps),
            lock_events=tuple(
                LockEvent(e[0], e[1], e[2], e[3], e[4], e[5], tuple(e[6])) for e in locks
            ),
            trace=trace,
            wait_for=tuple(WaitEdge(*w) for w in wait),
            migration_failures=tuple(MigrationFailure(*m) for m in migr),
            counters=counters,
            schedule=tuple(sched),
            choices=tuple(choices),
            steps=steps,
            growths=growths,
            features=features,
            extra=extra,
        )


# ---------------------------------------------------------------------------------------------
# Interning. Records are immutable values, so equal parts can be one object: a snapshot mostly
# repeats the previous one's VMAs and PTEs (the native side even passes the same tuple for an
# unchanged mm), most pages of an image look alike, and the two engines' records of one case
# mostly agree. Both engines build these parts through `interned`, so comparing their records
# (lockstep, divergences) mostly compares identities.

_T = TypeVar("_T")
_INTERN_MAX = 1 << 16  # rows kept per class before the table starts over
_INTERNED: dict[type, dict[tuple[Any, ...], Any]] = {}


def interned_rows(cls: type[_T]) -> dict[tuple[Any, ...], _T]:
    """The rows `interned` has built for `cls`, to look up before calling it in a hot loop
    (the table may be emptied by `interned`, never replaced)."""
    made = _INTERNED.get(cls)
    if made is None:
        made = _INTERNED[cls] = {}
    return made


def interned(cls: type[_T], row: tuple[Any, ...]) -> _T:
    """``cls(*row)`` for an immutable record part (`PageImage`, `VmaSnap`, `PteSnap`): the
    object built for an equal row earlier in this process, if any. Field types must be
    consistent per class (a bool field always a bool), as the row is the key."""
    made = interned_rows(cls)
    obj = made.get(row)
    if obj is None:
        if len(made) >= _INTERN_MAX:
            made.clear()
        obj = made[row] = cls(*row)
    return obj


# ---------------------------------------------------------------------------------------------
# Converting the native record.

_OP_KINDS = tuple(OpKind)


def _op_record(o: tuple[Any, ...], case_ops: Sequence[Op]) -> OpRecord:
    i, part, task, fields, inv, resp, res = o
    if i < len(case_ops) and part != "monitor":
        op = case_ops[i]
    else:
        k, mm, pg, n, pr, v = fields
        op = Op(_OP_KINDS[k], mm, pg, n, pr, v)
    return OpRecord(i, part, task, op, inv, resp, res)


def _snapshots(snaps: Sequence[tuple[Any, ...]]) -> tuple[Snapshot, ...]:
    mms: dict[int, MmSnap] = {}  # by id() of the native (vmas, ptes) pair, alive in `snaps`

    def mm_snap(m: tuple[Any, ...]) -> MmSnap:
        snap = mms.get(id(m))
        if snap is None:
            snap = mms[id(m)] = MmSnap(
                tuple(interned(VmaSnap, v) for v in m[0]),
                tuple(interned(PteSnap, p) for p in m[1]),
            )
        return snap

    return tuple(
        Snapshot(after, tuple(None if m is None else mm_snap(m) for m in mm), folios, swap, lk)
        for (after, mm, folios, swap, lk) in snaps
    )
