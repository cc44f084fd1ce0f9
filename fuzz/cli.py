"""The ``vmafuzz`` command line (also ``python -m fuzz``).

Subcommands:

* ``vmafuzz show FILE|HEX`` prints a case in the text form. FILE is a case in the text form or
  in canonical bytes; HEX is canonical bytes as a hex string (spaces allowed). ``--lenient``
  decodes any bytes the way the fuzzers do, for raw crash inputs.
* ``vmafuzz fuzz`` runs a time-boxed campaign. For now it walks the bundled example cases and
  prints, for each, its text form and the scheduler's decision trace; ``--time`` and
  ``--workers`` are accepted so that the interface is already the final one.

Exit status: 0 on success, 2 on a usage error or unreadable input (one line on stderr, never a
traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from importlib import resources

from fuzz.case import (
    MAGIC,
    Case,
    CaseFormatError,
    decode,
    decode_strict,
    format_case,
    format_op,
    parse_case,
)
from reference.sched import Runtime, Task, TaskGen, make_policy

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


def cmd_show(args: argparse.Namespace) -> int:
    try:
        case = load_case(args.case, args.lenient)
    except CaseFormatError as e:
        label = args.case if os.path.exists(args.case) else _short(args.case)
        raise InputError(f"{label}: {e}") from None
    sys.stdout.write(format_case(case))
    return 0


# ---------------------------------------------------------------------------------------------
# fuzz


def bundled_examples() -> Iterator[tuple[str, Case]]:
    """The example cases that ship in ``corpora/examples``, by file name."""
    folder = resources.files("corpora").joinpath("examples")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".case"):
            yield entry.name, parse_case(entry.read_text(encoding="utf-8"))


def _toy_thread(rt: Runtime, task: Task, case: Case, thread: int) -> TaskGen:
    """A stand-in for a user thread: one step per op, each op an operation of its own."""
    for op in case.threads[thread]:
        rt.op_begin(task)
        yield format_op(op)
        rt.op_end(task)


def schedule_trace(case: Case) -> Runtime:
    """Run one toy task per thread under the case's schedule; the runtime keeps the trace."""
    rt = Runtime(trace=True)
    for t in range(len(case.threads)):
        task = rt.spawn(f"thread {t}")
        rt.start(task, _toy_thread(rt, task, case, t))
    s = case.schedule
    rt.policy = make_policy(s.strategy, s.seed, s.depth, s.steps, s.choices, len(rt.tasks))
    rt.run()
    return rt


def format_trace(rt: Runtime) -> str:
    """The decisions of the concurrent part: tasks chosen, as choice bytes, and step by step."""
    lines = [
        f"resolved schedule: {' '.join(map(str, rt.chosen)) or '(no real decisions)'}",
        f"as explicit choices: {' '.join(map(str, rt.choice_log)) or '(none)'}",
        "  step  task  runs until",
    ]
    for step, tid, site in rt.trace or []:
        lines.append(f"  {step:4}  t{tid:<3}  {site or '(thread exits)'}")
    return "\n".join(lines) + "\n"


def cmd_fuzz(args: argparse.Namespace) -> int:
    out = sys.stdout
    out.write(
        f"vmafuzz fuzz: the engines are not wired in yet; showing the scheduler's decisions for "
        f"the bundled examples (--time {args.time:g}, --workers {args.workers}).\n"
    )
    for name, case in bundled_examples():
        out.write(f"\n== {name}\n{format_case(case)}")
        out.write(format_trace(schedule_trace(case)))
    return 0


# ---------------------------------------------------------------------------------------------
# argument parsing


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Differential fuzzing of Linux page-fault locking.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    show = sub.add_parser("show", help="print a case in the text form")
    show.add_argument("case", metavar="FILE|HEX", help="a case file (text or bytes) or hex bytes")
    show.add_argument(
        "--lenient", action="store_true", help="decode any bytes as the fuzzers do (raw inputs)"
    )
    show.set_defaults(func=cmd_show)
    fuzz = sub.add_parser("fuzz", help="run a time-boxed campaign on the bundled corpus")
    fuzz.add_argument(
        "--time", type=_positive_float, default=60.0, metavar="SECONDS", help="time box (60)"
    )
    fuzz.add_argument(
        "--workers",
        type=_positive_int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes (one per core)",
    )
    fuzz.set_defaults(func=cmd_fuzz)
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
