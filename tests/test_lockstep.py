"""Serial lockstep (DESIGN.md §2.3): under a serial schedule the optimized engine
(``CONFIG_PER_VMA_LOCK=y``) and the reference (``=n``) agree exactly after every operation.

Compared: the run status; every operation's result (the case's and the uffd monitor's, in
order); every snapshot (VMA list, per-page PTE kind, data, writability and normalised folio or
slot, normalised folio refcount/mapcount, swap slot counts, locks held: none between
operations); the final memory image. Neither engine may report a contract violation. Step
numbers are not compared: the optimized engine has more yield points.

Cases: Hypothesis-drawn cases made serial (`fuzz.strategies.cases`, which mostly exercises
the error paths, and `fuzz.gen.random_case`, which maps memory first), every bundled
``corpora/examples/*.case`` and ``corpora/scenarios/*.case`` and every scenario of
``tests/test_reference_scenarios.py`` (read from its source), each with its schedule replaced
by ``serial``.
"""

from __future__ import annotations

import ast
import dataclasses
from importlib.resources import files
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import optimized
import reference
from fuzz.case import Case, CaseFormatError, Schedule, format_case, parse_case
from fuzz.gen import random_case
from fuzz.record import RunRecord, result_name
from fuzz.strategies import cases

SCENARIO_SOURCE = Path(__file__).with_name("test_reference_scenarios.py")


def serial(case: Case) -> Case:
    return dataclasses.replace(case, schedule=Schedule.serial())


def _ops(rec: RunRecord) -> list[tuple[int, str, str, str]]:
    return [(o.index, o.part, str(o.op), result_name(o.result)) for o in rec.ops]


def lockstep_problems(case: Case) -> list[str]:
    """Every way the two engines disagree on the serial `case` (empty: lockstep holds)."""
    ref = reference.run(case)
    opt = optimized.run(case)
    out: list[str] = []
    if ref.status != opt.status:
        out.append(f"status: reference {ref.status}, optimized {opt.status}")
    for name, rec in (("reference", ref), ("optimized", opt)):
        out.extend(
            f"{name} violation {v.rule} in {v.function}: {v.message}" for v in rec.violations
        )
    if _ops(ref) != _ops(opt):
        pairs = zip(_ops(ref), _ops(opt), strict=False)
        first = next(((a, b) for a, b in pairs if a != b), (len(ref.ops), len(opt.ops)))
        out.append(f"operations differ first at {first}")
    if len(ref.snapshots) != len(opt.snapshots):
        out.append(f"snapshots: reference {len(ref.snapshots)}, optimized {len(opt.snapshots)}")
    for a, b in zip(ref.snapshots, opt.snapshots, strict=False):
        if a != b:
            out.append(f"state after op {a.after} differs:\n  reference {a}\n  optimized {b}")
            break
    if ref.image != opt.image:
        out.append("final memory images differ")
    return out


def assert_lockstep(case: Case) -> None:
    problems = lockstep_problems(case)
    assert not problems, "\n".join([format_case(case), *problems])


# ---------------------------------------------------------------------------------------------
# Hand-written cases


def example_cases() -> list[tuple[str, Case]]:
    """The bundled ``corpora/examples`` and, when present, ``corpora/scenarios`` cases."""
    out: list[tuple[str, Case]] = []
    for folder in ("examples", "scenarios"):
        root = files("corpora") / folder
        if not root.is_dir():
            continue
        out.extend(
            (f"{folder}/{p.name}", serial(parse_case(p.read_text())))
            for p in root.iterdir()
            if p.name.endswith(".case")
        )
    return sorted(out)


def scenario_cases() -> list[tuple[str, Case]]:
    """Every case text in the reference scenario tests, keyed by its test function."""
    out: list[tuple[str, Case]] = []
    tree = ast.parse(SCENARIO_SOURCE.read_text())
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        texts = [
            n.value
            for n in ast.walk(fn)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and "schedule" in n.value
        ]
        for i, text in enumerate(texts):
            try:
                case = parse_case(text)
            except CaseFormatError:
                continue
            out.append((f"{fn.name}[{i}]", serial(case)))
    return out


@pytest.mark.parametrize(("name", "case"), example_cases(), ids=lambda x: str(x))
def test_bundled_examples(name: str, case: Case) -> None:
    assert_lockstep(case)


@pytest.mark.parametrize(("name", "case"), scenario_cases(), ids=lambda x: str(x))
def test_reference_scenarios(name: str, case: Case) -> None:
    assert_lockstep(case)


def test_scenarios_were_found() -> None:
    assert len(scenario_cases()) >= 10
    assert len(example_cases()) >= 4


# ---------------------------------------------------------------------------------------------
# Generated cases


@given(cases(max_threads=3, max_ops=6).map(serial))
def test_hypothesis_cases(case: Case) -> None:
    assert_lockstep(case)


@given(st.integers(0, 2**32 - 1))
def test_generated_interesting_cases(seed: int) -> None:
    assert_lockstep(random_case(seed, serial_fraction=1.0))


def test_first_thousand_generated_seeds() -> None:
    for seed in range(1000):
        assert_lockstep(random_case(seed, serial_fraction=1.0))
