"""The Hypothesis strategies (`fuzz.strategies`) draw canonical cases, and the interesting
ones map memory, aim at it, and reach every op kind and every schedule strategy."""

from __future__ import annotations

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from fuzz.case import (
    Case,
    Op,
    OpKind,
    Schedule,
    Strategy,
    decode,
    decode_strict,
    encode,
    format_case,
    parse_case,
)
from fuzz.strategies import (
    Setup,
    cases,
    focused_ops,
    interesting_cases,
    interesting_schedules,
    ops,
    schedules,
    setups,
)


def assert_canonical(case: Case) -> None:
    data = encode(case)
    assert decode_strict(data) == case
    assert decode(data) == case
    assert parse_case(format_case(case)) == case


@given(cases())
def test_uniform_cases_are_canonical(case: Case) -> None:
    assert_canonical(case)


@given(interesting_cases())
def test_interesting_cases_are_canonical(case: Case) -> None:
    assert_canonical(case)


@given(st.integers(1, 16).flatmap(lambda n: st.tuples(st.just(n), ops(n))))
def test_ops_fit_the_address_space(drawn: tuple[int, Op]) -> None:
    nr_pages, op = drawn
    assert_canonical(Case(threads=((op,),), nr_pages=nr_pages))


@given(st.one_of(schedules(), interesting_schedules()))
def test_schedules_are_canonical(schedule: Schedule) -> None:
    assert_canonical(Case(threads=((),), schedule=schedule))


@given(st.integers(2, 16).flatmap(setups))
def test_setups_map_memory_first(setup: Setup) -> None:
    assert setup.ops[0].kind is OpKind.MMAP and setup.mapped
    assert setup.forked == any(op.kind is OpKind.FORK for op in setup.ops)


@given(interesting_cases())
def test_interesting_cases_store_distinct_values(case: Case) -> None:
    values = [
        op.value for _, _, op in case.all_ops() if op.kind in (OpKind.WRITE, OpKind.UFFD_COPY)
    ]
    assert len(values) == len(set(values))
    assert case.setup[0].kind is OpKind.MMAP


@given(st.data())
def test_focused_ops_aim_at_mm1_only_after_fork(data: st.DataObject) -> None:
    op = data.draw(focused_ops(4, (0, 1), forked=False, threads=2))
    assert op.mm == 0 and (op.kind is not OpKind.KILL or op.value < 2)


# Finding an example is what matters here, not its shrunk form (which takes seconds).
FIND = settings(phases=[Phase.generate], max_examples=500, database=None)


@pytest.mark.parametrize("kind", list(OpKind), ids=lambda k: k.name.lower())
def test_interesting_cases_reach_every_op_kind(kind: OpKind) -> None:
    find(
        interesting_cases(),
        lambda c: any(op.kind is kind for t in c.threads for op in t),
        settings=FIND,
    )


@pytest.mark.parametrize("strategy", list(Strategy), ids=lambda s: s.name.lower())
def test_interesting_cases_reach_every_strategy(strategy: Strategy) -> None:
    find(interesting_cases(), lambda c: c.schedule.strategy is strategy, settings=FIND)


def test_bad_arguments() -> None:
    for make in (lambda: setups(0), lambda: focused_ops(17), lambda: interesting_cases(7)):
        with pytest.raises(ValueError, match=r"must be|is 1"):
            make()
