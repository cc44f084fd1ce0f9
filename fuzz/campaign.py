"""`vmafuzz fuzz`: a time-boxed, coverage-guided differential campaign.

Each worker process keeps its own corpus, seeded with the bundled cases (`corpora/`), and
loops: pick a case (a fresh `fuzz.gen.random_case` now and then, else a structure-aware
mutation or crossover of a corpus entry, `fuzz.mutate`), judge it with `fuzz.harness.check_case`
(both engines, every oracle), keep it if it reached new coverage, and store any finding
through `fuzz.triage.store` (atomic, deduplicated by signature, with its report and replay
token). Workers stream their counts to the parent, which prints live progress (cases/s,
coverage, benign divergences, findings) and a summary at the end, including the PCT
miss-probability bound for what was explored.

Coverage is the union of the engines' feature sets (`coverage`): what each engine's run
reached (outcome classes, VMA-lock counters, statuses, migration failures, and the
interleaving features each engine computes, `fuzz.record.RunRecord.features`), plus the kinds
of benign divergence.

With one worker and ``--runs`` the campaign is fully deterministic for a ``--seed``.
``stop_on_finding`` ends it at the first finding (the zoo's time-to-detection runs); `Stats`
records when that was.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import queue
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from fuzz.case import Case, Schedule, Strategy, decode_strict, encode
from fuzz.findings import DEFAULT_DIR
from fuzz.gen import random_case, spread_seed
from fuzz.harness import BENIGN, FINDING, Verdict, check_case
from fuzz.mutate import crossover, mutate
from fuzz.record import RunRecord
from reference.sched import SplitMix64

FRESH_FRACTION = 0.25
REPORT_EVERY = 0.5  # seconds between a worker's updates to the parent


DEFAULT_TIME = 90.0


class WorkerError(Exception):
    """A worker process died (its findings up to then are stored; the totals are not)."""


@dataclass(frozen=True)
class Config:
    time: float = DEFAULT_TIME
    runs: int = 0  # 0: until the time is up
    workers: int = 1
    seed: int = 0
    mutant: str | None = None
    findings: str = DEFAULT_DIR
    seeds: tuple[bytes, ...] = ()  # the initial corpus, as canonical case bytes
    quiet: bool = False
    stop_on_finding: bool = False


@dataclass
class Stats:
    """What a worker (or the whole campaign) did."""

    cases: int = 0
    benign: int = 0
    findings: int = 0
    steps: int = 0
    corpus: int = 0
    features: set[int] = field(default_factory=set)
    signatures: dict[str, str] = field(default_factory=dict)  # signature -> finding path
    pct: Counter[str] = field(default_factory=Counter)  # program key -> PCT runs
    pct_shape: list[tuple[int, int, int]] = field(default_factory=list)  # (tasks, steps, depth)
    first_finding: float | None = None  # seconds from the start to the first finding

    def merge(self, other: Stats) -> None:
        self.cases += other.cases
        self.benign += other.benign
        self.findings += other.findings
        self.steps += other.steps
        self.corpus += other.corpus
        self.features |= other.features
        self.signatures.update(other.signatures)
        self.pct.update(other.pct)
        self.pct_shape.extend(other.pct_shape)
        if other.first_finding is not None and (
            self.first_finding is None or other.first_finding < self.first_finding
        ):
            self.first_finding = other.first_finding


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=4).digest(), "little")


def _record_features(rec: RunRecord) -> Iterable[int]:
    yield _h(rec.engine, "status", rec.status)
    for o in rec.ops:
        yield _h(rec.engine, o.op.kind, o.result if o.result < 0 else min(o.result, 1))
    for name, value in rec.counters:
        if value:
            yield _h(rec.engine, name, min(value, 4))
    for m in rec.migration_failures:
        yield _h(rec.engine, "migration-eagain", len(m.holders))
    if rec.growths:
        yield _h(rec.engine, "stack-growth")
    yield from rec.features


def coverage(verdict: Verdict) -> set[int]:
    """The features a verdict reached (see the module docstring)."""
    out: set[int] = set()
    for rec in (verdict.reference, verdict.optimized):
        if rec is not None:
            out.update(_record_features(rec))
    for d in verdict.divergences:
        out.add(_h("benign", d.split(":", 1)[0].split("(", 1)[-1].split()[0]))
    return out


def program_key(case: Case) -> str:
    """The case without its schedule: PCT runs of one program are independent trials."""
    return hashlib.sha256(encode(replace(case, schedule=Schedule.serial()))).hexdigest()[:16]


def worker_seed(seed: int, wid: int) -> int:
    """Worker `wid`'s PRNG seed (`fuzz.gen.spread_seed`: no two streams are shifted copies)."""
    return spread_seed(seed, wid << 32 | wid)


class _Worker:
    def __init__(self, config: Config, wid: int, start: float) -> None:
        self.config = config
        self.start = start
        self.found = False
        self.rng = SplitMix64(worker_seed(config.seed, wid))
        self.corpus: list[Case] = [decode_strict(b) for b in config.seeds]
        self.seen: set[int] = set()
        self.stats = Stats()

    def next_case(self) -> Case:
        r = self.rng.below(100)
        if not self.corpus or r < FRESH_FRACTION * 100:
            return random_case(self.rng.next_u64())
        base = self.corpus[self.rng.below(len(self.corpus))]
        if r < 35 and len(self.corpus) > 1:
            other = self.corpus[self.rng.below(len(self.corpus))]
            return crossover(base, other, self.rng)
        return mutate(base, self.rng)

    def one(self) -> None:
        case = self.next_case()
        verdict = check_case(case, mutant=self.config.mutant)
        st = self.stats
        st.cases += 1
        if verdict.optimized is not None:
            st.steps += verdict.optimized.steps
        if verdict.kind == BENIGN:
            st.benign += 1
        feats = coverage(verdict)
        if not feats <= self.seen:
            self.seen |= feats
            st.features |= feats
            self.corpus.append(case)
            st.corpus += 1
        self._pct(case, verdict)
        if verdict.kind == FINDING:
            self._found(case, verdict)

    def _pct(self, case: Case, verdict: Verdict) -> None:
        s = case.schedule
        rec = verdict.optimized
        if s.strategy is Strategy.PCT and rec is not None:
            self.stats.pct[program_key(case)] += 1
            tasks = len(case.threads) + 3 + int(case.uffd_monitor)
            self.stats.pct_shape.append((tasks, max(1, rec.steps), s.depth))

    def _found(self, case: Case, verdict: Verdict) -> None:
        from fuzz.triage import store_new

        assert verdict.finding is not None
        if not self.found:
            self.found = True
            self.stats.first_finding = time.monotonic() - self.start
        self.stats.findings += 1
        known = self.stats.signatures
        saved = store_new(case, verdict, self.config.mutant, self.config.findings, known)
        for sig, where in saved.items():
            known[sig] = str(where.path)


def _worker_main(config: Config, wid: int, out: Any, start: float, runs: int, stop: Any) -> None:
    w = _Worker(config, wid, start)
    deadline = start + config.time
    last = time.monotonic()
    done = 0
    while time.monotonic() < deadline and (runs == 0 or done < runs) and not stop.is_set():
        w.one()
        done += 1
        if w.found and config.stop_on_finding:
            stop.set()
        if time.monotonic() - last > REPORT_EVERY:
            out.put(("stats", wid, w.stats))
            w.stats = Stats()
            last = time.monotonic()
    out.put(("done", wid, w.stats))


class _Progress:
    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.last = 0.0

    def show(self, total: Stats, start: float, final: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not final and now - self.last < (1.0 if self.tty else 5.0)):
            return
        self.last = now
        elapsed = max(now - start, 1e-9)
        line = (
            f"[{elapsed:6.1f}s] cases {total.cases:7}  {total.cases / elapsed:7.1f}/s  "
            f"coverage {len(total.features):5}  corpus +{total.corpus:<4} "
            f"benign {total.benign:5}  findings {total.findings} ({len(total.signatures)} unique)"
        )
        if self.tty and not final:
            self.stream.write("\r" + line)
        else:
            self.stream.write(("\r" if self.tty else "") + line + "\n")
        self.stream.flush()


def _collect(
    out: Any, procs: Sequence[Any], total: Stats, progress: _Progress, start: float, stream: TextIO
) -> None:
    running = len(procs)
    while running:
        try:
            kind, _wid, stats = out.get(timeout=0.2)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                break
            progress.show(total, start)
            continue
        for sig, path in stats.signatures.items():
            if sig not in total.signatures:
                stream.write(f"\nnew finding: {sig}\n  saved in {path}\n")
        total.merge(stats)
        running -= kind == "done"
        progress.show(total, start)


def run(config: Config, stream: TextIO = sys.stdout) -> Stats:
    """Run the campaign; returns the totals (findings are already stored)."""
    start = time.monotonic()
    deadline = start + config.time
    total = Stats()
    progress = _Progress(stream, config.quiet)
    if config.workers == 1:
        w = _Worker(config, 0, start)
        done = 0
        while time.monotonic() < deadline and (config.runs == 0 or done < config.runs):
            if w.found and config.stop_on_finding:
                break
            before = dict(w.stats.signatures)
            w.one()
            done += 1
            for sig in w.stats.signatures.keys() - before.keys():
                stream.write(f"\nnew finding: {sig}\n  saved in {w.stats.signatures[sig]}\n")
            progress.show(w.stats, start)
        total = w.stats
    else:
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        stop = ctx.Event()
        # --runs N is split exactly: worker i runs N // W cases, one more if i < N % W.
        per, extra = divmod(config.runs, config.workers)
        procs = [
            ctx.Process(
                target=_worker_main,
                args=(config, i, out, start, per + (i < extra), stop),
                daemon=True,
            )
            for i in range(config.workers)
            if not config.runs or per + (i < extra)
        ]
        for p in procs:
            p.start()
        try:
            _collect(out, procs, total, progress, start, stream)
        finally:
            for p in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
        dead = [i for i, p in enumerate(procs) if p.exitcode not in (0, None)]
        if dead:
            raise WorkerError(
                f"worker {dead[0]} died (exit code {procs[dead[0]].exitcode}); "
                f"{total.cases} cases were checked, findings so far are in {config.findings}/"
            )
    progress.show(total, start, final=True)
    stream.write(summary(total, time.monotonic() - start))
    return total


def pct_bound(stats: Stats) -> list[str]:
    """PCT (Burckhardt et al. 2010): one run of a program with n tasks and k steps hits a
    given bug of depth d with probability at least 1/(n k^(d-1)); R independent runs of the
    same program miss it with probability at most (1 - p)^R."""
    if not stats.pct:
        return ["PCT: no PCT runs"]
    n = statistics.median(s[0] for s in stats.pct_shape)
    k = statistics.median(s[1] for s in stats.pct_shape)
    key, most = stats.pct.most_common(1)[0]
    lines = [
        f"PCT: {sum(stats.pct.values())} runs over {len(stats.pct)} programs; median "
        f"{n:g} tasks, {k:g} steps per run; the most-run program ({key[:8]}) had {most} runs"
    ]
    for depth in (1, 2, 3):
        p = 1.0 / (n * k ** (depth - 1))
        miss = (1 - p) ** most
        runs99 = math.ceil(math.log(0.01) / math.log1p(-p)) if p < 1 else 1
        lines.append(
            f"  depth {depth}: each run hits a given bug with p >= {p:.2e}; P(miss) for that "
            f"program <= {miss:.3f}; {runs99} runs of one program give 99%"
        )
    return lines


def summary(total: Stats, elapsed: float) -> str:
    lines = [
        f"\nvmafuzz fuzz: {total.cases} cases in {elapsed:.1f}s ({total.cases / max(elapsed, 1e-9):.1f}/s), "
        f"coverage {len(total.features)} features, {total.benign} benign divergences, "
        f"{total.findings} findings ({len(total.signatures)} unique)"
    ]
    for sig, path in sorted(total.signatures.items()):
        lines.append(f"  {sig}\n    {path}  (replay: vmafuzz repro {path})")
    lines.extend(pct_bound(total))
    return "\n".join(lines) + "\n"
