"""Landmarks, harvesting and schedule seeking: how the corpus finds and keeps interesting cases.

A *landmark* names something a run reached: a yield site, a lock event, a counter, an outcome,
an overlap of two operations (`landmarks`). Scenario files list the landmarks they must reach
(``# reaches:``, checked by ``tests/test_corpus_scenarios.py``); ``vmafuzz corpus harvest``
keeps generated cases that reach rare landmarks or diverge benignly, shrunk
(`harvest`); ``vmafuzz corpus seek`` finds schedules under which a scenario reaches given
landmarks (`seek`). The bundle format itself is `fuzz.corpus`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from fuzz.case import Case, OpKind, Schedule
from fuzz.harness import BENIGN, FINDING, Verdict, check_case
from fuzz.record import STATUS_OK, OpRecord, RunRecord, result_name

# ---------------------------------------------------------------------------------------------
# Landmarks: what a run reached, for scenario checks and for harvesting fuzzed cases


def _outcome(o: OpRecord) -> str:
    if o.result >= 0:
        return "1" if o.op.kind is OpKind.MIGRATE and o.result == 1 else "ok"
    return result_name(o.result).replace(" ", "-")


def _overlaps(rec: RunRecord) -> set[str]:
    """``overlap:<kind>+<kind>`` for two operations of different threads that were both in
    progress at some step (kinds sorted): the schedule really interleaved them."""
    ops = [o for o in rec.ops if o.part == "thread" and o.invoke >= 0 and o.response > o.invoke]
    out = set()
    for i, a in enumerate(ops):
        for b in ops[i + 1 :]:
            if a.task != b.task and a.invoke < b.response and b.invoke < a.response:
                kinds = sorted((a.op.kind.name.lower(), b.op.kind.name.lower()))
                out.add("overlap:" + "+".join(kinds))
    return out


def landmarks(rec: RunRecord) -> frozenset[str]:
    """What one run reached, as names: trace sites (``do_swap_page:swapcache_prepare``; the run
    must have been traced), lock events (``lock:wait:folio_wait_locked``), non-zero counters
    (``VMA_LOCK_MISS``), per-kind outcomes (``read=hung``, ``migrate=1``, ``fork=-EAGAIN``),
    `_overlaps`, ``stack-growth``, ``migration-failure`` and ``status:<status>`` unless ok."""
    out = {site for _, _, site in rec.trace if site}
    out.update(f"lock:{e.action}:{e.primitive}" for e in rec.lock_events)
    out.update(name for name, n in rec.counters if n > 0)
    out.update(f"{o.op.kind.name.lower()}={_outcome(o)}" for o in rec.ops if o.part != "monitor")
    out.update(_overlaps(rec))
    if rec.growths:
        out.add("stack-growth")
    if rec.migration_failures:
        out.add("migration-failure")
    if rec.status != STATUS_OK:
        out.add(f"status:{rec.status}")
    return frozenset(out)


def _divergence_landmarks(v: Verdict) -> set[str]:
    ref, opt = v.reference, v.optimized
    if v.kind != BENIGN or ref is None or opt is None:
        return set()
    out = {
        f"diverges:{r.op.kind.name.lower()}"
        for r, o in zip(ref.ops, opt.ops, strict=False)
        if r.part != "monitor" and r.result != o.result
    }
    if ref.image != opt.image:
        out.add("diverges:image")
    return out


def verdict_landmarks(v: Verdict) -> frozenset[str]:
    """Both engines' `landmarks`, plus ``benign`` and ``diverges:<kind>`` (an op kind whose
    results differ, or ``image``) for a benign divergence."""
    out = _divergence_landmarks(v)
    if v.kind == BENIGN:
        out.add("benign")
    for rec in (v.reference, v.optimized):
        if rec is not None:
            out |= landmarks(rec)
    return frozenset(out)


# ---------------------------------------------------------------------------------------------
# Harvesting: interesting cases from the random generator, shrunk


@dataclass(frozen=True)
class Harvested:
    """A generated case kept for `reasons` (landmarks), shrunk from `ops_before` operations."""

    seed: int
    case: Case
    ops_before: int
    reasons: tuple[str, ...]

    def text(self) -> str:
        """The case file: a comment header saying where it came from, then the text form."""
        head = (
            f"# Found by fuzzing: fuzz.gen.random_case({self.seed}), shrunk from "
            f"{self.ops_before} to {self.case.op_count()} ops by `vmafuzz corpus harvest`.\n"
            f"# Kept for: {' '.join(self.reasons)}\n"
        )
        return head + str(self.case)


Surveyed = tuple[int, Case, frozenset[str]]


def survey(seeds: Iterable[int]) -> list[Surveyed]:
    """`(seed, case, verdict_landmarks)` of `fuzz.gen.random_case(seed)` for every seed whose
    case is not a finding (findings belong in the findings store, not in a corpus)."""
    from fuzz.gen import random_case

    out = []
    for seed in seeds:
        case = random_case(seed)
        v = check_case(case, trace=True)
        if v.kind != FINDING:
            out.append((seed, case, verdict_landmarks(v)))
    return out


# Features a harvest always keeps an example of, however common: the rare paths of the model.
ALWAYS_KEEP = frozenset(
    {
        "VMA_LOCK_MISS",
        "migration-failure",
        "migrate=1",
        "stack-growth",
        "read=hung",
        "write=hung",
        "do_swap_page:swapcache_prepare",
    }
)


def _wanted(pool: list[Surveyed], rare: float) -> list[str]:
    """`ALWAYS_KEEP` and the landmarks seen in at most a `rare` fraction of `pool` (a quarter
    of that for overlaps, which are many), rarest first; ``=not-run`` outcomes say nothing."""
    counts = Counter(f for _, _, fs in pool for f in fs)
    limit = rare * len(pool)
    wanted = [
        f
        for f, n in counts.items()
        if f in ALWAYS_KEEP
        or (n <= (limit / 4 if f.startswith("overlap:") else limit) and not f.endswith("=not-run"))
    ]
    return sorted(wanted, key=lambda f: (counts[f], f))


def select(pool: list[Surveyed], rare: float, benign: int) -> list[tuple[Surveyed, frozenset[str]]]:
    """The cases to keep, each with the landmarks it is kept for. For every rare landmark
    (`_wanted`) not yet covered, the smallest case that has it, kept for it and for every
    other uncovered rare landmark it has; then the smallest benign divergences whose set of
    diverging op kinds is new, until `benign` of the kept cases diverge."""
    by_size = sorted(pool, key=lambda s: (s[1].op_count(), s[0]))
    wanted = _wanted(pool, rare)
    left = set(wanted)
    picked: list[tuple[Surveyed, frozenset[str]]] = []
    for f in wanted:
        if f in left:
            best = next(s for s in by_size if f in s[2])
            reasons = frozenset(left & best[2])
            picked.append((best, reasons))
            left -= reasons
    keys = {frozenset(f for f in s[2] if f.startswith("diverges:")) for s, _ in picked}
    for s in by_size:
        if sum(any(f.startswith("diverges:") for f in r) for _, r in picked) >= benign:
            break
        key = frozenset(f for f in s[2] if f.startswith("diverges:"))
        if "benign" in s[2] and key not in keys:
            keys.add(key)
            picked.append((s, key | {"benign"}))
    return picked


def _smaller(case: Case) -> Iterator[Case]:
    """Cases with one thread, the post part or one operation less."""
    if len(case.threads) > 1:
        for t in range(len(case.threads)):
            yield replace(case, threads=case.threads[:t] + case.threads[t + 1 :])
    for t, ops in enumerate(case.threads):
        for i in range(len(ops)):
            threads = (*case.threads[:t], ops[:i] + ops[i + 1 :], *case.threads[t + 1 :])
            yield replace(case, threads=threads)
    for i in range(len(case.post)):
        yield replace(case, post=case.post[:i] + case.post[i + 1 :])
    for i in range(len(case.setup)):
        yield replace(case, setup=case.setup[:i] + case.setup[i + 1 :])


def shrink(case: Case, reasons: frozenset[str]) -> Case:
    """Greedily drop threads and operations while the case is still not a finding and still
    has every landmark in `reasons`."""

    def keeps(c: Case) -> bool:
        v = check_case(c, trace=True)
        return v.kind != FINDING and reasons <= verdict_landmarks(v)

    progress = True
    while progress:
        progress = False
        for smaller in _smaller(case):
            if keeps(smaller):
                case, progress = smaller, True
                break
    return case


def harvest(seeds: Iterable[int], rare: float = 0.02, benign: int = 12) -> list[Harvested]:
    """Survey `seeds`, `select` the interesting cases and `shrink` each (sorted by seed)."""
    picked = select(survey(seeds), rare, benign)
    out = [
        Harvested(seed, shrink(case, reasons), case.op_count(), tuple(sorted(reasons)))
        for (seed, case, _), reasons in picked
    ]
    return sorted(out, key=lambda h: h.seed)


def seek(case: Case, wanted: frozenset[str], engine: str, tries: int) -> Iterator[Schedule]:
    """Schedules under which `case` reaches every landmark of `wanted` in `engine` (in each
    engine for ``both``) and is not a finding: ``random`` seeds and ``pct`` seeds (depth 3)
    1..`tries`, in that order. For writing scenarios whose ``# reaches:`` lines must hold."""
    for seed in range(1, tries + 1):
        steps = max(20, 10 * case.op_count())
        for sched in (Schedule.random(seed), Schedule.pct(seed, 3, steps)):
            v = check_case(replace(case, schedule=sched), trace=True)
            recs = [v.reference, v.optimized] if engine == "both" else [v.record(engine)]
            if v.kind != FINDING and all(r and wanted <= landmarks(r) for r in recs):
                yield sched
