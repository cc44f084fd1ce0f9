"""The main campaign (`vmafuzz fuzz`): runs, is deterministic, stores and deduplicates."""

from __future__ import annotations

import dataclasses
import io
import pathlib

import pytest

from fuzz import campaign
from fuzz.case import decode_strict, encode
from fuzz.cli import bundled_seeds, main
from fuzz.findings import list_findings
from fuzz.gen import random_case
from fuzz.mutate import crossover, mutate
from reference.sched import SplitMix64


def config(tmp: pathlib.Path, **kw: object) -> campaign.Config:
    base = campaign.Config(
        runs=40, workers=1, seed=7, findings=str(tmp), seeds=tuple(bundled_seeds()), quiet=True
    )
    return campaign.Config(**{**base.__dict__, **kw})  # type: ignore[arg-type]


def test_unmutated_engines_give_no_findings(tmp_path: pathlib.Path) -> None:
    out = io.StringIO()
    stats = campaign.run(config(tmp_path), out)
    assert stats.cases == 40 and stats.findings == 0
    assert len(stats.features) > 20 and stats.corpus > 0
    assert "vmafuzz fuzz: 40 cases" in out.getvalue()
    assert list_findings(tmp_path) == []


def test_one_worker_with_runs_is_deterministic(tmp_path: pathlib.Path) -> None:
    a = campaign.run(config(tmp_path), io.StringIO())
    b = campaign.run(config(tmp_path), io.StringIO())
    assert (a.features, a.benign, a.corpus, a.steps) == (b.features, b.benign, b.corpus, b.steps)


def test_a_mutant_is_found_stored_once_and_the_exit_status_says_so(tmp_path: pathlib.Path) -> None:
    findings = tmp_path / "f"
    argv = ["fuzz", "--runs", "60", "--workers", "1", "--seed", "3", "--quiet"]
    status = main([*argv, "--mutant", "Z18_double_vma_end_read", "--findings", str(findings)])
    assert status == 1
    found = list_findings(findings)
    assert found and all((p / "report.txt").read_text().startswith("vmafuzz: [") for p in found)
    # Running again finds the same signatures: nothing new is written.
    main([*argv, "--mutant", "Z18_double_vma_end_read", "--findings", str(findings)])
    assert list_findings(findings) == found


def test_two_workers_split_the_runs_exactly(tmp_path: pathlib.Path) -> None:
    stats = campaign.run(config(tmp_path, workers=2, runs=21), io.StringIO())
    assert stats.cases == 21 and stats.findings == 0


def test_a_dead_worker_is_an_error_not_a_clean_run(tmp_path: pathlib.Path) -> None:
    blocked = tmp_path / "a-file"  # findings cannot be stored under a file: the worker dies
    blocked.write_text("")
    cfg = config(tmp_path, workers=2, runs=40)
    cfg = dataclasses.replace(cfg, findings=str(blocked), mutant="Z18_double_vma_end_read")
    with pytest.raises(campaign.WorkerError, match=r"worker \d died"):
        campaign.run(cfg, io.StringIO())


def test_cli_checks_the_findings_directory_first_and_runs_is_not_time_boxed(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert main(["fuzz", "--runs", "5", "--workers", "1", "--findings", str(blocked)]) == 2
    err = capsys.readouterr().err
    assert "--findings" in err and err.count("\n") == 1
    findings = str(tmp_path / "f")
    assert main(["fuzz", "--runs", "3", "--workers", "1", "--quiet", "--findings", findings]) == 0
    assert "1 workers, 3 runs, seed 0" in capsys.readouterr().out  # no time box named


def test_mutations_stay_canonical_and_are_deterministic() -> None:
    rng_a, rng_b = SplitMix64(5), SplitMix64(5)
    case = random_case(11)
    other = random_case(12)
    for _ in range(300):
        a, b = mutate(case, rng_a), mutate(case, rng_b)
        assert a == b and decode_strict(encode(a)) == a
        c, d = crossover(a, other, rng_a), crossover(b, other, rng_b)
        assert c == d and decode_strict(encode(c)) == c
        case = a


def test_pct_bound_text() -> None:
    stats = campaign.Stats()
    stats.pct["p"] = 100
    stats.pct_shape = [(5, 200, 2)] * 100
    lines = campaign.pct_bound(stats)
    assert "100 runs over 1 programs" in lines[0]
    assert lines[1].startswith("  depth 1: each run hits a given bug with p >= 2.00e-01")


def test_worker_streams_are_not_shifted_copies() -> None:
    """Seeds 0 and 1, and workers 0 and 1, must not replay one stream one step apart."""

    def stream(seed: int, wid: int) -> list[int]:
        rng = SplitMix64(campaign.worker_seed(seed, wid))
        return [rng.next_u64() for _ in range(8)]

    a, b, c = stream(0, 0), stream(1, 0), stream(0, 1)
    assert not set(a) & set(b) and not set(a) & set(c)
