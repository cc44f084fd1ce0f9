"""The atheris target, run as libFuzzer runs it: a subprocess with libFuzzer flags.

Short runs only (a few hundred executions): on the unmutated engines the target must exit 0;
with a zoo mutant it must store the finding and leave libFuzzer's crash file; ``-jobs``,
``-fork`` and ``-minimize_crash`` (which re-run the script itself) must work. Every run has its
own directory, so the tests are safe under ``pytest -n auto``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from fuzz.case import decode, encode, parse_case
from fuzz.cli import bundled_examples
from fuzz.findings import list_findings
from fuzz.harness import FINDING, check_case
from tests.test_optimized_api import ASYNC_SWAPIN

pytest.importorskip("atheris")

TARGETS = pathlib.Path(__file__).resolve().parent.parent / "fuzz" / "targets"
TARGET = TARGETS / "check_case_fuzzer.py"
MUTANT = "Z18_double_vma_end_read"
TIMEOUT = 300

# An asynchronous swap-in under the VMA lock: the fault returns VM_FAULT_RETRY, and Z18 then
# releases the VMA lock a second time.
Z18_CASE = ASYNC_SWAPIN


def run_target(
    tmp: pathlib.Path, *args: str, mutant: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the target in `tmp` (its findings go to ``tmp/findings``, artefacts to `tmp`)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VMAFUZZ_")}
    full_env |= {"VMAFUZZ_FINDINGS": str(tmp / "findings"), **(env or {})}
    if mutant:
        full_env["VMAFUZZ_MUTANT"] = mutant
    return subprocess.run(
        [str(TARGET), f"-artifact_prefix={tmp}/", *args],
        cwd=tmp,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def seed_dir(tmp: pathlib.Path, *extra: bytes) -> pathlib.Path:
    corpus = tmp / "corpus"
    corpus.mkdir()
    for name, case in bundled_examples():
        (corpus / name).write_bytes(encode(case))
    for i, data in enumerate(extra):
        (corpus / f"extra-{i}").write_bytes(data)
    return corpus


def crash_files(tmp: pathlib.Path) -> list[pathlib.Path]:
    return sorted(tmp.glob("crash-*"))


def test_the_target_passes_on_the_unmutated_engines(tmp_path: pathlib.Path) -> None:
    corpus = seed_dir(tmp_path)
    res = run_target(tmp_path, "-runs=200", "-seed=1", "-print_final_stats=1", str(corpus))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "DONE" in res.stderr
    assert crash_files(tmp_path) == []
    assert list_findings(tmp_path / "findings") == []


def test_a_mutant_is_found_stored_and_written_as_a_crash(tmp_path: pathlib.Path) -> None:
    corpus = seed_dir(tmp_path, encode(parse_case(Z18_CASE)))
    res = run_target(tmp_path, "-runs=200", "-seed=1", str(corpus), mutant=MUTANT)
    assert res.returncode != 0
    # atheris prints the uncaught exception on stdout, libFuzzer its report on stderr.
    assert "FindingError" in res.stdout and "vma_end_read" in res.stdout
    assert "Test unit written to" in res.stderr
    [crash] = crash_files(tmp_path)
    # The crash file replays: its bytes are the case that broke the contract.
    verdict = check_case(decode(crash.read_bytes()), mutant=MUTANT)
    assert verdict.kind == FINDING
    [stored] = list_findings(tmp_path / "findings")
    assert (stored / "token").is_file()
    assert "vma_end_read" in (stored / "finding.json").read_text()


def test_the_engines_features_are_libfuzzer_coverage(tmp_path: pathlib.Path) -> None:
    # With no Python instrumented, all coverage libFuzzer reports is the verdict features.
    corpus = seed_dir(tmp_path)
    covs = {}
    for feed in ("1", "0"):
        env = {"VMAFUZZ_INSTRUMENT": "none", "VMAFUZZ_FEATURES": feed}
        res = run_target(tmp_path, "-runs=50", "-seed=1", str(corpus), env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        covs[feed] = max(_cov_values(res.stderr), default=0)
    # Without them libFuzzer sees no coverage at all ("no interesting inputs were found").
    assert covs["1"] > 100
    assert covs["0"] == 0


def _cov_values(log: str) -> list[int]:
    return [int(line.split("cov: ")[1].split()[0]) for line in log.splitlines() if " cov: " in line]


def test_jobs_rerun_the_script(tmp_path: pathlib.Path) -> None:
    corpus = seed_dir(tmp_path)
    res = run_target(tmp_path, "-jobs=2", "-workers=2", "-runs=20", str(corpus))
    assert res.returncode == 0, res.stderr[-3000:]
    for job in (0, 1):
        log = (tmp_path / f"fuzz-{job}.log").read_text()
        assert "DONE" in log, log[-3000:]


def test_fork_mode_reruns_the_script(tmp_path: pathlib.Path) -> None:
    # Fork mode first runs the seeds through a child (argv[0] again): the crashing seed is
    # written as a crash file and stored as a finding by that child. Fuzzing then goes on and
    # may find the mutant again, which ends the run with libFuzzer's error exit code.
    corpus = seed_dir(tmp_path, encode(parse_case(Z18_CASE)))
    res = run_target(tmp_path, "-fork=1", "-max_total_time=5", str(corpus), mutant=MUTANT)
    assert res.returncode in (0, 77), res.stderr[-3000:]
    assert "-fork=1: fuzzing in separate process" in res.stderr
    assert crash_files(tmp_path), res.stderr[-3000:]
    # The seed's finding, and any other signature a fuzzing job reached with the mutant.
    stored = [(f / "finding.json").read_text() for f in list_findings(tmp_path / "findings")]
    assert any("vma_end_read" in meta for meta in stored)


def test_minimize_crash_shrinks_a_crash(tmp_path: pathlib.Path) -> None:
    # A crash with junk after the case (decode ignores trailing bytes): there is room to shrink.
    crash = tmp_path / "crash-input"
    crash.write_bytes(encode(parse_case(Z18_CASE)) + bytes(range(64)))
    out = tmp_path / "minimized"
    res = run_target(
        tmp_path,
        "-minimize_crash=1",
        "-runs=40",
        "-seed=1",
        f"-exact_artifact_path={out}",
        str(crash),
        mutant=MUTANT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert out.is_file(), res.stderr[-3000:]
    assert len(out.read_bytes()) < len(crash.read_bytes())
    assert check_case(decode(out.read_bytes()), mutant=MUTANT).kind == FINDING
