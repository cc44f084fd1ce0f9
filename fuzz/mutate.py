"""Structure-aware mutation of cases: operations, arguments and schedule choices.

A byte-level mutator wastes most of its effort on the case header; these mutators change what
a kernel developer would change by hand: the interleaving (a PCT seed, depth or step count, an
explicit choice), an operation's arguments (page, range, protection, value), whole operations
(insert, delete, replace, move between threads), the threads themselves, and the device
knobs (synchronous or asynchronous swap, the uffd monitor). Every result is a valid canonical
case. All randomness comes from the caller's `SplitMix64`, so a mutation sequence is
deterministic for a seed. The campaign (`fuzz.campaign`) and the atheris target's custom
mutator both use `mutate` and `crossover`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fuzz.case import (
    MAX_CHOICES,
    MAX_DEPTH,
    MAX_OPS_PER_PART,
    MAX_THREADS,
    Case,
    Op,
    OpKind,
    Schedule,
    Strategy,
    normalize_op,
)
from fuzz.gen import Draw, random_schedule, random_thread_op
from reference.sched import SplitMix64

Mutator = Callable[[Case, Draw], Case]


def _draw(case: Case, rng: SplitMix64) -> Draw:
    d = Draw(rng.next_u64(), case.nr_pages)
    d.mapped = sorted(
        {p for op in case.setup if op.kind is OpKind.MMAP for p in op.pages() if p < case.nr_pages}
    )
    d.value = 0x100 + rng.below(0xF000)
    return d


def _forked(case: Case) -> bool:
    return any(op.kind is OpKind.FORK for op in case.setup)


def _parts(case: Case) -> list[list[Op]]:
    """setup, thread 0, ..., post as mutable lists."""
    return [list(case.setup), *map(list, case.threads), list(case.post)]


def _from_parts(case: Case, parts: list[list[Op]]) -> Case:
    return replace(
        case,
        setup=tuple(parts[0]),
        threads=tuple(tuple(p) for p in parts[1:-1]),
        post=tuple(parts[-1]),
    )


def _pick_op(parts: list[list[Op]], d: Draw) -> tuple[int, int] | None:
    spots = [(i, j) for i, part in enumerate(parts) for j in range(len(part))]
    return spots[d.below(len(spots))] if spots else None


def tweak_schedule(case: Case, d: Draw) -> Case:
    """Another interleaving of the same operations."""
    s = case.schedule
    if s.strategy is Strategy.PCT and d.chance(0.6):
        which = d.below(3)
        if which == 0:
            return replace(case, schedule=replace(s, seed=d.rng.next_u64()))
        if which == 1:
            depth = min(MAX_DEPTH, max(1, s.depth + (1 if d.chance(0.5) else -1)))
            return replace(case, schedule=replace(s, depth=depth))
        steps = max(1, min(0xFFFF, s.steps * 2 if d.chance(0.5) else s.steps // 2))
        return replace(case, schedule=replace(s, steps=steps))
    if s.strategy is Strategy.EXPLICIT and s.choices and d.chance(0.7):
        return replace(case, schedule=Schedule.explicit(_tweak_choices(list(s.choices), d)))
    if s.strategy is Strategy.RANDOM and d.chance(0.5):
        return replace(case, schedule=Schedule.random(d.rng.next_u64()))
    return replace(case, schedule=random_schedule(d, 0.1))


def _tweak_choices(choices: list[int], d: Draw) -> tuple[int, ...]:
    i = d.below(len(choices))
    which = d.below(4)
    if which == 0:
        choices[i] = d.below(256)
    elif which == 1 and len(choices) < MAX_CHOICES:
        choices.insert(i, d.below(256))
    elif which == 2:
        del choices[i]
    else:
        del choices[i:]  # fewer choices: the scheduler keeps the running task (fewer switches)
    return tuple(choices)


def tweak_op(case: Case, d: Draw) -> Case:
    """Change one operation's arguments: page, range, protection or value."""
    parts = _parts(case)
    spot = _pick_op(parts, d)
    if spot is None:
        return insert_op(case, d)
    i, j = spot
    op = parts[i][j]
    field = d.below(4)
    page, npages, prot, value = op.page, op.npages, op.prot, op.value
    if field == 0:
        page = d.page()
    elif field == 1:
        npages = d.between(1, case.nr_pages)
    elif field == 2:
        prot = d.below(8)
    else:
        value = d.next_value() if op.kind is not OpKind.KILL else d.below(len(case.threads))
    mm = op.mm if d.chance(0.9) else d.below(2)
    parts[i][j] = normalize_op(op.kind, mm, page, npages, prot, value, case.nr_pages)
    return _from_parts(case, parts)


def replace_op(case: Case, d: Draw) -> Case:
    parts = _parts(case)
    spot = _pick_op(parts, d)
    if spot is None:
        return insert_op(case, d)
    i, j = spot
    parts[i][j] = random_thread_op(d, len(case.threads), _forked(case))
    return _from_parts(case, parts)


def insert_op(case: Case, d: Draw) -> Case:
    parts = _parts(case)
    open_parts = [i for i in range(1, len(parts) - 1) if len(parts[i]) < MAX_OPS_PER_PART]
    if not open_parts:
        return delete_op(case, d)
    i = open_parts[d.below(len(open_parts))]
    parts[i].insert(
        d.below(len(parts[i]) + 1), random_thread_op(d, len(case.threads), _forked(case))
    )
    return _from_parts(case, parts)


def delete_op(case: Case, d: Draw) -> Case:
    parts = _parts(case)
    spot = _pick_op(parts, d)
    if spot is None:
        return case
    i, j = spot
    del parts[i][j]
    return _from_parts(case, parts)


def move_op(case: Case, d: Draw) -> Case:
    """Move an operation to another thread (what runs concurrently with what)."""
    parts = _parts(case)
    spot = _pick_op(parts[1:-1], d)
    if spot is None or len(case.threads) < 2:
        return tweak_op(case, d)
    i, j = spot[0] + 1, spot[1]
    op = parts[i].pop(j)
    k = 1 + d.below(len(case.threads))
    if len(parts[k]) >= MAX_OPS_PER_PART:
        return case
    parts[k].insert(d.below(len(parts[k]) + 1), op)
    return _from_parts(case, parts)


def add_or_drop_thread(case: Case, d: Draw) -> Case:
    threads = list(case.threads)
    if len(threads) > 1 and (len(threads) == MAX_THREADS or d.chance(0.4)):
        del threads[d.below(len(threads))]
    else:
        n = 1 + d.below(4)
        forked = _forked(case)
        threads.append(tuple(random_thread_op(d, len(threads) + 1, forked) for _ in range(n)))
    return replace(case, threads=tuple(threads))


def toggle_device(case: Case, d: Draw) -> Case:
    if d.chance(0.5):
        return replace(case, swap_async=not case.swap_async)
    return replace(case, uffd_monitor=not case.uffd_monitor)


MUTATORS: tuple[tuple[Mutator, int], ...] = (
    (tweak_schedule, 30),
    (tweak_op, 20),
    (replace_op, 12),
    (insert_op, 12),
    (delete_op, 8),
    (move_op, 8),
    (add_or_drop_thread, 5),
    (toggle_device, 5),
)
_TOTAL = sum(w for _, w in MUTATORS)


def mutate(case: Case, rng: SplitMix64, rounds: int = 0) -> Case:
    """1 to 3 stacked structure-aware mutations of `case` (`rounds` > 0 fixes the count)."""
    d = _draw(case, rng)
    for _ in range(rounds or 1 + d.below(3)):
        r = d.below(_TOTAL)
        for fn, weight in MUTATORS:
            if r < weight:
                case = fn(case, d)
                break
            r -= weight
    return case.validate()


def crossover(a: Case, b: Case, rng: SplitMix64) -> Case:
    """`a`'s setup and schedule with a mix of `a`'s and `b`'s threads (ops clamped to `a`'s
    address space)."""
    d = _draw(a, rng)
    pool = list(a.threads) + [
        tuple(
            normalize_op(op.kind, op.mm, op.page, op.npages, op.prot, op.value, a.nr_pages)
            for op in t
        )
        for t in b.threads
    ]
    n = max(1, min(MAX_THREADS, len(a.threads) + (1 if d.chance(0.5) else 0)))
    threads = tuple(pool[d.below(len(pool))] for _ in range(n))
    return replace(a, threads=threads).validate()
