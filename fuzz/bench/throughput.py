"""Throughput of the full differential check: ``python -m fuzz.bench.throughput [--cases N]``.

Runs `fuzz.harness.check_case` (both engines, every oracle) on N cases of 4 threads x 6
operations (`fuzz.gen.random_case` with ``threads=(4, 4), ops_per_thread=(6, 6)``, seeds
``--seed``, ``--seed + 1``, ...) in this one process, and prints:

* cases per second **per core**: cases per CPU-second of this process (`time.process_time`),
  which a loaded machine skews less than wall time (the best of ``--repeat`` passes);
* where the time goes, measured directly (each stage on its own, outside the profiler, with
  the cyclic garbage collector off during each case as `check_case` has it): the reference
  engine, the optimized engine split into encoding the case, the native run and the
  conversion of its record, the two linearizability checks; the rest is the harness's own
  oracles plus what the stages cost each other when they alternate within one case (caches,
  allocator), which timing each stage alone does not show;
* a cProfile summary grouped by component (the functions' own time; a built-in counts for
  the component that called it), with the top functions of each.

A benchmark script, not a test: it asserts no timing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import optimized
import reference
from fuzz import argtypes, linearize
from fuzz.case import Case, encode
from fuzz.gen import random_case
from fuzz.harness import check_case, cyclic_gc_deferred

COMPONENTS = (  # the first whose needle a function's "file:name" contains
    ("reference engine", ("/reference/",)),
    ("linearizability", ("/fuzz/linearize.py", "/fuzz/spec.py", "_native.linearizable")),
    ("optimized engine + conversion", ("/optimized/", "_native", "/fuzz/record.py")),
    ("case encoding", ("/fuzz/case.py",)),
    ("harness", ("/fuzz/harness.py",)),
)
OTHER = "other"


def make_cases(n: int, seed: int) -> list[Case]:
    return [random_case(seed + i, threads=(4, 4), ops_per_thread=(6, 6)) for i in range(n)]


def per_case_us(fn: Callable[[], object], n: int, repeat: int) -> float:
    """CPU microseconds per case of `fn` (which handles all `n` cases), best of `repeat`."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best / n * 1e6


def stages(cases: Sequence[Case], repeat: int) -> list[tuple[str, float]]:
    """(stage, CPU us per case), each stage timed on its own."""
    n = len(cases)
    data = [encode(c) for c in cases]
    refs = [reference.run(c) for c in cases]
    opts = [optimized.run(c) for c in cases]

    def each(fn: Callable[[int], object]) -> Callable[[], None]:
        """Run `fn` on every case index under `check_case`'s garbage-collection regime."""

        def run() -> None:
            for i in range(n):
                with cyclic_gc_deferred():
                    fn(i)

        return run

    def lin(i: int) -> None:
        linearize.check_record(cases[i], refs[i])
        linearize.check_record(cases[i], opts[i])

    total = per_case_us(lambda: [check_case(c) for c in cases], n, repeat)
    ref = per_case_us(each(lambda i: reference.run(cases[i])), n, repeat)
    opt = per_case_us(each(lambda i: optimized.run(cases[i])), n, repeat)
    enc = per_case_us(each(lambda i: encode(cases[i])), n, repeat)
    native = per_case_us(each(lambda i: optimized.run_bytes(data[i], None, False, True)), n, repeat)
    lin_us = per_case_us(each(lin), n, repeat)
    return [
        ("check_case", total),
        ("reference engine (reference.run)", ref),
        ("optimized engine (optimized.run)", opt),
        ("  encode the case for Rust", enc),
        ("  the native run (run_bytes)", native),
        ("  RunRecord.from_native (the rest)", opt - enc - native),
        ("linearizability (both records)", lin_us),
        ("the rest: harness, and stages slowing each other", total - ref - opt - lin_us),
    ]


def component(filename: str, name: str) -> str | None:
    where = f"{filename}:{name}"
    for label, needles in COMPONENTS:
        if any(n in where for n in needles):
            return label
    return None


def profile(cases: Sequence[Case], top: int) -> list[str]:
    """The cProfile summary by component (a built-in counts for its callers' components)."""
    prof = cProfile.Profile()
    prof.enable()
    for c in cases:
        check_case(c)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    own: dict[str, float] = defaultdict(float)
    funcs: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for (filename, line, name), (_cc, _nc, tt, _ct, callers) in stats.items():
        label = component(filename, name)
        if label is None and filename == "~" and callers:
            # A built-in: split its time among its callers' components.
            weights: dict[str, float] = defaultdict(float)
            for (cf, _cl, cn), caller_stats in callers.items():
                weights[component(cf, cn) or OTHER] += caller_stats[2] or 1e-12
            total = sum(weights.values())
            for lab, w in weights.items():
                own[lab] += tt * w / total
                funcs[lab].append((tt * w / total, name))
            continue
        label = label or OTHER
        own[label] += tt
        short = "/".join(filename.split("/")[-2:])
        funcs[label].append((tt, f"{short}:{line}({name})" if filename != "~" else name))
    grand = sum(own.values())
    lines = [f"profile of {len(cases)} check_case calls (own time by component, under cProfile):"]
    for label in [c for c, _ in COMPONENTS] + [OTHER]:
        if label not in own:
            continue
        lines.append(f"  {label:32} {own[label]:7.3f} s  {100 * own[label] / grand:5.1f}%")
        for tt, name in sorted(funcs[label], reverse=True)[:top]:
            lines.append(f"      {tt:7.3f} s  {name}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", type=argtypes.positive_int, default=400, help="cases per pass (400)"
    )
    parser.add_argument(
        "--seed", type=argtypes.nonnegative_int, default=0, help="first random_case seed (0)"
    )
    parser.add_argument(
        "--repeat", type=argtypes.positive_int, default=3, help="passes; the best counts (3)"
    )
    parser.add_argument(
        "--top", type=argtypes.positive_int, default=6, help="functions shown per component (6)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile summary")
    args = parser.parse_args(argv)
    cases = make_cases(args.cases, args.seed)
    for c in cases[:20]:  # warm up: imports, caches
        check_case(c)
    measured = stages(cases, args.repeat)
    total = measured[0][1]
    print(
        f"check_case on {len(cases)} cases of 4 threads x 6 ops: "
        f"{1e6 / total:,.0f} cases/s per core ({total:,.0f} us per case)"
    )
    for name, us in measured[1:]:
        print(f"  {name:40} {us:8.1f} us  {100 * us / total:5.1f}%")
    if not args.no_profile:
        print("\n".join(profile(cases, args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
