"""Interleaving features: what each engine's interleaving reached (`RunRecord.features`)."""

from __future__ import annotations

from dataclasses import replace

import pytest

import optimized
import reference
from fuzz.campaign import coverage
from fuzz.case import Case, Schedule, parse_case
from fuzz.gen import random_case
from fuzz.harness import check_case
from fuzz.record import FEATURE_TAG_OPTIMIZED, FEATURE_TAG_REFERENCE, RunRecord
from reference.run import Engine
from reference.sched import (
    FEATURE_BITS,
    LOCK_FIELDS,
    Runtime,
    Task,
    TaskGen,
    feature_bucket,
    site_hash,
)

FAULT_VS_MUNMAP = """\
pages 4
swap async
setup:
  mmap mm0 0+4 rw
  write mm0 0 0x11
  write mm0 1 0x22
thread 0:
  read mm0 0
  write mm0 1 0x33
  read mm0 2
thread 1:
  munmap mm0 0+2
  mmap mm0 0+2 rw
thread 2:
  madvise_pageout mm0 0+2
  read mm0 1
schedule pct seed=5 depth=3 steps=80
"""


def _case() -> Case:
    return parse_case(FAULT_VS_MUNMAP)


def _runs(case: Case) -> tuple[RunRecord, RunRecord]:
    return reference.run(case), optimized.run(case)


def test_features_are_sorted_distinct_and_tagged_per_engine() -> None:
    ref, opt = _runs(_case())
    for rec, tag in ((ref, FEATURE_TAG_REFERENCE), (opt, FEATURE_TAG_OPTIMIZED)):
        assert rec.features, rec.engine
        assert list(rec.features) == sorted(set(rec.features))
        assert {f >> FEATURE_BITS for f in rec.features} == {tag}


def test_features_are_deterministic() -> None:
    for seed in range(5):
        case = random_case(seed, threads=(3, 4), ops_per_thread=(4, 6))
        assert reference.run(case).features == reference.run(case).features
        assert optimized.run(case).features == optimized.run(case).features


def test_features_do_not_depend_on_tracing() -> None:
    case = _case()
    assert reference.run(case, trace=True).features == reference.run(case).features
    assert optimized.run(case, trace=True).features == optimized.run(case).features


def test_features_can_be_turned_off() -> None:
    case = _case()
    assert reference.run(case, features=False).features == ()
    assert optimized.run(case, features=False).features == ()
    # ... and nothing else changes.
    assert replace(reference.run(case), features=()) == reference.run(case, features=False)
    assert replace(optimized.run(case), features=()) == optimized.run(case, features=False)


def test_different_schedules_reach_different_features() -> None:
    case = _case()
    schedules = [Schedule.serial(), *(Schedule.random(s) for s in range(1, 6))]
    for run in (reference.run, optimized.run):
        seen = {run(replace(case, schedule=s)).features for s in schedules}
        assert len(seen) >= 4, run


def test_the_native_record_converts_features() -> None:
    case = _case()
    rec = optimized.run(case)
    assert isinstance(rec.features, tuple)
    assert all(isinstance(f, int) for f in rec.features)


def _runtime_features(steps: list[tuple[int, str, int]]) -> list[int]:
    """Run tasks that reach `site` holding `locks` at each (task, site, locks) in turn."""
    rt = Runtime(features=True)
    tasks = [rt.spawn(f"t{i}") for i in range(2)]
    order = iter(steps)

    def body(task: Task) -> TaskGen:
        for tid, site, locks in steps:
            if tid == task.tid:
                task.locks = locks
                yield site

    for t in tasks:
        rt.start(t, body(t))

    class Scripted:
        def pick(self, rt: Runtime, runnable: list[Task]) -> Task | None:
            tid = next(order, (None,))[0]
            return tasks[tid] if tid is not None else (runnable[0] if runnable else None)

    rt.policy = Scripted()
    rt.run()
    return rt.feature_buckets()


def test_a_site_with_a_lock_held_is_another_feature() -> None:
    mmap_read = 1 << 4 * LOCK_FIELDS.index("mmap_lock:r")
    without = _runtime_features([(0, "site:a", 0)])
    with_lock = _runtime_features([(0, "site:a", mmap_read)])
    assert without != with_lock
    assert feature_bucket(site_hash("site:a"), 0, 0) in without
    assert feature_bucket(site_hash("site:a"), mmap_read, 0) in with_lock


def test_a_context_switch_names_the_sites_that_met() -> None:
    # Task 0 reaches a, then task 1 reaches b: the second step met a at a switch.
    switched = _runtime_features([(0, "a", 0), (1, "b", 0)])
    assert feature_bucket(site_hash("b"), 0, site_hash("a")) in switched
    # The same sites without a switch in between: b is reached with nothing met.
    alone = _runtime_features([(0, "a", 0), (0, "b", 0)])
    assert feature_bucket(site_hash("b"), 0, 0) in alone
    assert set(switched) != set(alone)


def test_locks_are_summarised_while_held_and_released_by_the_end() -> None:
    held_at_some_step = 0
    for seed in range(12):
        case = random_case(seed, threads=(3, 4), ops_per_thread=(4, 6))
        eng = Engine(case, trace=False)
        rec = eng.run()
        assert eng.rt.features is not None
        for _, locks, _ in eng.rt.features:
            held_at_some_step |= locks
        if rec.status == "ok" and not rec.violations:
            assert [t.locks for t in eng.rt.tasks] == [0] * len(eng.rt.tasks)
    # The mmap_lock (read and write) and the PTL were each held across some yield point.
    for name in ("mmap_lock:r", "mmap_lock:w", "ptl"):
        assert held_at_some_step & 0xF << 4 * LOCK_FIELDS.index(name), name


def test_the_optimized_engine_reports_vma_lock_features() -> None:
    # The optimized engine's fault path yields holding a VMA read lock; the reference never
    # takes one, so the engines' feature sets differ in kind, not just in tag.
    case = _case()
    ref, opt = _runs(case)
    untag = (1 << FEATURE_BITS) - 1
    assert {f & untag for f in ref.features} != {f & untag for f in opt.features}


def test_campaign_coverage_counts_the_engines_features() -> None:
    verdict = check_case(_case())
    cov = coverage(verdict)
    assert verdict.reference is not None and verdict.optimized is not None
    assert set(verdict.reference.features) <= cov
    assert set(verdict.optimized.features) <= cov


def test_both_engines_define_features_alike() -> None:
    native = pytest.importorskip("optimized._native")
    assert native.LOCK_FIELDS == LOCK_FIELDS
    sites = ["", "op:start", "lock_vma_under_rcu:mas_walk", "folio_lock:wait"]
    for i, site in enumerate(sites):
        for locks in (0, 1, 0x10, 0x1_0001, 0x100_0000, 0xFFF_FFFF):
            for prev in (None, *sites[i:]):
                want = feature_bucket(
                    site_hash(site), locks, 0 if prev is None else site_hash(prev)
                )
                assert native.feature_bucket(site, locks, prev) == want


@pytest.mark.parametrize("site", ["", "lock_vma_under_rcu:mas_walk", "op:start"])
def test_site_hash_is_fnv1a(site: str) -> None:
    h = 0x811C9DC5
    for b in site.encode():
        h = ((h ^ b) * 0x01000193) % 2**32
    assert site_hash(site) == h
