"""Run many random cases through `fuzz.harness.check_case`: ``python -m fuzz.bench.check``.

Cases come from `fuzz.gen.random_case` (seeds ``--seed`` onwards; mixed serial and
concurrent schedules, every operation kind, both swap devices, with and without the uffd
monitor), spread over ``--workers`` processes. Prints the verdict counts (pass, benign
divergence, finding), undecided linearizability searches, the throughput with both engines
and every oracle, and each distinct finding (stored under ``--findings`` with its report and
replay command). Exit status 1 if there was a finding. A benchmark script: it asserts nothing
about time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections import Counter

from fuzz import argtypes
from fuzz.gen import random_case
from fuzz.harness import FINDING, UnknownMutantError, check_case, check_mutant


def _chunk(args: tuple[int, int, str | None, str]) -> tuple[Counter[str], int, dict[str, str]]:
    first, count, mutant, findings = args
    from fuzz.triage import store_new

    kinds: Counter[str] = Counter()
    undecided = 0
    found: dict[str, str] = {}
    for seed in range(first, first + count):
        case = random_case(seed)
        verdict = check_case(case, mutant=mutant)
        kinds[verdict.kind] += 1
        undecided += bool(verdict.undecided)
        if verdict.kind == FINDING:
            for sig, saved in store_new(case, verdict, mutant, findings, found).items():
                found[sig] = f"seed {seed}: {saved.path}"
    return kinds, undecided, found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.bench.check")
    ap.add_argument("--cases", type=argtypes.positive_int, default=100_000)
    ap.add_argument("--seed", type=argtypes.nonnegative_int, default=0)
    ap.add_argument("--workers", type=argtypes.positive_int, default=multiprocessing.cpu_count())
    ap.add_argument("--mutant", default=None)
    ap.add_argument("--findings", default="findings")
    args = ap.parse_args(argv)
    try:
        check_mutant(args.mutant)
    except UnknownMutantError as e:
        ap.error(str(e))
    step = 500
    jobs = [
        (s, min(step, args.seed + args.cases - s), args.mutant, args.findings)
        for s in range(args.seed, args.seed + args.cases, step)
    ]
    kinds: Counter[str] = Counter()
    undecided = 0
    found: dict[str, str] = {}
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for k, u, f in pool.imap_unordered(_chunk, jobs):
            kinds.update(k)
            undecided += u
            for sig, where in f.items():
                found.setdefault(sig, where)
    elapsed = time.perf_counter() - start
    n = sum(kinds.values())
    print(
        f"cases: {n}  pass: {kinds['pass']}  benign divergences: {kinds['benign']}  "
        f"findings: {kinds['finding']} ({len(found)} distinct)  undecided searches: {undecided}"
    )
    print(
        f"throughput: {n / elapsed:,.0f} cases/s on {args.workers} workers "
        f"({n / elapsed / args.workers:,.0f} per worker), {elapsed:.0f} s in all"
    )
    for sig, where in sorted(found.items()):
        print(f"  {sig}\n    {where}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
