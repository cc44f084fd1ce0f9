"""Benchmark of the linearizability checker: ``python -m fuzz.bench.linearize [--count N]``.

Generates deterministic random concurrent histories -- a serial setup that maps and fills
memory, then 4 threads x 8 operations with random overlapping intervals -- by running every op
through the sequential spec at a random point inside its interval (so each history is
linearizable by construction), and a corrupted copy of each in which one successful read
returns a value no op ever wrote. Prints checks per second and per-page search nodes (memo
entries) for both.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace

from fuzz import argtypes, spec
from fuzz.case import Case, Op, OpKind, normalize_op
from fuzz.linearize import (
    DEFAULT_BUDGET,
    FAIL,
    OK,
    UNDECIDED,
    check_record,
    page_histories,
    search,
)
from fuzz.record import RES_HUNG, OpRecord, RunRecord

Timing = tuple[int, int, float]  # invoke, response, linearization point

_KINDS = (
    [OpKind.READ] * 10 + [OpKind.WRITE] * 7 + [k for k in OpKind if OpKind.WRITE < k < OpKind.KILL]
)


def simulate(case: Case, timing: Sequence[Timing]) -> RunRecord:
    """Run the case's ops through `spec.execute` in the order of their linearization points
    (``timing[i]`` belongs to ``case.all_ops()[i]``); a blocked access is recorded as hung."""
    ops = case.all_ops()
    mem = spec.initial_memory(case.nr_pages)
    recs: list[OpRecord] = []
    for i in sorted(range(len(ops)), key=lambda i: timing[i][2]):
        part, t, op = ops[i]
        r, mem = spec.execute(mem, op)
        invoke, response, _ = timing[i]
        recs.append(OpRecord(i, part, t, op, invoke, -1 if r == RES_HUNG else response, r))
    recs.sort(key=lambda rec: rec.index)
    return RunRecord("spec", "ok", tuple(recs), spec.memory_image(mem))


def random_case(rng: random.Random, threads: int = 4, per_thread: int = 8, pages: int = 4) -> Case:
    """A setup that maps and fills memory, then `threads` x `per_thread` random ops."""
    values = iter(range(1, 0x8000))
    fill = tuple(Op(OpKind.WRITE, 0, p, value=next(values)) for p in range(pages))
    body = tuple(
        tuple(_random_op(rng, pages, next(values)) for _ in range(per_thread))
        for _ in range(threads)
    )
    return Case(threads=body, setup=(Op(OpKind.MMAP, 0, 0, pages, 3), *fill), nr_pages=pages)


def _random_op(rng: random.Random, pages: int, value: int) -> Op:
    kind, mm = rng.choice(_KINDS), rng.choice((0, 0, 0, 1))
    page, npages, prot = rng.randrange(pages), rng.randint(1, 2), rng.randrange(8)
    return normalize_op(kind, mm, page, npages, prot, value, pages)


def random_timing(rng: random.Random, case: Case, spread: int = 12) -> list[Timing]:
    """Setup ops one after another, then each thread's ops in sequence with random gaps and
    durations (0 to `spread` steps), all threads starting together."""
    out: list[Timing] = [(2 * i, 2 * i + 1, 2 * i + 0.5) for i in range(len(case.setup))]
    for ops in case.threads:
        cursor = 2 * len(case.setup)
        for _ in ops:
            invoke = cursor + rng.randint(0, 4)
            response = invoke + rng.randint(0, spread)
            out.append((invoke, response, rng.uniform(invoke, response)))
            cursor = response + 1
    return out


def corrupt(record: RunRecord) -> RunRecord | None:
    """One successful read now returns a value no op ever wrote (None: no successful read)."""
    reads = [
        i
        for i, r in enumerate(record.ops)
        if r.op.kind is OpKind.READ and r.result >= 0 and r.completed
    ]
    if not reads:
        return None
    ops = list(record.ops)
    victim = reads[len(reads) // 2]
    ops[victim] = ops[victim]._replace(result=1 + max(r.op.value for r in record.ops))
    return replace(record, ops=tuple(ops))


def workload(args: argparse.Namespace) -> list[tuple[Case, RunRecord, RunRecord]]:
    """(case, linearizable record, corrupted record) triples, deterministic in ``args.seed``."""
    rng = random.Random(args.seed)
    out: list[tuple[Case, RunRecord, RunRecord]] = []
    while len(out) < args.count:
        case = random_case(rng, args.threads, args.ops, args.pages)
        good = simulate(case, random_timing(rng, case, args.spread))
        bad = corrupt(good)
        if bad is not None:
            out.append((case, good, bad))
    return out


def _rate(pairs: Sequence[tuple[Case, RunRecord]], explain: bool, want: str) -> str:
    """Checks per second, and how many verdicts were undecided (a wrong verdict raises)."""
    undecided = 0
    start = time.perf_counter()
    for case, rec in pairs:
        res = check_record(case, rec, explain=explain)
        if res.status not in (want, UNDECIDED):
            raise AssertionError(f"checker verdict {res.status}, expected {want}")
        undecided += res.status == UNDECIDED
    rate = len(pairs) / (time.perf_counter() - start)
    return f"{rate:8.1f} checks/s" + (f" ({undecided} undecided)" if undecided else "")


def _nodes(pairs: Sequence[tuple[Case, RunRecord]]) -> str:
    """Search nodes (memo entries) per page: median, p99, max (capped at the budget)."""
    nodes = sorted(
        search(h, spec.INITIAL, DEFAULT_BUDGET)[1]
        for case, rec in pairs
        for h in page_histories(case, rec)
    )
    p99 = nodes[min(len(nodes) - 1, len(nodes) * 99 // 100)]
    return f"median {statistics.median(nodes):g}, p99 {p99}, max {nodes[-1]}"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fuzz.bench.linearize", description=__doc__)
    ap.add_argument(
        "--count", type=argtypes.positive_int, default=500, help="histories of each kind"
    )
    ap.add_argument("--seed", type=argtypes.nonnegative_int, default=1)
    ap.add_argument("--threads", type=argtypes.positive_int, default=4)
    ap.add_argument("--ops", type=argtypes.positive_int, default=8, help="ops per thread")
    ap.add_argument("--pages", type=argtypes.positive_int, default=4)
    ap.add_argument(
        "--spread", type=argtypes.positive_int, default=12, help="longest op duration, in steps"
    )
    args = ap.parse_args(argv)
    triples = workload(args)
    good = [(c, g) for c, g, _ in triples]
    bad = [(c, b) for c, _, b in triples]
    ops = statistics.mean(len(g.ops) for _, g in good)
    shape = f"{args.threads} threads x {args.ops} ops + setup ({ops:.1f} ops), {args.pages} pages"
    print(f"{len(triples)} histories of {shape}, durations 0..{args.spread} steps")
    print(f"linearizable: {_rate(good, True, OK)}; nodes/page {_nodes(good)}")
    print(f"corrupted:    {_rate(bad, False, FAIL)} (verdict only); nodes/page {_nodes(bad)}")
    print(f"corrupted:    {_rate(bad, True, FAIL)} (with explanation)")


if __name__ == "__main__":
    main()
