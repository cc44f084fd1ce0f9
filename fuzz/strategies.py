"""Hypothesis strategies for vmafuzz cases. Every value they draw is canonical: it passes
`Case.validate`, so ``decode_strict(encode(c)) == c``.

Two families:

* **uniform** (`ops`, `schedules`, `cases`): every field anywhere in its range. Most ops hit
  unmapped memory, so these mostly exercise the error paths and the codec.
* **interesting** (`setups`, `focused_ops`, `interesting_schedules`, `interesting_cases`): the
  setup maps memory (read-write, sometimes split, sometimes a read-only or ``MAP_GROWSDOWN``
  region), writes to it and sometimes pages it out, moves a page to the device, registers a
  range with userfaultfd or forks; thread ops of all 14 kinds, weighted towards accesses,
  aim at the mapped pages (and at the fork child's mm when there is one); every write and
  ``uffd_copy`` stores a value no other op of the case stores; schedules of all four
  strategies with the parameters that give short, varied runs. This is `fuzz.gen`'s notion of
  interesting, with Hypothesis in charge of the choices so that it can shrink them.

Shrinking goes toward fewer ops and threads, reads of the first mapped page in mm 0, and the
serial schedule. This module never imports atheris, so it loads wherever Hypothesis does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from hypothesis import strategies as st

from fuzz.case import (
    MAP_GROWSDOWN,
    MAX_CHOICES,
    MAX_DEPTH,
    MAX_MMS,
    MAX_OPS_PER_PART,
    MAX_PAGES,
    MAX_THREADS,
    PROFILES,
    PROT_READ,
    PROT_WRITE,
    RW,
    Case,
    Op,
    OpKind,
    Schedule,
    normalize_op,
)
from fuzz.gen import PCT_DEPTHS, PCT_STEPS

__all__ = [
    "Setup",
    "cases",
    "distinct_values",
    "focused_ops",
    "interesting_cases",
    "interesting_schedules",
    "ops",
    "schedules",
    "setups",
]

_U16 = st.integers(0, 0xFFFF)


@st.composite
def _op(draw: st.DrawFn, nr_pages: int) -> Op:
    kind = draw(st.sampled_from(OpKind))
    if kind is OpKind.KILL:
        return Op(kind, value=draw(st.integers(0, MAX_THREADS - 1)))
    mm = draw(st.integers(0, MAX_MMS - 1))
    page = draw(st.integers(0, nr_pages - 1))
    # normalize_op zeroes what `kind` does not use and keeps the rest, which is in range.
    npages = draw(st.integers(1, nr_pages))
    prot = draw(st.integers(0, 7))
    value = draw(_U16)
    return normalize_op(kind, mm, page, npages, prot, value, nr_pages)


def ops(nr_pages: int) -> st.SearchStrategy[Op]:
    """Canonical ops for an address space of `nr_pages` pages (1..MAX_PAGES)."""
    if not 1 <= nr_pages <= MAX_PAGES:
        raise ValueError(f"nr_pages must be 1..{MAX_PAGES}, not {nr_pages}")
    return _op(nr_pages)


def schedules(max_choices: int = 64) -> st.SearchStrategy[Schedule]:
    """Canonical schedules of every strategy; explicit ones have at most `max_choices` bytes."""
    seeds = st.integers(0, 2**64 - 1)
    choices = st.lists(st.integers(0, 255), max_size=min(max_choices, MAX_CHOICES))
    return st.one_of(
        st.just(Schedule.serial()),
        choices.map(lambda c: Schedule.explicit(tuple(c))),
        st.builds(Schedule.pct, seeds, st.integers(1, MAX_DEPTH), st.integers(1, 0xFFFF)),
        st.builds(Schedule.random, seeds),
    )


@st.composite
def _case(draw: st.DrawFn, max_threads: int, max_ops: int) -> Case:
    nr_pages = draw(st.integers(1, MAX_PAGES))
    part = st.lists(ops(nr_pages), max_size=max_ops).map(tuple)
    threads = draw(st.lists(part, min_size=1, max_size=max_threads).map(tuple))
    return Case(
        threads=threads,
        setup=draw(part),
        post=draw(part),
        nr_pages=nr_pages,
        swap_async=draw(st.booleans()),
        uffd_monitor=draw(st.booleans()),
        profile=draw(st.sampled_from(PROFILES)),
        schedule=draw(schedules()),
    )


def cases(
    max_threads: int = MAX_THREADS, max_ops: int = MAX_OPS_PER_PART
) -> st.SearchStrategy[Case]:
    """Canonical cases with 1..`max_threads` threads and at most `max_ops` ops per part."""
    if not 1 <= max_threads <= MAX_THREADS or not 0 <= max_ops <= MAX_OPS_PER_PART:
        raise ValueError(f"max_threads is 1..{MAX_THREADS} and max_ops 0..{MAX_OPS_PER_PART}")
    return _case(max_threads, max_ops)


# ---------------------------------------------------------------------------------------------
# Interesting cases


# Thread op kinds, accesses first and twice (sampled_from shrinks toward the front).
_KINDS: tuple[OpKind, ...] = (
    OpKind.READ,
    OpKind.WRITE,
    OpKind.READ,
    OpKind.WRITE,
    *(k for k in OpKind if k not in (OpKind.READ, OpKind.WRITE)),
)
_VALUE_KINDS = (OpKind.WRITE, OpKind.UFFD_COPY)


@dataclass(frozen=True)
class Setup:
    """A drawn setup part and what the thread ops aim at: the mapped pages, and whether the
    setup forked (then mm 1 exists)."""

    ops: tuple[Op, ...]
    mapped: tuple[int, ...]
    forked: bool


@st.composite
def _regions(draw: st.DrawFn, nr_pages: int) -> tuple[list[Op], list[int], list[int]]:
    """The mmaps, the mapped pages and the writable ones: pages 0..rw_end read-write (maybe as
    two mmaps that merge), maybe a region above, read-only or a read-write MAP_GROWSDOWN stack."""
    rw_end = draw(st.integers(1, nr_pages))
    cut = draw(st.integers(0, rw_end - 1))
    ops = [Op(OpKind.MMAP, 0, 0, rw_end, RW)]
    if cut:
        ops = [Op(OpKind.MMAP, 0, 0, cut, RW), Op(OpKind.MMAP, 0, cut, rw_end - cut, RW)]
    mapped = list(range(rw_end))
    writable = list(mapped)
    if rw_end < nr_pages and draw(st.booleans()):
        start = draw(st.integers(rw_end, nr_pages - 1))
        size = draw(st.integers(1, nr_pages - start))
        prot = draw(st.sampled_from((PROT_READ, RW | MAP_GROWSDOWN)))
        ops.append(Op(OpKind.MMAP, 0, start, size, prot))
        mapped += range(start, start + size)
        writable += range(start, start + size) if prot & PROT_WRITE else []
    return ops, mapped, writable


@st.composite
def _setup(draw: st.DrawFn, nr_pages: int) -> Setup:
    """At most 3 mmaps, 8 writes, 3 preparations and a fork: 15 ops, within a part's 16."""
    ops, mapped, writable = draw(_regions(nr_pages))
    written = draw(st.lists(st.sampled_from(writable), unique=True, max_size=8))
    ops += [Op(OpKind.WRITE, 0, p, value=1) for p in sorted(written)]
    for kind in (OpKind.MADVISE_PAGEOUT, OpKind.TO_DEVICE, OpKind.UFFD_REGISTER):
        if draw(st.integers(0, 3)) == 3:
            page = draw(st.sampled_from(mapped))
            n = draw(st.integers(1, nr_pages - page)) if kind is not OpKind.TO_DEVICE else 0
            ops.append(Op(kind, 0, page, n))
    forked = draw(st.integers(0, 3)) == 3
    if forked:
        ops.append(Op(OpKind.FORK, 0))
    return Setup(tuple(ops), tuple(mapped), forked)


def setups(nr_pages: int) -> st.SearchStrategy[Setup]:
    """Setup parts that map memory and prepare it (see the module docstring)."""
    if not 1 <= nr_pages <= MAX_PAGES:
        raise ValueError(f"nr_pages must be 1..{MAX_PAGES}, not {nr_pages}")
    return _setup(nr_pages)


@st.composite
def _focused_op(
    draw: st.DrawFn,
    nr_pages: int,
    mapped: tuple[int, ...],
    forked: bool,
    threads: int,
    kinds: tuple[OpKind, ...],
) -> Op:
    kind = draw(st.sampled_from(kinds))
    if kind is OpKind.KILL:
        return Op(kind, value=draw(st.integers(0, threads - 1)))
    mm = 1 if forked and draw(st.integers(0, 3)) == 3 else 0
    if kind is OpKind.FORK:
        return Op(kind, mm)
    # Mostly a mapped page (index 0 first, so shrinking lands there), sometimes any page.
    if mapped and draw(st.integers(0, 5)) < 5:
        page = draw(st.sampled_from(mapped))
    else:
        page = draw(st.integers(0, nr_pages - 1))
    npages = draw(st.integers(1, max(1, min(4, nr_pages - page))))
    prot = draw(st.sampled_from((RW, PROT_READ, 0, PROT_WRITE, RW | MAP_GROWSDOWN)))
    return normalize_op(kind, mm, page, npages, prot, 1, nr_pages)


def focused_ops(
    nr_pages: int,
    mapped: tuple[int, ...] = (),
    forked: bool = False,
    threads: int = 1,
    kinds: Iterable[OpKind] = tuple(OpKind),
) -> st.SearchStrategy[Op]:
    """Thread ops of the given `kinds` (all by default; reads and writes twice as often as the
    others) aimed at `mapped` pages (5 times in 6), at mm 1 one time in four when `forked`; a
    kill aims at one of `threads` threads. Values are 1: use `distinct_values` on the case."""
    if not 1 <= nr_pages <= MAX_PAGES or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"nr_pages is 1..{MAX_PAGES} and threads 1..{MAX_THREADS}")
    wanted = set(kinds)
    weighted = tuple(k for k in _KINDS if k in wanted)
    if not weighted:
        raise ValueError("focused_ops needs at least one op kind")
    return _focused_op(nr_pages, mapped, forked, threads, weighted)


def interesting_schedules(max_choices: int = 32) -> st.SearchStrategy[Schedule]:
    """Schedules of every strategy, serial first: pct with the depths and step counts
    `fuzz.gen` draws from, random, and explicit choice lists of at most `max_choices` bytes."""
    seeds = st.integers(0, 2**64 - 1)
    return st.one_of(
        st.just(Schedule.serial()),
        st.builds(Schedule.pct, seeds, st.integers(*PCT_DEPTHS), st.integers(*PCT_STEPS)),
        st.builds(Schedule.random, seeds),
        st.lists(st.integers(0, 255), max_size=max_choices).map(
            lambda c: Schedule.explicit(tuple(c))
        ),
    )


def distinct_values(case: Case) -> Case:
    """`case` with every write and ``uffd_copy`` storing its own value (0x101, 0x102, ... in
    case order), so that a read tells which write it saw."""
    values = iter(range(0x101, 0x101 + case.op_count()))

    def fix(ops: tuple[Op, ...]) -> tuple[Op, ...]:
        return tuple(replace(o, value=next(values)) if o.kind in _VALUE_KINDS else o for o in ops)

    setup = fix(case.setup)
    threads = tuple(fix(t) for t in case.threads)
    return replace(case, setup=setup, threads=threads, post=fix(case.post))


@st.composite
def _interesting_case(draw: st.DrawFn, max_threads: int, max_ops: int) -> Case:
    nr_pages = draw(st.integers(2, 8))
    setup = draw(setups(nr_pages))
    nthreads = draw(st.integers(1, max_threads))
    op = focused_ops(nr_pages, setup.mapped, setup.forked, nthreads)
    threads = tuple(
        tuple(draw(st.lists(op, min_size=1, max_size=max_ops))) for _ in range(nthreads)
    )
    reads = st.sampled_from(setup.mapped).map(lambda p: Op(OpKind.READ, 0, p))
    case = Case(
        threads=threads,
        setup=setup.ops,
        post=tuple(draw(st.lists(reads, max_size=2))),
        nr_pages=nr_pages,
        swap_async=draw(st.booleans()),
        uffd_monitor=draw(st.booleans()),
        schedule=draw(interesting_schedules()),
    )
    return distinct_values(case).validate()


def interesting_cases(max_threads: int = 4, max_ops: int = 6) -> st.SearchStrategy[Case]:
    """Canonical cases that map memory and aim at it, 1..`max_threads` threads of 1..`max_ops`
    ops each, any strategy (see the module docstring)."""
    if not 1 <= max_threads <= MAX_THREADS or not 1 <= max_ops <= MAX_OPS_PER_PART:
        raise ValueError(f"max_threads is 1..{MAX_THREADS} and max_ops 1..{MAX_OPS_PER_PART}")
    return _interesting_case(max_threads, max_ops)
