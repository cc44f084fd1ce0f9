"""``vmafuzz corpus``: output, exit status and one-line errors of every action."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import pytest

from fuzz import corpus
from fuzz.cli import main
from tests.test_corpus import SCENARIO, small_cases

ACTIONS = ("pack", "unpack", "merge", "ls", "export-seeds", "harvest", "seek")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["corpus", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(["corpus", *argv])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


@pytest.fixture
def bundle(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "b.lz4"
    corpus.write_bundle(path, small_cases())
    return path


@pytest.mark.parametrize("action", ACTIONS)
def test_help(capsys: pytest.CaptureFixture[str], action: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["corpus", action, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: vmafuzz corpus {action} ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("pack",), "the following arguments are required: DIR, OUT.lz4"),
        (("ls", "b.lz4", "--bogus"), "unrecognized arguments: --bogus"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("harvest", "d", "--seeds", "x"), "argument --seeds: not an integer: 'x'"),
        (("harvest", "d", "--rare", "2"), "argument --rare: must be in (0, 1], not 2"),
        (("seek", "f", "X", "--engine", "both2"), "argument --engine: invalid choice"),
    ],
)
def test_bad_flags_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    err = usage_error(capsys, *argv)
    assert err.startswith("usage: vmafuzz")
    assert message in err.splitlines()[-1]


def test_pack_and_ls(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, bundle: pathlib.Path
) -> None:
    d = tmp_path / "cases"
    d.mkdir()
    (d / "s.case").write_text(SCENARIO)
    out = tmp_path / "s.lz4"
    assert run(capsys, "pack", str(d), str(out)) == (0, f"{out}: 2 cases from 1 files in {d}\n", "")
    status, text, _ = run(capsys, "ls", str(bundle))
    assert status == 0
    lines = text.splitlines()
    assert lines == corpus.ls_lines(bundle)
    assert [line.split()[0] for line in lines] == [e.name for e in corpus.read_entries(bundle)]


def test_unpack_merge_export(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, bundle: pathlib.Path
) -> None:
    d, merged, seeds = tmp_path / "u", tmp_path / "m.lz4", tmp_path / "x_seed_corpus.zip"
    assert run(capsys, "unpack", str(bundle), str(d), "--binary") == (
        0,
        f"{d}: 3 files written\n",
        "",
    )
    assert run(capsys, "merge", str(merged), str(bundle), str(bundle))[:2] == (
        0,
        f"{merged}: 3 cases\n",
    )
    assert merged.read_bytes() == bundle.read_bytes()
    assert run(capsys, "export-seeds", str(bundle), str(seeds))[:2] == (0, f"{seeds}: 3 seeds\n")
    with zipfile.ZipFile(seeds) as zf:
        assert sorted(zf.namelist()) == sorted(p.name for p in d.iterdir())


@pytest.mark.parametrize("action", ["ls", "unpack", "export-seeds", "merge"])
def test_bad_bundle_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, action: str
) -> None:
    bad = tmp_path / "bad.lz4"
    bad.write_bytes(b"\x04\x22\x4d\x18junk")
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    argv = {
        "ls": [str(bad)],
        "unpack": [str(bad), str(tmp_path / "dir")],
        "export-seeds": [str(bad), str(target)],
        "merge": [str(target), str(bad)],
    }[action]
    status, out, err = run(capsys, action, *argv)
    assert (status, out) == (2, "")
    assert err.startswith(f"vmafuzz corpus: {bad}: corrupt lz4 frame")
    assert err.count("\n") == 1
    assert target.read_bytes() == b"precious"
    assert not (tmp_path / "dir").exists()


def test_pack_bad_file_exit_2_keeps_output(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, bundle: pathlib.Path
) -> None:
    d = tmp_path / "cases"
    d.mkdir()
    (d / "ok.case").write_text(SCENARIO)
    (d / "zz.case").write_text("pages 99\n")
    before = bundle.read_bytes()
    status, out, err = run(capsys, "pack", str(d), str(bundle))
    assert (status, out) == (2, "")
    assert err == f"vmafuzz corpus: {d / 'zz.case'}: pages must be 1..16, not 99\n"
    assert bundle.read_bytes() == before


def test_seek_prints_schedule_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "s.case"
    path.write_text(SCENARIO)
    status, out, _ = run(capsys, "seek", str(path), "overlap:read+write", "--max", "2")
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("schedule ") for line in lines)
    base = [line for line in SCENARIO.splitlines() if not line.startswith("schedule")]
    (case,) = corpus.parse_scenario("\n".join([*base, lines[0]])).cases
    assert case.schedule.strategy != 0


def test_seek_that_finds_nothing_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "s.case"
    path.write_text(SCENARIO)
    status, out, err = run(capsys, "seek", str(path), "NO_SUCH_LANDMARK", "--tries", "2")
    assert status == 2 and out == ""
    assert "no schedule in 2 tries reaches NO_SUCH_LANDMARK" in err and err.count("\n") == 1


def test_harvest_writes_case_files(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    d = tmp_path / "h"
    status, out, _ = run(capsys, "harvest", str(d), "--seeds", "40", "--benign", "1")
    assert status == 0
    files = sorted(d.iterdir())
    assert files and len(out.splitlines()) == len(files)
    for f in files:
        text = f.read_text()
        assert text.startswith("# Found by fuzzing: fuzz.gen.random_case(")
        assert len(corpus.parse_scenario(text).cases) == 1


def test_python_m_fuzz_corpus_exits_2_without_traceback(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.lz4"
    bad.write_text("not a bundle")
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz", "corpus", "ls", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"vmafuzz corpus: {bad}: not a corpus bundle (not an lz4 frame)\n"
