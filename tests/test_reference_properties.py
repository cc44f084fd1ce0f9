"""Properties of the reference engine over generated cases (Hypothesis; profiles in conftest).

* Serial runs agree with the sequential spec: every page's history is linearizable (with the
  kernel effects the spec cannot express made explicit, see
  `fuzz.bench.reference_stress.with_implicit_effects`), the contract layer finds nothing, and
  the run ends ``ok`` with a snapshot after every operation that ran.
* Concurrent runs of `fuzz.gen` cases: the same, without snapshots.
* Uniformly random cases (`fuzz.strategies.cases`), any schedule: the engine never raises, and
  the contract layer finds nothing.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

import reference
from fuzz.case import Case, Schedule
from fuzz.gen import random_case
from fuzz.harness import record_problems
from fuzz.linearize import check_record
from fuzz.record import RES_NOT_RUN, STATUS_OK, RunRecord
from fuzz.strategies import cases

seeds = st.integers(0, 2**64 - 1)


def check(case: Case, rec: RunRecord) -> None:
    assert rec.status == STATUS_OK, rec.wait_for
    assert rec.violations == (), rec.violations
    assert record_problems(case, rec) == []
    lin = check_record(case, rec, explain=True)
    assert lin.ok, lin.describe()


@given(seeds)
def test_serial_generated_cases_agree_with_the_spec(seed: int) -> None:
    case = random_case(seed, serial_fraction=1.0)
    rec = reference.run(case)
    check(case, rec)
    ran = [o for o in rec.ops if o.result != RES_NOT_RUN and o.part != "monitor"]
    assert len(rec.snapshots) == len(ran)


@given(cases(max_threads=3, max_ops=6))
def test_serial_uniform_cases_agree_with_the_spec(case: Case) -> None:
    case = replace(case, schedule=Schedule.serial())
    check(case, reference.run(case))


@given(seeds)
def test_concurrent_generated_cases_are_linearizable_and_clean(seed: int) -> None:
    case = random_case(seed, threads=(2, 4), ops_per_thread=(2, 8), serial_fraction=0.0)
    check(case, reference.run(case))


@given(cases(max_threads=4, max_ops=8))
def test_uniform_cases_any_schedule_never_raise_and_stay_clean(case: Case) -> None:
    rec = reference.run(case)
    assert rec.violations == ()
    assert rec.status == STATUS_OK
