"""The ``vmafuzz`` command line (also ``python -m fuzz``).

Subcommands:

* ``vmafuzz show FILE|HEX|TOKEN`` prints a case in the text form. FILE is a case in the text
  form or in canonical bytes, a replay token file or a finding directory; HEX is canonical bytes
  as a hex string; TOKEN a replay token. ``--lenient`` decodes any bytes the way the fuzzers do,
  for raw crash inputs.
* ``vmafuzz repro FINDING|TOKEN|CASE`` replays a finding and prints its report. Exit status 1
  while it still fails (any finding), 0 once it passes: it can gate a fix.
* ``vmafuzz minimize FINDING|TOKEN`` shrinks a finding to the fewest operations and context
  switches with the same signature, prints the sizes before and after and the new token, and
  (for a finding directory) writes ``minimized.case`` and ``minimized.token`` into it.
* ``vmafuzz corpus pack|unpack|merge|ls|export-seeds|harvest|seek`` manages corpus bundles
  (`fuzz.corpus`; the format is in ``corpora/README.md``).
* ``vmafuzz fuzz`` runs a time-boxed coverage-guided campaign (`fuzz.campaign`) from the bundled
  corpus on every core, with live progress, findings stored under ``findings/`` and a summary.
* ``vmafuzz zoo`` re-finds the historical bugs planted as mutants (`fuzz.zoo`) and prints the
  time to detect each, against a random-testing baseline; exit status 1 if one was missed or
  the control found anything.

Exit status: 0 on success, 1 when ``repro`` still fails, 2 on a usage error or unreadable input
(one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from importlib import resources

from fuzz import argtypes, corpus, zoo
from fuzz.case import (
    MAGIC,
    Case,
    CaseFormatError,
    decode,
    decode_strict,
    encode,
    format_case,
    parse_case,
)
from fuzz.harness import UnknownMutantError, build_identity, check_case, check_mutant
from fuzz.minimize import minimize
from fuzz.token import PREFIX, Token, TokenError
from fuzz.triage import load_token, triage

PROG = "vmafuzz"
EXIT_USAGE = 2


class InputError(Exception):
    """Input the user gave that cannot be used; the message is one line."""


# ---------------------------------------------------------------------------------------------
# show


def _short(arg: str) -> str:
    """`arg` cut to fit an error line (a hex case can run to kilobytes)."""
    return arg if len(arg) <= 40 else arg[:32] + "..."


def load_case(arg: str, lenient: bool = False) -> Case:
    """A case from a file (text form or bytes) or from a hex string."""
    if not arg:
        raise InputError("an empty argument names no case, finding or token")
    if os.path.exists(arg):
        return _load_case_file(arg, lenient)
    try:
        data = bytes.fromhex(arg)
    except ValueError:
        raise InputError(f"{_short(arg)}: no such file, and not a hex string") from None
    return _decode_bytes(data, lenient)


def _load_case_file(path: str, lenient: bool) -> Case:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    if lenient or data[:1] == bytes([MAGIC]):
        return _decode_bytes(data, lenient)
    try:
        return parse_case(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: neither a case in text form nor canonical bytes") from None


def _decode_bytes(data: bytes, lenient: bool) -> Case:
    return decode(data) if lenient else decode_strict(data)


def _is_token_arg(arg: str) -> bool:
    if arg.strip().startswith(PREFIX):
        return True
    try:
        if os.path.isdir(arg):
            return True
        if os.path.isfile(arg):
            with open(arg, "rb") as f:
                return f.read(len(PREFIX)) == PREFIX.encode()
    except OSError:  # a name too long for a path, say: not a token file
        pass
    return False


def _token(arg: str) -> Token:
    try:
        return load_token(arg)
    except TokenError as e:
        raise InputError(str(e)) from None


def cmd_show(args: argparse.Namespace) -> int:
    if _is_token_arg(args.case):
        token = _token(args.case)
        sys.stdout.write(f"# replay token: {token.signature} ({token.engine} engine")
        sys.stdout.write(f", mutant {token.mutant})\n" if token.mutant else ")\n")
        sys.stdout.write(f"# built by {token.build}; original schedule {token.strategy}\n")
        sys.stdout.write(format_case(token.case))
        return 0
    try:
        case = load_case(args.case, args.lenient)
    except CaseFormatError as e:
        label = args.case if os.path.exists(args.case) else _short(args.case)
        raise InputError(f"{label}: {e}") from None
    sys.stdout.write(format_case(case))
    return 0


# ---------------------------------------------------------------------------------------------
# repro and minimize


def _mutant(name: object) -> str | None:
    if name is not None and not isinstance(name, str):
        raise InputError(f"a mutant name must be a string, not {name!r}")
    try:
        return check_mutant(name)
    except UnknownMutantError as e:
        raise InputError(str(e)) from None


def _case_or_token(
    arg: str, mutant: str | None, lenient: bool = False
) -> tuple[Case, str | None, str]:
    """The case to replay, its mutant and the signature it should show ('' for a case file)."""
    if _is_token_arg(arg):
        token = _token(arg)
        build = build_identity()
        if token.build != build:
            print(
                f"{PROG}: note: the token was made by {token.build}; this is {build}, "
                "so the replay may differ",
                file=sys.stderr,
            )
        return token.case, mutant if mutant is not None else _mutant(token.mutant), token.signature
    try:
        return load_case(arg, lenient), mutant, ""
    except CaseFormatError as e:
        hint = "" if lenient else " (a raw fuzzer input such as crash-*? add --lenient)"
        raise InputError(f"{_short(arg)}: {e}{hint}") from None


def cmd_repro(args: argparse.Namespace) -> int:
    case, mutant, signature = _case_or_token(args.finding, _mutant(args.mutant), args.lenient)
    verdict = check_case(case, mutant=mutant)
    if verdict.finding is None:
        print(f"{PROG} repro: passes now ({verdict.kind}); {signature or 'the case'} is gone")
        return 0
    sys.stdout.write(triage(case, verdict, mutant).report)
    same = any(f.signature == signature for f in verdict.findings)
    if signature and not same:
        print(f"{PROG} repro: still fails, but not as {signature}")
    return 1


def cmd_minimize(args: argparse.Namespace) -> int:
    case, mutant, signature = _case_or_token(args.finding, _mutant(args.mutant), args.lenient)
    verdict = check_case(case, mutant=mutant)
    if verdict.finding is None:
        raise InputError(f"{_short(args.finding)}: it passes now, nothing to minimize")
    if signature and not any(f.signature == signature for f in verdict.findings):
        raise InputError(f"{_short(args.finding)}: it no longer fails as {signature}")
    target = next((f for f in verdict.findings if f.signature == signature), verdict.finding)
    verdict = replace(verdict, findings=(target,))
    try:
        result = minimize(case, verdict, mutant)
    except ValueError as e:
        raise InputError(str(e)) from None
    (ops0, thr0, sw0), (ops1, thr1, sw1) = result.before, result.after
    t = triage(result.case, result.verdict, mutant)
    out = sys.stdout
    out.write(f"minimized {target.signature} in {result.checks} checks\n")
    out.write(f"  operations        {ops0:4} -> {ops1}\n")
    out.write(f"  busy threads      {thr0:4} -> {thr1}\n")
    out.write(f"  context switches  {sw0:4} -> {sw1}\n")
    out.write(format_case(t.case))
    out.write(f"token: {t.token}\n")
    path = pathlib.Path(args.finding)
    if path.is_dir():
        try:
            (path / "minimized.case").write_text(format_case(t.case))
            (path / "minimized.token").write_text(t.token + "\n")
            (path / "minimized.report.txt").write_text(t.report)
        except OSError as e:
            raise InputError(f"cannot write the minimised case into {path}: {e}") from None
        out.write(f"written to {path}/minimized.{{case,token,report.txt}}\n")
    return 0


# ---------------------------------------------------------------------------------------------
# fuzz


def bundled_examples() -> Iterator[tuple[str, Case]]:
    """The example cases that ship in ``corpora/examples``, by file name."""
    folder = resources.files("corpora").joinpath("examples")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".case"):
            yield entry.name, parse_case(entry.read_text(encoding="utf-8"))


def bundled_seeds() -> list[bytes]:
    """The campaign's initial corpus: every bundled case (the examples and every bundle under
    ``corpora/``), as canonical bytes, deduplicated and sorted."""
    from fuzz import corpus

    seeds = {encode(case) for _, case in bundled_examples()}
    for path in corpus.bundle_paths():
        seeds.update(corpus.read_records(path))
    return sorted(seeds)


def cmd_fuzz(args: argparse.Namespace) -> int:
    from fuzz import campaign

    if args.time is None:
        args.time = math.inf if args.runs else campaign.DEFAULT_TIME
    findings = pathlib.Path(args.findings)
    try:
        findings.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--findings {args.findings}: {e.strerror or e}") from None
    config = campaign.Config(
        time=args.time,
        runs=args.runs,
        workers=args.workers,
        seed=args.seed,
        mutant=_mutant(args.mutant),
        findings=args.findings,
        seeds=tuple(bundled_seeds()),
        quiet=args.quiet,
    )
    out = sys.stdout
    out.write(
        f"vmafuzz fuzz: {config.workers} workers, "
        + (f"{config.runs} runs" if config.runs else "")
        + (" within " if config.runs and math.isfinite(config.time) else "")
        + (f"{config.time:g}s" if math.isfinite(config.time) else "")
        + f", seed {config.seed}, {len(config.seeds)} bundled cases"
        + (f", mutant {config.mutant}" if config.mutant else "")
        + f", findings in {config.findings}/\n"
    )
    try:
        total = campaign.run(config, out)
    except campaign.WorkerError as e:
        raise InputError(str(e)) from None
    return 1 if total.signatures else 0


# ---------------------------------------------------------------------------------------------
# corpus


def cmd_corpus(args: argparse.Namespace) -> int:
    try:
        return corpus.main(args)
    except corpus.CorpusError as e:
        raise InputError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# zoo


def cmd_zoo(args: argparse.Namespace) -> int:
    try:
        return zoo.main(args)
    except zoo.ZooError as e:
        raise InputError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# argument parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Differential fuzzing of Linux page-fault locking.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    show = sub.add_parser("show", help="print a case or a replay token in the text form")
    show.add_argument(
        "case",
        metavar="FILE|HEX|TOKEN",
        help="a case file (text or bytes), hex bytes, a replay token or a finding directory",
    )
    show.add_argument(
        "--lenient", action="store_true", help="decode any bytes as the fuzzers do (raw inputs)"
    )
    show.set_defaults(func=cmd_show)
    fuzz = sub.add_parser(
        "fuzz",
        help="run a time-boxed campaign on the bundled corpus (exit 1 if it found anything)",
        description="Coverage-guided differential fuzzing of both engines; libFuzzer-style "
        "spellings of the flags (-max_total_time, -runs, -workers/-jobs, -seed) work too.",
    )
    fuzz.add_argument(
        "--time",
        "-max_total_time",
        type=argtypes.positive_float,
        default=None,
        metavar="SECONDS",
        help="time box (90; none with --runs alone)",
    )
    fuzz.add_argument(
        "--runs",
        "-runs",
        type=argtypes.nonnegative_int,
        default=0,
        metavar="N",
        help="stop after N cases",
    )
    fuzz.add_argument(
        "--workers",
        "-workers",
        "-jobs",
        type=argtypes.positive_int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes (one per core)",
    )
    fuzz.add_argument("--seed", "-seed", type=argtypes.nonnegative_int, default=0, metavar="N")
    fuzz.add_argument("--mutant", metavar="NAME", help="fuzz the optimized engine as this mutant")
    fuzz.add_argument(
        "--findings", default="findings", metavar="DIR", help="where findings go (findings/)"
    )
    fuzz.add_argument("--quiet", action="store_true", help="no live progress line")
    fuzz.set_defaults(func=cmd_fuzz)
    repro = sub.add_parser(
        "repro",
        help="replay a finding and print its report (exit 1 while it still fails)",
    )
    repro.add_argument("finding", metavar="FINDING|TOKEN|CASE")
    repro.add_argument("--mutant", metavar="NAME", help="run the optimized engine as this mutant")
    repro.add_argument(
        "--lenient", action="store_true", help="decode a raw fuzzer input (crash-*) leniently"
    )
    repro.set_defaults(func=cmd_repro)
    mini = sub.add_parser(
        "minimize", help="shrink a finding to the fewest ops and context switches"
    )
    mini.add_argument("finding", metavar="FINDING|TOKEN|CASE")
    mini.add_argument("--mutant", metavar="NAME", help="run the optimized engine as this mutant")
    mini.add_argument(
        "--lenient", action="store_true", help="decode a raw fuzzer input (crash-*) leniently"
    )
    mini.set_defaults(func=cmd_minimize)
    corp = sub.add_parser(
        "corpus", help="pack, unpack, merge, list and export corpus bundles (corpora/README.md)"
    )
    corpus.add_arguments(corp)
    corp.set_defaults(func=cmd_corpus)
    bugs = sub.add_parser(
        "zoo",
        help="re-find the historical bugs planted as mutants; time to detect each",
        description="For each zoo mutant and the unmutated control, run the campaign on one "
        "core until its first finding (several seeds), minimise what it found, and compare "
        "with random testing; exit 1 if a mutant was missed or the control found anything.",
    )
    zoo.add_arguments(bugs)
    bugs.set_defaults(func=cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except InputError as e:
        print(f"{PROG} {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, and keep the exit-time flush quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status
