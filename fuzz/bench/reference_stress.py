"""Stress the reference engine: ``python -m fuzz.bench.reference_stress [--cases N]``.

Runs N random cases from `fuzz.gen.random_case` (seeds ``--seed``, ``--seed + 1``, ...)
through ``reference.run`` and applies every oracle the engine and the spec provide:

* the engine's own contract layer (``RunRecord.violations``: lockdep, KASAN, exact refcounts
  and mapcounts, swap counts, locks free at quiescence);
* liveness: the run status must be ``ok`` (no deadlock, no livelock), and no migration may
  give up for want of a legitimate extra-reference holder;
* outcome linearizability of every page against `fuzz.spec` (`fuzz.linearize.check_record`);
The first three are exactly the per-engine oracles of `fuzz.harness.check_case`
(`engine_findings`), so the figures speak for what the fuzzer checks.
* record sanity: every op of the case has a record, completed ops have a result, snapshots
  exist exactly under the serial strategy.

Prints the failures (seed, oracle, first message and the command that replays it) and the
throughput: cases per second and scheduler steps per second of the engine alone, and of the
whole loop with the checker. Exit status 1 if anything failed. This is a benchmark script, not
a test: it asserts no timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import reference
from fuzz import argtypes
from fuzz.case import Case
from fuzz.gen import random_case
from fuzz.harness import engine_findings
from fuzz.linearize import UNDECIDED
from fuzz.record import (
    RunRecord,
)


def check_one(
    seed: int, case: Case, rec: RunRecord, engine: str = "reference"
) -> list[tuple[str, str]]:
    """(oracle, message) for everything wrong with one run: the harness's per-engine oracles
    (contract, liveness, linearizability: `fuzz.harness.engine_findings`), plus shape checks.
    An undecided linearizability search is reported with oracle `UNDECIDED`."""
    notes: list[str] = []
    problems = [(f.oracle, f.headline()) for f in engine_findings(engine, case, rec, notes)]
    problems += [(UNDECIDED, note) for note in notes]
    return problems


def add_case_arguments(ap: argparse.ArgumentParser, cases: int) -> None:
    """The flags that choose the stress cases (shared with `fuzz.bench.optimized_stress`)."""
    ap.add_argument(
        "--cases",
        type=argtypes.positive_int,
        default=cases,
        help=f"number of cases (default {cases})",
    )
    ap.add_argument(
        "--seed", type=argtypes.nonnegative_int, default=0, help="first seed (default 0)"
    )
    ap.add_argument(
        "--threads", type=argtypes.positive_int, nargs=2, default=(2, 4), metavar=("MIN", "MAX")
    )
    ap.add_argument(
        "--ops", type=argtypes.positive_int, nargs=2, default=(2, 8), metavar=("MIN", "MAX")
    )
    ap.add_argument("--serial-fraction", type=argtypes.probability, default=0.2)


def stress_case(seed: int, args: argparse.Namespace) -> Case:
    """Case number `seed` as the flags of `add_case_arguments` choose it."""
    return random_case(
        seed,
        threads=tuple(args.threads),
        ops_per_thread=tuple(args.ops),
        serial_fraction=args.serial_fraction,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.bench.reference_stress")
    add_case_arguments(ap, 10_000)
    args = ap.parse_args(argv)

    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    undecided = 0
    shown = 0
    steps = engine_time = 0.0
    ops = 0
    start = time.perf_counter()
    for seed in range(args.seed, args.seed + args.cases):
        case = stress_case(seed, args)
        t0 = time.perf_counter()
        rec = reference.run(case)
        engine_time += time.perf_counter() - t0
        steps += rec.steps
        ops += len(rec.ops)
        statuses[rec.status] += 1
        for oracle, msg in check_one(seed, case, rec):
            if oracle == UNDECIDED:
                undecided += 1
                continue
            failures[oracle] += 1
            if shown < 20:
                shown += 1
                print(f"FAIL seed {seed} [{oracle}] {msg}")
                gen_args = (
                    f"{seed}, threads={tuple(args.threads)}, ops_per_thread={tuple(args.ops)}, "
                    f"serial_fraction={args.serial_fraction}"
                )
                print(
                    f'  replay: python -c "import reference, fuzz.gen as g; '
                    f'print(reference.run(g.random_case({gen_args}), trace=True))"'
                )
    total = time.perf_counter() - start
    n = args.cases
    print(
        f"cases: {n}  statuses: {dict(statuses)}  failures: {dict(failures) or 'none'}  "
        f"linearizability undecided (search budget): {undecided}"
    )
    print(
        f"engine: {n / engine_time:,.0f} cases/s, {steps / engine_time:,.0f} steps/s, "
        f"{steps / n:.1f} steps/case, {ops / n:.1f} ops/case"
    )
    print(f"with all oracles: {n / total:,.0f} cases/s ({total:.1f} s in all)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
