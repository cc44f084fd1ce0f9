"""A deterministic generator of *interesting* random cases (no Hypothesis, no `random`).

``random_case(seed)`` draws every choice from `reference.sched.SplitMix64`, so the same seed
gives the same case in every process and version of Python; the Rust side and the harness
reuse it for stress runs. Its keyword arguments and their meaning are a stable interface.

What "interesting" means here (uniformly random ops mostly hit unmapped memory):

* **setup** maps memory: a read-write region (sometimes split into several mmaps), sometimes a
  read-only one and a ``MAP_GROWSDOWN`` one; writes a distinct value to most mapped pages;
  sometimes pages some of them out (and sometimes reads them back and pages them out again, so
  that they leave the swap cache and the next fault reads the swap device), registers a range
  with userfaultfd, or forks (so mm 1 exists for the threads).
* **threads** mix all 14 operation kinds, weighted towards accesses, with addresses drawn
  from the mapped pages 85% of the time; every write and ``uffd_copy`` stores a value no other
  op of the case stores.
* **schedule**: ``serial`` with probability `serial_fraction`, else ``pct`` / ``random`` /
  ``explicit`` (random choice bytes), with both swap kinds and the uffd monitor on or off.
* **post** reads a few pages back, so the final state is observed by operations too.
"""

from __future__ import annotations

from fuzz.case import (
    MAP_GROWSDOWN,
    MAX_OPS_PER_PART,
    MAX_PAGES,
    MAX_THREADS,
    PROT_READ,
    RW,
    Case,
    Op,
    OpKind,
    Schedule,
)
from reference.sched import SplitMix64

__all__ = ["Draw", "random_case", "random_schedule", "random_thread_op", "spread_seed"]


# Relative weights of the thread op kinds.
_WEIGHTS: tuple[tuple[OpKind, int], ...] = (
    (OpKind.READ, 18),
    (OpKind.WRITE, 18),
    (OpKind.MMAP, 4),
    (OpKind.MUNMAP, 4),
    (OpKind.MPROTECT, 5),
    (OpKind.MADVISE_DONTNEED, 6),
    (OpKind.MADVISE_PAGEOUT, 7),
    (OpKind.MIGRATE, 7),
    (OpKind.TO_DEVICE, 5),
    (OpKind.UFFD_REGISTER, 3),
    (OpKind.UFFD_UNREGISTER, 2),
    (OpKind.UFFD_COPY, 4),
    (OpKind.FORK, 2),
    (OpKind.KILL, 1),
)
_TOTAL = sum(w for _, w in _WEIGHTS)


class Draw:
    """The generator's state: the PRNG, the mapped pages, the next distinct value (also used
    by the mutators in `fuzz.mutate`)."""

    def __init__(self, seed: int, nr_pages: int) -> None:
        self.rng = SplitMix64(seed)
        self.nr_pages = nr_pages
        self.mapped: list[int] = []
        self.value = 0x100

    def below(self, n: int) -> int:
        return self.rng.below(n)

    def between(self, lo: int, hi: int) -> int:
        return lo + self.rng.below(hi - lo + 1)

    def chance(self, p: float) -> bool:
        return self.rng.below(1 << 20) < int(p * (1 << 20))

    def next_value(self) -> int:
        self.value = self.value + 1 if self.value < 0xFFFF else 0x100
        return self.value

    def page(self) -> int:
        if self.mapped and self.chance(0.85):
            return self.mapped[self.below(len(self.mapped))]
        return self.below(self.nr_pages)

    def span(self) -> tuple[int, int]:
        start = self.page()
        n = 1 + self.below(min(4, self.nr_pages))
        if self.chance(0.1):
            n = self.between(1, self.nr_pages)
        return start, n


def random_case(
    seed: int,
    *,
    threads: tuple[int, int] = (1, 4),
    ops_per_thread: tuple[int, int] = (1, 8),
    serial_fraction: float = 0.3,
    nr_pages: tuple[int, int] = (2, 8),
    monitor_fraction: float = 0.4,
    async_fraction: float = 0.5,
    fork_fraction: float = 0.25,
) -> Case:
    """A valid, interesting case determined by `seed` (see the module docstring).

    `threads` and `ops_per_thread` are inclusive ranges (threads within 1..6, ops within
    0..16); `nr_pages` is the inclusive range of the address-space size (1..16).
    `serial_fraction`, `monitor_fraction`, `async_fraction` and `fork_fraction` are the
    probabilities of a serial schedule, of the uffd monitor, of an asynchronous swap device
    and of a fork in the setup.
    """
    pages = SplitMix64(seed ^ 0x5EED).below(nr_pages[1] - nr_pages[0] + 1) + nr_pages[0]
    d = Draw(seed, max(1, min(MAX_PAGES, pages)))
    setup = _setup(d, fork_fraction)
    forked = any(op.kind is OpKind.FORK for op in setup)
    nthreads = max(1, min(MAX_THREADS, d.between(*threads)))
    lo, hi = max(0, ops_per_thread[0]), min(16, ops_per_thread[1])
    parts = tuple(
        tuple(random_thread_op(d, nthreads, forked) for _ in range(d.between(lo, hi)))
        for _ in range(nthreads)
    )
    post = tuple(Op(OpKind.READ, 0, d.page()) for _ in range(d.below(3)))
    case = Case(
        threads=parts,
        setup=setup,
        post=post,
        nr_pages=d.nr_pages,
        swap_async=d.chance(async_fraction),
        uffd_monitor=d.chance(monitor_fraction),
        schedule=random_schedule(d, serial_fraction),
    )
    return case.validate()


def _setup(d: Draw, fork_fraction: float) -> tuple[Op, ...]:
    n = d.nr_pages
    ops: list[Op] = []
    rw_end = max(1, d.between(n // 2, n))
    if d.chance(0.3) and rw_end >= 2:
        cut = d.between(1, rw_end - 1)
        ops += [Op(OpKind.MMAP, 0, 0, cut, RW), Op(OpKind.MMAP, 0, cut, rw_end - cut, RW)]
    else:
        ops.append(Op(OpKind.MMAP, 0, 0, rw_end, RW))
    d.mapped = list(range(rw_end))
    if rw_end < n and d.chance(0.5):
        start = d.between(rw_end, n - 1)
        prot = PROT_READ if d.chance(0.6) else RW | MAP_GROWSDOWN
        size = d.between(1, n - start)
        ops.append(Op(OpKind.MMAP, 0, start, size, prot))
        d.mapped += range(start, start + size)
    writes = [Op(OpKind.WRITE, 0, p, value=d.next_value()) for p in range(rw_end) if d.chance(0.75)]
    tail: list[Op] = []
    if d.chance(0.35):
        start, size = d.span()
        size = min(size, n - start)
        tail.append(Op(OpKind.MADVISE_PAGEOUT, 0, start, size))
        if d.chance(0.5):
            # Read back and page out again: the clean swap-cache folio is freed, so the next
            # fault really reads from swap (asynchronously on an async device).
            tail += [Op(OpKind.READ, 0, p) for p in range(start, start + size)]
            tail.append(Op(OpKind.MADVISE_PAGEOUT, 0, start, size))
    if d.chance(0.25):
        start, size = d.span()
        tail.append(Op(OpKind.UFFD_REGISTER, 0, start, min(size, n - start)))
    if d.chance(fork_fraction):
        tail.append(Op(OpKind.FORK, 0))
    room = MAX_OPS_PER_PART - len(ops) - len(tail)
    return (*ops, *writes[: max(0, room)], *tail)[:MAX_OPS_PER_PART]


def random_thread_op(d: Draw, nthreads: int, forked: bool) -> Op:
    """One random thread operation, weighted towards accesses, on mapped pages mostly."""
    r = d.below(_TOTAL)
    kind = OpKind.READ
    for k, w in _WEIGHTS:
        if r < w:
            kind = k
            break
        r -= w
    mm = 1 if forked and d.chance(0.3) else 0
    n = d.nr_pages
    if kind is OpKind.KILL:
        return Op(kind, value=d.below(nthreads))
    if kind is OpKind.FORK:
        return Op(kind, mm)
    if kind in (OpKind.READ, OpKind.MIGRATE, OpKind.TO_DEVICE):
        return Op(kind, mm, d.page())
    if kind in (OpKind.WRITE, OpKind.UFFD_COPY):
        return Op(kind, mm, d.page(), value=d.next_value())
    start, size = d.span()
    size = max(1, min(size, n - start)) if not d.chance(0.05) else d.between(1, n)
    if kind is OpKind.MMAP:
        prot = RW if d.chance(0.6) else d.below(8)
        return Op(kind, mm, start, size, prot)
    if kind is OpKind.MPROTECT:
        return Op(kind, mm, start, size, d.below(4))
    return Op(kind, mm, start, size)


def spread_seed(seed: int, salt: int) -> int:
    """A 64-bit seed for stream `salt` of `seed`. SplitMix64 advances its state by a constant,
    so streams started at nearby states (seed + 1, or seed + worker) would be shifted copies of
    one another: `seed` goes through the output function first, which spreads nearby seeds
    over the whole state space, then the salt does the same for the streams of one seed."""
    return SplitMix64(SplitMix64(seed).next_u64() ^ salt).next_u64()


# The concurrent schedules worth generating (also `fuzz.strategies.interesting_schedules`):
# PCT depth and step-count ranges, and the longest explicit choice list.
PCT_DEPTHS = (1, 4)
PCT_STEPS = (20, 400)
EXPLICIT_CHOICES = 64


def random_schedule(d: Draw, serial_fraction: float) -> Schedule:
    """A random schedule: serial with probability `serial_fraction`, else pct/random/explicit."""
    if d.chance(serial_fraction):
        return Schedule.serial()
    pick = d.below(5)
    seed = d.rng.next_u64()
    if pick < 2:
        return Schedule.pct(seed, d.between(*PCT_DEPTHS), d.between(*PCT_STEPS))
    if pick < 4:
        return Schedule.random(seed)
    return Schedule.explicit(tuple(d.below(256) for _ in range(d.below(EXPLICIT_CHOICES))))
