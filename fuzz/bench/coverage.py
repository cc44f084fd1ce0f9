"""Does the engines' interleaving coverage help libFuzzer? ``python -m fuzz.bench.coverage``.

Runs the atheris target (`fuzz/targets/check_case_fuzzer.py`) as a subprocess, each time with
and without the verdict features handed to libFuzzer (``VMAFUZZ_FEATURES=1`` / ``0``; the
instrumented Python is the same in both), and prints:

1. **Coverage**: for ``--runs`` executions from the bundled example cases, per libFuzzer seed,
   the distinct interleaving features of each engine reached by the corpus libFuzzer kept
   (replayed afterwards through `fuzz.harness.check_case`), the distinct feature *sets* (one
   per kept input: how many different interleavings it holds), and libFuzzer's own ``cov``.
2. **Time to a zoo mutant**: for each ``--mutant``, from an empty corpus, the CPU seconds and
   executions until the first crash (a mutant not found within ``--budget`` seconds counts as
   more than the budget), per seed, with the median.

A benchmark script, not a test: it asserts nothing. Figures depend on the machine; CPU time
(user + system of the fuzzer process) is reported rather than wall time, so a loaded machine
skews them less.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from fuzz import argtypes
from fuzz.case import decode, encode
from fuzz.cli import bundled_examples
from fuzz.harness import UnknownMutantError, check_case, check_mutant

TARGET = pathlib.Path(__file__).resolve().parent.parent / "targets" / "check_case_fuzzer.py"
_COV = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    seconds: float  # CPU time of the fuzzer process
    execs: int  # the last execution count libFuzzer printed
    cov: int  # libFuzzer's last ``cov:``
    crashed: bool
    log: str


def fuzz(
    corpus: pathlib.Path, features: bool, seed: int, args: list[str], env: dict[str, str]
) -> Run:
    """Run the target once in its own process; CPU time from the children's rusage."""
    full_env = {
        **os.environ,
        **env,
        "VMAFUZZ_FEATURES": "1" if features else "0",
        "VMAFUZZ_FINDINGS": str(corpus.parent / "findings"),
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [str(TARGET), f"-seed={seed}", f"-artifact_prefix={corpus.parent}/", *args, str(corpus)],
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    marks = _COV.findall(proc.stderr)
    execs, cov = (int(marks[-1][0]), int(marks[-1][1])) if marks else (0, 0)
    crashed = "Test unit written to" in proc.stderr and "crash-" in proc.stderr
    return Run(cpu, execs, cov, crashed, proc.stderr)


def corpus_features(corpus: pathlib.Path) -> tuple[set[int], set[int], int]:
    """(reference features, optimized features, distinct optimized feature sets) of a corpus."""
    ref: set[int] = set()
    opt: set[int] = set()
    sets: set[tuple[int, ...]] = set()
    for path in sorted(corpus.iterdir()):
        v = check_case(decode(path.read_bytes()))
        if v.reference is not None:
            ref.update(v.reference.features)
        if v.optimized is not None:
            opt.update(v.optimized.features)
            sets.add(v.optimized.features)
    return ref, opt, len(sets)


def seed_corpus(folder: pathlib.Path) -> None:
    folder.mkdir(parents=True)
    for name, case in bundled_examples():
        (folder / name).write_bytes(encode(case))


def measure_coverage(runs: int, seeds: list[int], env: dict[str, str]) -> None:
    print(f"coverage after {runs} executions from the bundled examples (per libFuzzer seed):")
    print("  feedback  seed  ref-features  opt-features  opt-feature-sets  libFuzzer-cov   cpu-s")
    totals: dict[bool, list[int]] = {True: [], False: []}
    for seed in seeds:
        for features in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                corpus = pathlib.Path(tmp) / "corpus"
                seed_corpus(corpus)
                r = fuzz(corpus, features, seed, [f"-runs={runs}"], env)
                ref, opt, sets = corpus_features(corpus)
            totals[features].append(len(opt))
            label = "on " if features else "off"
            print(
                f"  {label}       {seed:4}  {len(ref):12}  {len(opt):12}  {sets:16}  "
                f"{r.cov:13}  {r.seconds:6.1f}"
            )
    on, off = statistics.median(totals[True]), statistics.median(totals[False])
    print(
        f"  median optimized-engine interleaving features: {on:g} with the feedback, "
        f"{off:g} without ({on / max(off, 1):.2f}x)"
    )


def measure_mutant(mutant: str, seeds: list[int], budget: float, env: dict[str, str]) -> None:
    print(f"time to find {mutant} from an empty corpus (CPU s / executions; > budget: not found):")
    times: dict[bool, list[float]] = {True: [], False: []}
    for features in (True, False):
        cells = []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                corpus = pathlib.Path(tmp) / "corpus"
                corpus.mkdir()
                args = [f"-max_total_time={budget:g}", "-runs=100000000"]
                r = fuzz(corpus, features, seed, args, {**env, "VMAFUZZ_MUTANT": mutant})
            t = r.seconds if r.crashed else float("inf")
            times[features].append(t)
            cells.append(f"{r.seconds:.1f}/{r.execs}" if r.crashed else f">{budget:g}")
        label = "with feedback   " if features else "without feedback"
        med = statistics.median(times[features])
        shown = f"{med:.1f}" if med != float("inf") else f">{budget:g}"
        print(f"  {label}  median {shown:>6} s   " + "  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=argtypes.positive_int, default=2000, help="executions per coverage run"
    )
    parser.add_argument(
        "--seeds", type=argtypes.positive_int, default=3, help="libFuzzer seeds per setting"
    )
    parser.add_argument("--mutant", action="append", default=[], help="zoo mutant (repeatable)")
    parser.add_argument(
        "--budget", type=argtypes.positive_float, default=60.0, help="seconds per mutant run"
    )
    parser.add_argument(
        "--instrument",
        default="oracles",
        choices=("none", "oracles", "all"),
        help="VMAFUZZ_INSTRUMENT for the target (oracles)",
    )
    parser.add_argument("--skip-coverage", action="store_true")
    args = parser.parse_args(argv)
    for mutant in args.mutant:
        try:
            check_mutant(mutant)
        except UnknownMutantError as e:
            parser.error(str(e))
    env = {"VMAFUZZ_INSTRUMENT": args.instrument}
    seeds = list(range(1, args.seeds + 1))
    start = time.monotonic()
    print(f"target {TARGET}, instrumented Python: {args.instrument}")
    if not args.skip_coverage:
        measure_coverage(args.runs, seeds, env)
    for mutant in args.mutant:
        measure_mutant(mutant, seeds, args.budget, env)
    print(f"({time.monotonic() - start:.0f} s in all)")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
