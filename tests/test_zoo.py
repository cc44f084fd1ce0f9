"""The bug zoo: every mutant's minimised regression case (``corpora/zoo``) is found by
`check_case` with the oracle and rule ZOO.md expects and passes unmutated, and ``vmafuzz zoo``
runs end to end. Fast: one check per case, and a 2-second zoo on a mutant found at once."""

from __future__ import annotations

import io
import math
import pathlib

import pytest

import optimized
from fuzz import campaign, zoo
from fuzz.case import parse_case
from fuzz.cli import main
from fuzz.harness import FINDING, check_case

CASES = sorted(zoo.ZOO_DIR.glob("*.case"))

# What catches each mutant on its minimised case (ZOO.md's last column, as the oracles see it).
EXPECTED = {
    "Z18_double_vma_end_read": "contract/lock.release-unheld",
    "Z19_folio_lock_mmap_unlock": "contract/lock.release-unheld",
    "Z24_migration_wait_pageref": "liveness/migration-eagain",
    "Z09_detach_without_write_lock": "contract/vma.detached-used",
    "Z17_access_error_mmap_unlock": "contract/lock.release-unheld",
    "Zrange_no_recheck": "contract/vma.detached-used",
    "Zdevpriv_under_vma_lock": "contract/devpriv.mmap-lock",
    "Zasync_swap_folio_lock": "contract/lock.order-vma-folio",
}


def test_every_mutant_has_a_regression_case() -> None:
    assert sorted(EXPECTED) == sorted(optimized.MUTANTS)
    assert sorted(p.stem for p in CASES) == sorted(optimized.MUTANTS)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_mutant_is_found_on_its_minimised_case(path: pathlib.Path) -> None:
    text = path.read_text(encoding="utf-8")
    mutant, finds = zoo.parse_header(text)
    assert (mutant, finds) == (path.stem, EXPECTED[path.stem])
    case = parse_case(text)
    verdict = check_case(case, mutant=mutant)
    found = [f"{f.oracle}/{f.rule}" for f in verdict.findings if f.engine == "optimized"]
    assert finds in found, verdict.finding.headline() if verdict.finding else verdict.kind
    assert check_case(case).kind != FINDING


@pytest.mark.parametrize("workers", [1, 2])
def test_the_campaign_stops_at_its_first_finding(tmp_path: pathlib.Path, workers: int) -> None:
    config = campaign.Config(
        time=30,
        workers=workers,
        seed=zoo.trial_seed(0, "fuzz"),
        mutant="Zdevpriv_under_vma_lock",
        findings=str(tmp_path),
        quiet=True,
        stop_on_finding=True,
    )
    stats = campaign.run(config, io.StringIO())
    assert stats.first_finding is not None and stats.first_finding < 30
    assert stats.signatures
    assert all(sig.startswith("contract/devpriv.mmap-lock/") for sig in stats.signatures)
    # One worker stops at once; with two, the other stops at its next case.
    assert stats.findings == 1 if workers == 1 else 1 <= stats.findings <= 2


def _trial(mutant: str | None, seconds: float | None) -> zoo.Trial:
    signature = "contract/lock.release-unheld/optimized/vma_end_read/read" if seconds else ""
    return zoo.Trial(mutant, "fuzz", 0, seconds, 1, signature)


def test_the_zoo_passes_only_with_every_median_in_budget_and_a_clean_control() -> None:
    z18 = "Z18_double_vma_end_read"
    found = zoo.Row(z18, (_trial(z18, 1.0),) * 3, (), None)
    missed = zoo.Row(z18, (_trial(z18, 1.0), _trial(z18, None), _trial(z18, None)), (), None)
    clean = zoo.Row(None, (_trial(None, None),), (_trial(None, None),), None)
    dirty = zoo.Row(None, (_trial(None, None),), (_trial(None, 3.0),), None)
    assert zoo.passed([found, clean], 2.0)
    assert not zoo.passed([missed, clean], 2.0)
    assert not zoo.passed([found, dirty], 2.0)
    assert zoo.median_seconds(missed.fuzz) == math.inf
    assert "| `Z18_double_vma_end_read` | Z18 | 2/3 |" not in zoo.table([missed], 2.0)
    assert "| `Z18_double_vma_end_read` | Z18 | 1/3 |" in zoo.table([missed], 2.0)


def test_zoo_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["zoo", "--budget", "2", "--seeds", "1", "--mutant", "Zdevpriv_under_vma_lock"]
    status = main([*argv, "--no-control"])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    row = next(line for line in out.splitlines() if line.startswith("| `Zdevpriv"))
    assert "| Z-devpriv | 1/1 | contract/devpriv.mmap-lock |" in row
    assert "every mutant found" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "0"], "argument --seeds: must be at least 1, not 0"),
        (["--budget", "soon"], "argument --budget: not a number: 'soon'"),
        (["--mutant", "Z99"], "vmafuzz zoo: unknown mutant 'Z99' (known: Z18_double_vma_end_read"),
    ],
)
def test_zoo_bad_flags_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        status = main(["zoo", *argv])
    except SystemExit as e:  # argparse
        status = int(str(e.code))
    _, err = capsys.readouterr()
    assert status == 2
    assert message in err.splitlines()[-1]
