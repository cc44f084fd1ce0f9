"""Stress the optimized engine: ``python -m fuzz.bench.optimized_stress [--cases N]``.

Runs N random concurrent cases from `fuzz.gen.random_case` (seeds ``--seed``, ``--seed + 1``,
...) through ``optimized.run`` and applies every oracle the engine and the spec provide, the
same ones `fuzz.bench.reference_stress` applies to the reference:

* the engine's own contract layer (``RunRecord.violations``: lockdep including the per-VMA
  lock rules, KASAN with RCU-freed VMAs, exact refcounts and mapcounts, swap counts, locks
  free at quiescence);
* liveness: the run status must be ``ok`` (no deadlock, no livelock), and no migration may
  give up for want of a legitimate extra-reference holder;
* outcome linearizability of every page against `fuzz.spec` (`fuzz.linearize.check_record`);
* record sanity (every op has a record, snapshots exactly under the serial strategy).

It prints the failures (seed, oracle, message, and the command that replays it) and the
throughput of the engine alone, measured on the raw hot path (`optimized.run_bytes` on the
encoded cases, without interleaving features) and on the `RunRecord` facade, next to the
reference's on the first ``--reference-cases`` of the same cases (a subset, as the reference is
much slower); neither engine computes interleaving features for these figures. ``--dump FILE`` also writes the encoded cases for
``cargo run --release --example engine_bench -- FILE``, which times the native engine with no
Python at all. Exit status 1 if anything failed. A benchmark script, not a test: it asserts no
timing.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections import Counter

import optimized
import reference
from fuzz import argtypes
from fuzz.bench.reference_stress import add_case_arguments, check_one, stress_case
from fuzz.case import Case, encode
from fuzz.linearize import UNDECIDED
from fuzz.record import RunRecord


def make_cases(args: argparse.Namespace) -> list[Case]:
    return [stress_case(seed, args) for seed in range(args.seed, args.seed + args.cases)]


def engine_throughput(data: list[bytes]) -> tuple[float, float, int]:
    """(cases/s through `run_bytes`, cases/s through `RunRecord.from_native`, total steps)."""
    t0 = time.perf_counter()
    steps = sum(optimized.run_bytes(d, features=False)[13] for d in data)
    raw = len(data) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for d in data:
        RunRecord.from_native(optimized.run_bytes(d, features=False))
    facade = len(data) / (time.perf_counter() - t0)
    return raw, facade, steps


def reference_throughput(cases: list[Case]) -> float:
    """Cases/s through `reference.run`, without interleaving features like the optimized
    engine's figures (computing them costs the reference about a tenth of its time)."""
    t0 = time.perf_counter()
    for c in cases:
        reference.run(c, features=False)
    return len(cases) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.bench.optimized_stress")
    add_case_arguments(ap, 100_000)
    ap.add_argument(
        "--reference-cases",
        type=argtypes.nonnegative_int,
        default=2000,
        metavar="N",
        help="time the reference on the first N cases (default 2000)",
    )
    ap.add_argument(
        "--dump",
        metavar="FILE",
        help="also write the encoded cases, each after its u32 little-endian length, to FILE",
    )
    args = ap.parse_args(argv)

    t_gen = time.perf_counter()
    cases = make_cases(args)
    data = [encode(c) for c in cases]
    t_gen = time.perf_counter() - t_gen
    if args.dump:
        try:
            with open(args.dump, "wb") as f:
                for d in data:
                    f.write(struct.pack("<I", len(d)) + d)
        except OSError as e:
            print(f"optimized_stress: cannot write {args.dump}: {e.strerror}", file=sys.stderr)
            return 2

    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    counters: Counter[str] = Counter()
    undecided = shown = 0
    start = time.perf_counter()
    for seed, case, raw in zip(range(args.seed, args.seed + args.cases), cases, data, strict=True):
        rec = RunRecord.from_native(optimized.run_bytes(raw))
        statuses[rec.status] += 1
        counters.update(dict(rec.counters))
        for oracle, msg in check_one(seed, case, rec, "optimized"):
            if oracle == UNDECIDED:
                undecided += 1
                continue
            failures[oracle] += 1
            if shown < 20:
                shown += 1
                print(f"FAIL seed {seed} [{oracle}] {msg}")
                print(
                    f'  replay: python -c "import optimized, fuzz.gen as g; '
                    f"print(optimized.run(g.random_case({seed}, threads=({args.threads[0]}, "
                    f"{args.threads[1]}), ops_per_thread=({args.ops[0]}, {args.ops[1]}), "
                    f'serial_fraction={args.serial_fraction}), trace=True))"'
                )
    total = time.perf_counter() - start

    raw_rate, facade_rate, steps = engine_throughput(data)
    n_ref = min(args.reference_cases, len(cases))
    ref_rate = reference_throughput(cases[:n_ref]) if n_ref else 0.0
    same_raw, same_facade, _ = engine_throughput(data[:n_ref]) if n_ref else (0.0, 0.0, 0)
    n = len(cases)
    print(
        f"cases: {n}  statuses: {dict(statuses)}  failures: {dict(failures) or 'none'}  "
        f"linearizability undecided (search budget): {undecided}"
    )
    print(f"per-VMA lock counters: {dict(counters)}")
    print(
        f"optimized engine: {raw_rate:,.0f} cases/s via run_bytes "
        f"({steps / n:.1f} steps/case, {steps * raw_rate / n:,.0f} steps/s); "
        f"{facade_rate:,.0f} cases/s via RunRecord.from_native"
    )
    if ref_rate:
        print(
            f"on the first {n_ref} cases: reference {ref_rate:,.0f} cases/s, optimized "
            f"{same_raw:,.0f} cases/s via run_bytes ({same_raw / ref_rate:.1f}x), "
            f"{same_facade:,.0f} via RunRecord ({same_facade / ref_rate:.1f}x)"
        )
    print(
        f"with all oracles: {n / total:,.0f} cases/s ({total:.1f} s; case generation {t_gen:.1f} s)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
