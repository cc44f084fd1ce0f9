"""Hypothesis strategies for vmafuzz cases. Every value they draw is canonical: it passes
`Case.validate`, so ``decode_strict(encode(c)) == c``.

Shrinking goes toward fewer ops, reads of page 0 in mm 0, and the serial schedule. This module
never imports atheris, so it loads wherever Hypothesis does.
"""

from __future__ import annotations

from hypothesis import strategies as st

from fuzz.case import (
    MAX_CHOICES,
    MAX_DEPTH,
    MAX_MMS,
    MAX_OPS_PER_PART,
    MAX_PAGES,
    MAX_THREADS,
    PROFILES,
    Case,
    Op,
    OpKind,
    Schedule,
    normalize_op,
)

__all__ = ["cases", "ops", "schedules"]

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
