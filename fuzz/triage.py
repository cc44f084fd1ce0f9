"""From a verdict to what a developer keeps: the replay token, the report, the stored finding.

Every front end that finds something calls `store` (or `store_new`, for each new signature); `repro` and `minimize` read back with
`load_token`. The report is rendered from a second, traced run of the resolved case (the fast
path runs without traces), so what it shows is exactly what the token replays.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Container
from dataclasses import dataclass

from fuzz import report
from fuzz.case import Case, format_case
from fuzz.findings import DEFAULT_DIR, Saved, save_finding
from fuzz.harness import Verdict, build_identity, check_case, resolved_case, schedule_text
from fuzz.token import PREFIX, Token, TokenError, decode_token, encode_token


@dataclass(frozen=True)
class Triaged:
    token: str
    case: Case
    verdict: Verdict
    report: str


def replay_command(token: str) -> str:
    return f"vmafuzz repro {token}"


def make_token(case: Case, verdict: Verdict, mutant: str | None) -> tuple[str, Case]:
    """The token of `verdict`'s first finding, and the case with its schedule resolved."""
    finding = verdict.finding
    if finding is None:
        raise ValueError("no finding to make a token of")
    rec = verdict.record(finding.engine)
    resolved = resolved_case(case, rec) if rec is not None else case
    token = Token(
        case=resolved,
        engine=finding.engine,
        signature=finding.signature,
        build=build_identity(),
        mutant=mutant,
        strategy=schedule_text(case),
    )
    return encode_token(token), resolved


def triage(case: Case, verdict: Verdict, mutant: str | None) -> Triaged:
    """Token and report for a finding; the report comes from a traced replay of the token."""
    token, resolved = make_token(case, verdict, mutant)
    assert verdict.finding is not None  # make_token raised otherwise
    traced = check_case(resolved, mutant=mutant, trace=True).focus(verdict.finding.signature)
    shown = traced if traced.finding else verdict
    return Triaged(token, resolved, shown, report.render(resolved, shown, replay_command(token)))


def store(
    case: Case,
    verdict: Verdict,
    mutant: str | None,
    root: str | os.PathLike[str] = DEFAULT_DIR,
) -> Saved:
    """Save `verdict`'s first finding under `root` (atomic; deduplicated by signature); see
    `store_new` for all of them."""
    t = triage(case, verdict, mutant)
    f = verdict.finding
    assert f is not None
    meta: dict[str, object] = {
        "signature": f.signature,
        "oracle": f.oracle,
        "rule": f.rule,
        "engine": f.engine,
        "function": f.function,
        "op_kinds": list(f.op_kinds),
        "message": f.message,
        "mutant": mutant,
        "build": build_identity(),
    }
    return save_finding(root, meta, t.token, format_case(t.case), t.report)


def store_new(
    case: Case,
    verdict: Verdict,
    mutant: str | None,
    root: str | os.PathLike[str],
    known: Container[str] = (),
) -> dict[str, Saved]:
    """Save every finding of `verdict` whose signature is not in `known`, each with its own
    token and report: one case may break several rules (a report and a token per rule)."""
    saved: dict[str, Saved] = {}
    for f in verdict.findings:
        if f.signature not in known and f.signature not in saved:
            saved[f.signature] = store(case, verdict.focus(f.signature), mutant, root)
    return saved


def load_token(arg: str) -> Token:
    """A token from a finding directory, a file holding one, or the token text itself
    (surrounding whitespace, as a paste brings, is ignored)."""
    arg = arg.strip()
    path = pathlib.Path(arg)
    try:
        exists = bool(arg) and path.exists()
    except OSError:  # e.g. a token without its prefix: too long for a file name
        exists = False
    if not arg.startswith(PREFIX) and exists:
        if path.is_dir():
            path = path / "token"
            if not path.is_file():
                raise TokenError(f"{arg}: not a finding directory (no token file in it)")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TokenError(f"{arg}: cannot read a token from it ({e})") from None
        return decode_token(text)
    if not arg.startswith(PREFIX):
        raise TokenError(f"{arg[:40]}: no such finding or file, and not a replay token")
    return decode_token(arg)
