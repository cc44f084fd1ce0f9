"""Replay tokens, the findings directory, minimisation, reports and the repro/minimize CLI."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import pathlib
import subprocess
import sys
from dataclasses import replace

import lz4.frame
import pytest

from fuzz.case import Case, Schedule, encode, parse_case
from fuzz.findings import hit_count, list_findings, save_finding
from fuzz.harness import FINDING, Verdict, check_case
from fuzz.minimize import minimize
from fuzz.token import PREFIX, Token, TokenError, decode_token, encode_token
from fuzz.triage import load_token, store, store_new, triage

Z18 = "Z18_double_vma_end_read"

# A uffd fault under the VMA lock returns RETRY having dropped the lock; the Z18 arch code
# drops it again. Found by the fuzzer (fuzz.gen seed 3) and minimised.
Z18_CASE = parse_case(
    """
pages 3
monitor on
setup:
  mmap mm0 0+3 rw
  write mm0 1 0x102
thread 0:
  write mm0 1 0x105
thread 1:
  uffd_register mm0 1+1
  madvise_dontneed mm0 1+3
schedule explicit 1
"""
)


@pytest.fixture(scope="module")
def z18() -> tuple[Case, Verdict]:
    for choices in ([1], [0], [1, 0], [2], []):
        case = replace(Z18_CASE, schedule=Schedule.explicit(choices))
        verdict = check_case(case, mutant=Z18)
        if verdict.kind == FINDING:
            return case, verdict
    pytest.fail("the Z18 case did not produce a finding")


def token_for(case: Case) -> Token:
    return Token(case, "optimized", "contract/x/optimized/f/read", "build 1", Z18, "pct seed=0x1")


def test_token_round_trip() -> None:
    tok = token_for(Z18_CASE)
    text = encode_token(tok)
    assert text.startswith(PREFIX) and "\n" not in text
    assert decode_token(text) == tok
    assert decode_token(f"  {text}\n") == tok


def _hdr(header: bytes) -> bytes:
    return b"VFT\x01" + len(header).to_bytes(2, "little") + header


def _raw(payload: bytes) -> str:
    packed = lz4.frame.compress(payload, content_checksum=True)
    return PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello", "not a vmafuzz replay token"),
        (PREFIX + "!!!", "not valid base64"),
        (PREFIX + "AAAA", "corrupt"),
        (_raw(b"XYZ\x01\x00\x00"), "bad magic"),
        (_raw(b"VFT\x09\x00\x00"), "unknown replay token version 9"),
        (_raw(b"VFT\x01\x02\x00{}"), "format version None"),
        (_raw(_hdr(b'{"format":1,"profile":"9.9"}')), "unknown kernel profile"),
        (_raw(_hdr(b'{"format":1,"profile":"6.6"}') + b"\xa5"), "bad case"),
        (_raw(_hdr(b"[" * 5000 + b"]" * 5000)), "bad header"),
        (_raw(_hdr(b'{"format":1,"profile":"6.6","mutant":5}') + encode(Z18_CASE)), "mutant"),
    ],
)
def test_bad_tokens_give_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(TokenError, match=message) as err:
        decode_token(text)
    assert "\n" not in str(err.value)


def test_a_flipped_bit_is_caught() -> None:
    text = encode_token(token_for(Z18_CASE))
    body = bytearray(base64.urlsafe_b64decode(text[len(PREFIX) :] + "=" * (-len(text) % 4)))
    body[len(body) // 2] ^= 0x10
    with pytest.raises(TokenError):
        decode_token(PREFIX + base64.urlsafe_b64encode(bytes(body)).decode())


def _save(root: str, n: int) -> bool:
    meta = {"signature": "s/1", "oracle": "contract", "rule": "r"}
    return save_finding(root, meta, f"{PREFIX}tok", f"case {n}\n", "report\n").new


def test_findings_are_deduplicated_across_processes(tmp_path: pathlib.Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        news = pool.starmap(_save, [(str(tmp_path), i % 3) for i in range(12)])
    assert news.count(True) == 1
    (path,) = list_findings(tmp_path)
    assert hit_count(path) == 3  # three distinct cases hit the same signature
    assert (path / "token").read_text() == f"{PREFIX}tok\n"
    assert json.loads((path / "finding.json").read_text())["signature"] == "s/1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_killed_writer_leaves_no_finding(tmp_path: pathlib.Path) -> None:
    # A process killed half-way leaves its private temporary directory, never a finding.
    stale = tmp_path / ".tmp-12345"
    stale.mkdir()
    (stale / "finding.json").write_text("{")
    assert list_findings(tmp_path) == []


def test_store_and_repro_from_a_fresh_process(
    tmp_path: pathlib.Path, z18: tuple[Case, Verdict]
) -> None:
    case, verdict = z18
    saved = store(case, verdict, Z18, tmp_path)
    assert saved.new and store(case, verdict, Z18, tmp_path).path == saved.path
    token = load_token(str(saved.path))
    assert token.mutant == Z18 and token.engine == "optimized"
    assert token.case.schedule.strategy == case.schedule.strategy
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-m", "fuzz", "repro", str(saved.path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    assert verdict.finding is not None and verdict.finding.signature in out.stdout
    # The same report, but for the token's build identity (a rebuilt extension changes it).
    stored = (saved.path / "report.txt").read_text().splitlines()
    assert out.stdout.splitlines()[:-1] == stored[:-1]


def test_repro_exits_0_once_fixed(
    capsys: pytest.CaptureFixture[str], z18: tuple[Case, Verdict]
) -> None:
    from fuzz.cli import main

    case, verdict = z18
    token = triage(case, verdict, Z18).token
    assert main(["repro", token]) == 1
    capsys.readouterr()
    # The unmutated engine is the fix: the same case passes.
    assert main(["repro", token, "--mutant", "none"]) == 2  # unknown mutant: a usage error
    fixed = encode_token(replace(decode_token(token), mutant=None))
    assert main(["repro", fixed]) == 0
    assert "passes now" in capsys.readouterr().out


def test_minimize_keeps_the_signature(z18: tuple[Case, Verdict]) -> None:
    from fuzz.gen import random_case

    big = random_case(3)
    verdict = check_case(big, mutant=Z18)
    assert verdict.finding is not None
    result = minimize(big, verdict, Z18)
    assert result.verdict.finding is not None
    assert any(f.signature == verdict.finding.signature for f in result.verdict.findings)
    ops, threads, _switches = result.after
    assert ops <= 6 and threads <= 2
    assert result.after < result.before
    assert minimize(big, verdict, Z18).case == result.case  # deterministic


def test_report_fits_on_one_screen(z18: tuple[Case, Verdict]) -> None:
    case, verdict = z18
    t = triage(case, verdict, Z18)
    lines = t.report.splitlines()
    assert lines[0].startswith("vmafuzz: [contract] lock.release-unheld in vma_end_read")
    assert lines[-1] == f"replay: vmafuzz repro {t.token}"
    assert len(lines) <= 60
    assert max(len(line) for line in lines[:-1]) <= 140
    assert any(line.startswith("▶") for line in lines), "the first violation is marked"
    assert any("VL#" in line for line in lines), "per-VMA lock holdings are shown"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["repro", "/no/such/finding"], "no such file"),
        (["repro", PREFIX + "AAAA"], "corrupt"),
        (["minimize", "vft1:!!"], "base64"),
        (["show", PREFIX + "AAAA"], "corrupt"),
    ],
)
def test_bad_input_one_line_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from fuzz.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_show_renders_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    from fuzz.cli import main

    assert main(["show", encode_token(token_for(Z18_CASE))]) == 0
    out = capsys.readouterr().out
    assert "# replay token: contract/x/optimized/f/read" in out
    assert "uffd_register mm0 1+1" in out


def test_repro_reads_a_raw_crash_file_with_lenient(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    from fuzz.cli import main

    raw = tmp_path / "crash-0123"
    raw.write_bytes(encode(Z18_CASE) + b"trailing junk a fuzzer left")
    assert main(["repro", str(raw)]) == 2
    assert "add --lenient" in capsys.readouterr().err
    assert main(["repro", str(raw), "--lenient", "--mutant", Z18]) == 1  # still the Z18 bug


def test_every_signature_of_a_verdict_is_stored(
    tmp_path: pathlib.Path, z18: tuple[Case, Verdict]
) -> None:
    case, verdict = z18
    first = verdict.findings[0]
    other = replace(first, rule="second-rule")  # a second rule broken by the same case
    both = replace(verdict, findings=(first, other))
    saved = store_new(case, both, Z18, tmp_path)
    assert set(saved) == {first.signature, other.signature}
    for sig, where in saved.items():
        assert load_token(str(where.path)).signature == sig
    assert store_new(case, both, Z18, tmp_path, known=saved) == {}


def test_a_pasted_token_with_blanks_or_without_its_prefix_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fuzz.cli import main

    text = encode_token(token_for(Z18_CASE))
    assert load_token(f"  {text}\n") == token_for(Z18_CASE)
    assert main(["show", text[len(PREFIX) :] * 20]) == 2  # too long for a file name
    assert capsys.readouterr().err.count("\n") == 1
