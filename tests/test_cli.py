"""The ``vmafuzz`` command line: output, exit status, one-line errors."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from fuzz.case import encode, format_case, parse_case
from fuzz.cli import bundled_examples, main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def example_text() -> str:
    return format_case(next(bundled_examples())[1])


def test_examples_are_bundled_and_valid() -> None:
    names = [name for name, _ in bundled_examples()]
    assert len(names) >= 3
    assert names == sorted(names)


def test_show_text_file(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "x.case"
    path.write_text(example_text())
    assert run(capsys, "show", str(path)) == (0, example_text(), "")


def test_show_binary_file_and_hex(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    data = encode(parse_case(example_text()))
    path = tmp_path / "x.bin"
    path.write_bytes(data)
    assert run(capsys, "show", str(path)) == (0, example_text(), "")
    assert run(capsys, "show", data.hex()) == (0, example_text(), "")


def test_show_lenient_reads_raw_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "show", "--lenient", "00")
    assert status == 0
    assert out.startswith("# vmafuzz case")


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("a501", "vmafuzz show: a501: case is truncated: 2 bytes, header needs 19\n"),
        ("not-hex", "vmafuzz show: not-hex: no such file, and not a hex string\n"),
        ("a501" + "00" * 98, "vmafuzz show: a501" + "00" * 14 + "...: case is not canonical"),
    ],
)
def test_show_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str], arg: str, message: str
) -> None:
    status, out, err = run(capsys, "show", arg)
    assert (status, out) == (2, "")
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_show_bad_text_file(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.case"
    path.write_text("pages 4\nthread 0:\n  frobnicate mm0 1\n")
    status, _, err = run(capsys, "show", str(path))
    assert status == 2
    assert err.startswith(f"vmafuzz show: {path}: line 3: unknown op 'frobnicate'")
    assert err.count("\n") == 1


def test_python_m_fuzz_exits_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz", "show", "zz"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "vmafuzz show: zz: no such file, and not a hex string\n"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["fuzz", "--time", "0"],
        ["fuzz", "-max_total_time", "-3"],
        ["fuzz", "--workers", "x"],
        ["fuzz", "-runs", "-1"],
        ["show"],
        ["repro"],
        ["minimize", "a", "b"],
    ],
)
def test_bad_flags_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: vmafuzz" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["show", "--help"], ["fuzz", "--help"], ["repro", "--help"], ["minimize", "-h"]],
)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: vmafuzz" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "value"), [("10", 10), ("010", 10), ("0x10", 16), ("+3", 3), ("0", 0)]
)
def test_integer_flags_read_decimal_and_prefixed_forms(text: str, value: int) -> None:
    from fuzz import argtypes

    assert argtypes.nonnegative_int(text) == value


@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        ("nonnegative_int", "-1", "must be 0 or more"),
        ("positive_int", "0", "must be at least 1"),
        ("positive_int", "two", "not an integer"),
        ("positive_float", "0", "must be positive"),
        ("fraction", "1.5", "must be in (0, 1]"),
        ("probability", "-0.1", "must be in [0, 1]"),
    ],
)
def test_bad_flag_values_are_argparse_errors(convert: str, text: str, message: str) -> None:
    import argparse

    from fuzz import argtypes

    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        getattr(argtypes, convert)(text)
