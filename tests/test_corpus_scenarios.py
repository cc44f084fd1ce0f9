"""The sources of the corpus: every hand-written scenario says what it is about and still
reaches the paths its ``# reaches:`` lines name; every fuzzed case says where it came from.

A scenario reaches a landmark (`fuzz.harvest.landmarks`) in an engine if one of its schedule
variants does. When an engine change moves its yield points, a pct or random variant may stop
reaching its race: find a schedule that does with ``vmafuzz corpus seek`` and add it.
"""

from __future__ import annotations

import pathlib

import pytest

from fuzz import corpus, harvest
from fuzz.harness import check_case

CORPORA = pathlib.Path(corpus.__file__).resolve().parent.parent / "corpora"
SCENARIOS = sorted((CORPORA / "scenarios").glob("*.case"))
FUZZED = sorted((CORPORA / "fuzzed").glob("*.case"))
ENGINES = ("reference", "optimized")


def reached(scenario: corpus.Scenario) -> dict[str, frozenset[str]]:
    out = {e: frozenset[str]() for e in ENGINES}
    for case in scenario.cases:
        v = check_case(case, trace=True)
        for engine in ENGINES:
            rec = v.record(engine)
            assert rec is not None
            out[engine] |= harvest.landmarks(rec)
    return out


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 30
    assert all(p.read_text().count("\nschedule ") >= 1 for p in SCENARIOS)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_header(path: pathlib.Path) -> None:
    text = path.read_text()
    assert text.startswith("# "), "a scenario starts with a comment saying what it exercises"
    assert "\n# Kernel: " in text, "and which kernel path it is about (# Kernel: ...)"
    assert corpus.parse_scenario(text).reaches, "and what it must reach (# reaches: ...)"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_reaches_its_paths(path: pathlib.Path) -> None:
    scenario = corpus.parse_scenario(path.read_text())
    got = reached(scenario)
    for who, wanted in sorted(scenario.reaches.items()):
        for engine in ENGINES if who == "both" else (who,):
            missing = sorted(wanted - got[engine])
            assert not missing, (
                f"{path.name}: no schedule reaches {' '.join(missing)} in the {engine} engine; "
                f"find one with `vmafuzz corpus seek corpora/scenarios/{path.name} "
                f"{' '.join(missing)} --engine {engine}`"
            )


@pytest.mark.parametrize("path", FUZZED, ids=lambda p: p.stem)
def test_fuzzed_case_header(path: pathlib.Path) -> None:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# Found by fuzzing: fuzz.gen.random_case(")
    assert lines[1].startswith("# Kept for: ")
    assert len(corpus.parse_scenario(path.read_text()).cases) == 1
