"""`vmafuzz minimize`: the smallest case that keeps a finding's signature.

Deterministic delta debugging (Zeller's ddmin, chunks tried in order) in three rounds, each kept
only if `check_case` still reports a finding with the *same signature* (so the minimiser cannot
drift onto another bug):

1. the schedule is resolved to the explicit choices the failing engine made, so the failing
   interleaving is pinned;
2. operations are removed (setup, threads and post together), then empty threads, then the
   case is simplified (monitor off, synchronous swap, fewer pages);
3. context switches: explicit choices are removed; when the list runs out the scheduler keeps
   the current task running, so fewer choices means fewer switches.

Rounds 2 and 3 repeat until neither shrinks the case (at most `MAX_ROUNDS` times).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from fuzz.case import Case, Op, Schedule, Strategy
from fuzz.harness import Verdict, check_case, resolved_case

MAX_ROUNDS = 4
T = TypeVar("T")


@dataclass(frozen=True)
class Minimized:
    case: Case
    verdict: Verdict
    checks: int
    before: tuple[int, int, int]  # ops, threads, context switches
    after: tuple[int, int, int]


def context_switches(verdict: Verdict, engine: str) -> int:
    """Switches between user tasks in `engine`'s resolved schedule."""
    rec = verdict.record(engine)
    if rec is None:
        return 0
    return sum(1 for a, b in zip(rec.schedule, rec.schedule[1:], strict=False) if a != b)


def ddmin(items: Sequence[T], keep: Callable[[list[T]], bool]) -> list[T]:
    """The classic ddmin: a 1-minimal sublist of `items` for which `keep` holds."""
    current = list(items)
    n = 2
    while len(current) >= 2:
        chunk = max(1, len(current) // n)
        removed = False
        for start in range(0, len(current), chunk):
            candidate = current[:start] + current[start + chunk :]
            if candidate and keep(candidate):
                current = candidate
                n = max(n - 1, 2)
                removed = True
                break
        if not removed:
            if chunk == 1:
                break
            n = min(len(current), n * 2)
    if len(current) == 1 and keep([]):
        return []
    return current


class _Minimizer:
    def __init__(self, signature: str, mutant: str | None) -> None:
        self.signature = signature
        self.mutant = mutant
        self.checks = 0
        self.last: Verdict | None = None

    def fails(self, case: Case) -> bool:
        self.checks += 1
        verdict = check_case(case, mutant=self.mutant)
        if any(f.signature == self.signature for f in verdict.findings):
            self.last = verdict
            return True
        return False

    def ops(self, case: Case) -> Case:
        tagged = [(part, t, op) for part, t, op in case.all_ops()]
        kept = ddmin(tagged, lambda sub: self.fails(_with_ops(case, sub)))
        return _with_ops(case, kept)

    def threads(self, case: Case) -> Case:
        for t in reversed(range(len(case.threads))):
            if len(case.threads) > 1 and not case.threads[t]:
                candidate = replace(case, threads=case.threads[:t] + case.threads[t + 1 :])
                if self.fails(candidate):
                    case = candidate
        return case

    def simplify(self, case: Case) -> Case:
        pages = max([1, *(max(op.page + 1, op.npages) for _, _, op in case.all_ops())])
        for change in (
            {"uffd_monitor": False},
            {"swap_async": False},
            {"nr_pages": pages},
            {"schedule": Schedule.serial()},
        ):
            candidate = replace(case, **change)
            if candidate != case and self.fails(candidate):
                case = candidate
        return case

    def switches(self, case: Case) -> Case:
        if case.schedule.strategy is not Strategy.EXPLICIT:
            return case
        kept = ddmin(
            list(case.schedule.choices),
            lambda sub: self.fails(replace(case, schedule=Schedule.explicit(tuple(sub)))),
        )
        return replace(case, schedule=Schedule.explicit(tuple(kept)))


def _with_ops(case: Case, tagged: Sequence[tuple[str, int, Op]]) -> Case:
    threads: list[list[Op]] = [[] for _ in case.threads]
    setup: list[Op] = []
    post: list[Op] = []
    for part, t, op in tagged:
        (setup if part == "setup" else post if part == "post" else threads[t]).append(op)
    return replace(case, setup=tuple(setup), post=tuple(post), threads=tuple(map(tuple, threads)))


def _size(case: Case, verdict: Verdict, engine: str) -> tuple[int, int, int]:
    busy = sum(1 for t in case.threads if t)
    return (case.op_count(), busy, context_switches(verdict, engine))


def minimize(case: Case, verdict: Verdict, mutant: str | None = None) -> Minimized:
    """Shrink `case`, whose `verdict` holds a finding, keeping that finding's signature."""
    finding = verdict.finding
    if finding is None:
        raise ValueError("minimize needs a case that has a finding")
    m = _Minimizer(finding.signature, mutant)
    rec = verdict.record(finding.engine)
    current = resolved_case(case, rec) if rec is not None else case
    if not m.fails(current):
        current = case  # the resolved schedule does not reproduce it: keep the original
        if not m.fails(current):
            raise ValueError(f"the case no longer produces {finding.signature}")
    before = _size(case, verdict, finding.engine)
    for _ in range(MAX_ROUNDS):
        start = current
        current = m.ops(current)
        current = m.threads(current)
        current = m.simplify(current)
        current = m.switches(current)
        if current == start:
            break
    assert m.fails(current) and m.last is not None
    last = m.last.focus(finding.signature)  # the token and report are about this finding
    return Minimized(current, last, m.checks, before, _size(current, last, finding.engine))
