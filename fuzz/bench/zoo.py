"""The zoo benchmark: ``python -m fuzz.bench.zoo [--budget 60 --seeds 5]``.

Runs `fuzz.zoo` over every mutant and the unmutated control (the same searches as
``vmafuzz zoo``: the coverage-guided campaign and the random-testing baseline, one core, the
given budget per mutant, seed and method), then prints the table in Markdown, preceded by the
command and the machine it ran on, ready for the README's "Bug zoo" section. With the defaults
it takes up to an hour (mutants found early cost little; the control and every miss cost their
whole budget). A benchmark script, not a test: it prints figures and asserts no timing; the
exit status is 1 if a mutant was missed or the control found anything, as for ``vmafuzz zoo``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from fuzz import zoo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz.bench.zoo",
        description="Time to detect every zoo mutant, fuzzer against random testing.",
    )
    zoo.add_arguments(parser)
    args = parser.parse_args(argv)
    command = "python -m fuzz.bench.zoo " + " ".join(argv if argv is not None else sys.argv[1:])
    out = sys.stdout
    progress = sys.stderr
    start = time.monotonic()
    try:
        rows = zoo.run_from_args(args, progress)
    except zoo.ZooError as e:
        parser.error(str(e))
    elapsed = time.monotonic() - start
    out.write(f"`{command.strip()}` ({_machine()}; {elapsed / 60:.0f} min in all)\n\n")
    out.write(zoo.table(rows, args.budget))
    return 0 if zoo.passed(rows, args.budget) else 1


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, one worker"


if __name__ == "__main__":
    sys.exit(main())
