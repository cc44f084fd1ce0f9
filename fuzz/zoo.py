"""`vmafuzz zoo`: re-find the historical fault-locking bugs of the bug zoo, planted as mutants.

Every mutant of the optimized engine (`optimized.MUTANTS`, one per ZOO.md entry) and the
unmutated control are searched with two methods, each for `budget` seconds per seed on one core
(one worker), and each judged by `fuzz.harness.check_case` alone:

* **fuzz**: the main campaign (`fuzz.campaign`: coverage-guided, structure-aware mutation,
  seeded with the bundled corpus), stopped at its first finding;
* **baseline**: the stress-test approach: a fresh `fuzz.gen.random_case` run under
  `Schedule.random` every time, with no corpus, no mutation and no coverage feedback.

For each seed the first finding's case (schedule resolved) is replayed and shrunk with
`fuzz.minimize.minimize`; a mutant's row reports how many seeds found it, the oracle and rule
(the most common over seeds), the smallest minimised case (operations, busy threads, context
switches), the time to first detection for both methods (median and range over seeds, and the
median number of cases run up to it; a seed that found nothing counts as more than the budget),
and the speed-up of the fuzzer over the baseline (the ratio of the median times, each at least
10 ms; ``> Nx`` when the baseline's median is past the budget).

The run passes when every mutant's median time is within the budget and the control finds
nothing. The cases the campaign starts from never include the zoo's own regression cases
(``corpora/zoo``), which would hand it the answers.

Regression cases (``corpora/zoo/*.case``) are minimised cases in the text form, with a header
that `parse_header` reads back::

    # zoo: Z19_folio_lock_mmap_unlock
    # historical: fdc724d6aa44 ("mm: change folio_lock_or_retry to use vm_fault directly")
    # finds: contract/lock.release-unheld
"""

from __future__ import annotations

import argparse
import io
import math
import pathlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TextIO

from fuzz import argtypes, campaign
from fuzz.case import Case, Schedule, format_case
from fuzz.gen import random_case, spread_seed
from fuzz.harness import UnknownMutantError, check_case, check_mutant, resolved_case
from fuzz.minimize import minimize
from reference.sched import SplitMix64

__all__ = [
    "HISTORY",
    "ZOO_DIR",
    "Row",
    "Shrunk",
    "Trial",
    "ZooError",
    "add_arguments",
    "baseline_trial",
    "campaign_seeds",
    "case_file",
    "check_mutants",
    "fuzz_trial",
    "main",
    "median_seconds",
    "parse_header",
    "passed",
    "run_zoo",
    "save_cases",
    "shrink",
    "table",
    "trial_seed",
]

CONTROL = "(control)"
DEFAULT_BUDGET = 60.0
DEFAULT_SEEDS = 5
ZOO_DIR = pathlib.Path(__file__).resolve().parent.parent / "corpora" / "zoo"

# The ZOO.md entry of each mutant and the historical change it puts back (for the table and
# the regression cases' headers).
HISTORY: dict[str, tuple[str, str]] = {
    "Z18_double_vma_end_read": (
        "Z18",
        '4089eef0e6ac ("mm: drop per-VMA lock when returning VM_FAULT_RETRY or '
        'VM_FAULT_COMPLETED")',
    ),
    "Z19_folio_lock_mmap_unlock": (
        "Z19",
        'fdc724d6aa44 ("mm: change folio_lock_or_retry to use vm_fault directly")',
    ),
    "Z24_migration_wait_pageref": (
        "Z24",
        'ffa65753c431 ("mm/migrate.c: rework migration_entry_wait() to not take a pageref")',
    ),
    "Z09_detach_without_write_lock": (
        "Z09-detach",
        '73046fd00b06 ("mm: write-lock VMAs before removing them from VMA tree"), '
        '457f67be5910 ("mm: introduce vma detached flag")',
    ),
    "Z17_access_error_mmap_unlock": (
        "Z17",
        '"powerpc/mm: fix mmap_lock bad unlock" (6.4 series, fixing 70d4cbc80c88)',
    ),
    "Zrange_no_recheck": (
        "Z-range",
        '50ee32537206 ("mm: introduce lock_vma_under_rcu to be used from arch-specific '
        'code"): the range re-check after vma_start_read()',
    ),
    "Zdevpriv_under_vma_lock": (
        "Z-devpriv",
        '1235ccd05b6d ("mm: handle swap page faults under per-VMA lock"), seed 000',
    ),
    "Zasync_swap_folio_lock": (
        "Z-async-swap",
        "1235ccd05b6d and seeds 000/001: async swap-in must go through folio_lock_or_retry",
    ),
}


class ZooError(ValueError):
    """A zoo request that cannot run (an unknown mutant); the message is one line."""


@dataclass(frozen=True)
class Trial:
    """One search: `method` ("fuzz" or "baseline") for `mutant` (None: the control)."""

    mutant: str | None
    method: str
    seed: int
    seconds: float | None  # to the first finding; None: nothing within the budget
    cases: int
    signature: str = ""  # oracle/rule/engine/function/op kinds of the first finding
    case: Case | None = None  # the case that produced it, schedule resolved

    @property
    def oracle_rule(self) -> str:
        return "/".join(self.signature.split("/")[:2])


@dataclass(frozen=True)
class Shrunk:
    """A trial's case after `fuzz.minimize.minimize`, still giving `signature`."""

    case: Case
    signature: str
    size: tuple[int, int, int]  # operations, busy threads, context switches
    checks: int


@dataclass(frozen=True)
class Row:
    """One mutant (None: the control): its trials by method and its smallest shrunk case."""

    mutant: str | None
    fuzz: tuple[Trial, ...]
    baseline: tuple[Trial, ...]
    shrunk: Shrunk | None

    @property
    def name(self) -> str:
        return self.mutant or CONTROL


# ---------------------------------------------------------------------------------------------
# The two search methods


def trial_seed(seed: int, method: str) -> int:
    """A 64-bit seed for `method`'s trial number `seed` (`fuzz.gen.spread_seed`)."""
    return spread_seed(seed, 0xF022 if method == "fuzz" else 0xB45E)


def campaign_seeds() -> tuple[bytes, ...]:
    """The campaign's bundled corpus without the zoo's own regression cases."""
    from fuzz import corpus
    from fuzz.cli import bundled_seeds

    planted = set(corpus.load_dir(ZOO_DIR)) if ZOO_DIR.is_dir() else set()
    return tuple(s for s in bundled_seeds() if s not in planted)


def fuzz_trial(
    mutant: str | None, seed: int, budget: float, seeds: tuple[bytes, ...] = ()
) -> Trial:
    """The main campaign on one core until its first finding or the end of `budget`."""
    from fuzz.triage import load_token

    with tempfile.TemporaryDirectory(prefix="vmafuzz-zoo-") as tmp:
        config = campaign.Config(
            time=budget,
            workers=1,
            seed=trial_seed(seed, "fuzz"),
            mutant=mutant,
            findings=tmp,
            seeds=seeds,
            quiet=True,
            stop_on_finding=True,
        )
        stats = campaign.run(config, io.StringIO())
        if stats.first_finding is None or not stats.signatures:
            return Trial(mutant, "fuzz", seed, None, stats.cases)
        signature, path = next(iter(stats.signatures.items()))
        token = load_token(path)
    return Trial(mutant, "fuzz", seed, stats.first_finding, stats.cases, signature, token.case)


def baseline_trial(mutant: str | None, seed: int, budget: float) -> Trial:
    """Uniform random cases under uniform random schedules, no feedback, until the first
    finding or the end of `budget`."""
    rng = SplitMix64(trial_seed(seed, "baseline"))
    start = time.monotonic()
    cases = 0
    while time.monotonic() - start < budget:
        case = replace(random_case(rng.next_u64()), schedule=Schedule.random(rng.next_u64()))
        verdict = check_case(case, mutant=mutant)
        cases += 1
        finding = verdict.finding
        if finding is not None:
            seconds = time.monotonic() - start
            rec = verdict.record(finding.engine)
            resolved = resolved_case(case, rec) if rec is not None else case
            return Trial(mutant, "baseline", seed, seconds, cases, finding.signature, resolved)
    return Trial(mutant, "baseline", seed, None, cases)


def shrink(trial: Trial) -> Shrunk | None:
    """Minimise a trial's case, keeping its signature; None if it does not replay."""
    if trial.case is None:
        return None
    verdict = check_case(trial.case, mutant=trial.mutant)
    target = next((f for f in verdict.findings if f.signature == trial.signature), None)
    if target is None:
        return None
    result = minimize(trial.case, replace(verdict, findings=(target,)), trial.mutant)
    return Shrunk(result.case, trial.signature, result.after, result.checks)


# ---------------------------------------------------------------------------------------------
# The zoo


def check_mutants(names: Sequence[str]) -> list[str]:
    """`names` if every one is a mutant of the optimized engine; `ZooError` otherwise."""
    try:
        return [str(check_mutant(name)) for name in names]
    except UnknownMutantError as e:
        raise ZooError(str(e)) from None


def run_zoo(
    mutants: Sequence[str],
    seeds: int,
    budget: float,
    *,
    baseline: bool = True,
    control: bool = True,
    progress: TextIO | None = None,
) -> list[Row]:
    """Search every mutant (then the control) with every seed; see the module docstring."""
    start_seeds = campaign_seeds()
    targets: list[str | None] = [*check_mutants(mutants), *([None] if control else [])]
    rows = []
    for mutant in targets:
        fuzz: list[Trial] = []
        base: list[Trial] = []
        for seed in range(seeds):
            fuzz.append(fuzz_trial(mutant, seed, budget, start_seeds))
            if baseline:
                base.append(baseline_trial(mutant, seed, budget))
            if progress is not None:
                progress.write(_progress_line(mutant, seed, fuzz[-1], base[-1] if base else None))
                progress.flush()
        rows.append(Row(mutant, tuple(fuzz), tuple(base), _smallest(fuzz)))
    return rows


def _smallest(trials: Sequence[Trial]) -> Shrunk | None:
    shrunk = [s for s in map(shrink, trials) if s is not None]
    return min(shrunk, key=lambda s: (s.size, s.checks), default=None)


def _trial_text(t: Trial) -> str:
    if t.seconds is None:
        return f"nothing in {t.cases} cases"
    return f"{t.seconds:.1f}s ({t.oracle_rule}, case {t.cases})"


def _progress_line(mutant: str | None, seed: int, fuzz: Trial, base: Trial | None) -> str:
    line = f"{mutant or CONTROL} seed {seed}: fuzz {_trial_text(fuzz)}"
    if base is not None:
        line += f"; baseline {_trial_text(base)}"
    return line + "\n"


def median_seconds(trials: Sequence[Trial]) -> float:
    """The median time to first detection; a trial that found nothing counts as infinite."""
    return statistics.median(math.inf if t.seconds is None else t.seconds for t in trials)


def passed(rows: Sequence[Row], budget: float) -> bool:
    """Every mutant's median time is within the budget, and the control found nothing."""
    for row in rows:
        if row.mutant is None:
            if any(t.seconds is not None for t in (*row.fuzz, *row.baseline)):
                return False
        elif median_seconds(row.fuzz) > budget:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# The table


RESOLUTION = 0.01  # seconds: shorter times count as this much in a speed-up


def _seconds(value: float, budget: float) -> str:
    if value > budget:
        return f">{budget:g}"
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def _spread(trials: Sequence[Trial], budget: float) -> str:
    """``median [min, max] (median cases)`` of the time to first detection."""
    if not trials:
        return "-"
    times = [math.inf if t.seconds is None else t.seconds for t in trials]
    text = _seconds(statistics.median(times), budget)
    low, high = _seconds(min(times), budget), _seconds(max(times), budget)
    if len(times) > 1 and low != high:
        text += f" [{low}, {high}]"
    cases = statistics.median(t.cases if t.seconds is not None else math.inf for t in trials)
    if cases < math.inf:
        text += f" ({cases:g})"
    return text


def _speedup(row: Row, budget: float) -> str:
    if not row.baseline or row.mutant is None:
        return "-"
    fuzz, base = median_seconds(row.fuzz), median_seconds(row.baseline)
    if fuzz > budget:
        return "-"
    fuzz = max(fuzz, RESOLUTION)
    if base > budget:
        return f"> {budget / fuzz:.0f}x"
    return f"{max(base, RESOLUTION) / fuzz:.1f}x"


def _oracles(trials: Sequence[Trial]) -> str:
    counts = Counter(t.oracle_rule for t in trials if t.seconds is not None)
    return ", ".join(name for name, _ in counts.most_common()) or "-"


def table(rows: Sequence[Row], budget: float) -> str:
    """The zoo table in Markdown."""
    lines = [
        "| mutant | ZOO | found | oracle/rule | minimised (ops/threads/switches) "
        "| fuzz: s, median [min, max] (cases) | baseline: s, median [min, max] (cases) "
        "| speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        found = sum(t.seconds is not None for t in row.fuzz)
        zoo_id = HISTORY.get(row.mutant, (row.mutant, ""))[0] if row.mutant else "-"
        size = "/".join(map(str, row.shrunk.size)) if row.shrunk else "-"
        lines.append(
            f"| `{row.name}` | {zoo_id} | {found}/{len(row.fuzz)} | {_oracles(row.fuzz)} "
            f"| {size} | {_spread(row.fuzz, budget)} | {_spread(row.baseline, budget)} "
            f"| {_speedup(row, budget)} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Regression cases


def case_file(mutant: str, shrunk: Shrunk) -> str:
    """The text of ``corpora/zoo/<mutant>.case``: the header, then the minimised case."""
    _, history = HISTORY.get(mutant, (mutant, "-"))
    oracle_rule = "/".join(shrunk.signature.split("/")[:2])
    ops, threads, switches = shrunk.size
    return (
        f"# zoo: {mutant}\n"
        f"# historical: {history}\n"
        f"# finds: {oracle_rule}\n"
        f"# The minimised case of the mutant ({ops} ops, {threads} busy threads, {switches} "
        "context switches);\n"
        "# the unmutated engines pass it (vmafuzz zoo --save-cases).\n" + format_case(shrunk.case)
    )


def parse_header(text: str) -> tuple[str, str]:
    """(mutant, oracle/rule) from a regression case's header; ValueError if absent."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# ") and ":" in line:
            key, _, value = line[2:].partition(":")
            fields.setdefault(key.strip(), value.strip())
    if "zoo" not in fields or "finds" not in fields:
        raise ValueError("not a zoo case: no '# zoo:' and '# finds:' header lines")
    return fields["zoo"], fields["finds"]


def save_cases(rows: Sequence[Row], folder: pathlib.Path) -> list[pathlib.Path]:
    """Write each mutant's smallest minimised case that the unmutated engines pass."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for row in rows:
        if row.mutant is None or row.shrunk is None:
            continue
        if check_case(row.shrunk.case).finding is not None:
            continue  # not a regression case: the unmutated engines fail it too
        path = folder / f"{row.mutant}.case"
        path.write_text(case_file(row.mutant, row.shrunk), encoding="utf-8")
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Command line (`vmafuzz zoo`, `python -m fuzz.bench.zoo`)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget",
        type=argtypes.positive_float,
        default=DEFAULT_BUDGET,
        metavar="SECONDS",
        help=f"time per mutant, seed and method ({DEFAULT_BUDGET:g})",
    )
    parser.add_argument(
        "--seeds",
        type=argtypes.positive_int,
        default=DEFAULT_SEEDS,
        metavar="N",
        help=f"seeds per mutant ({DEFAULT_SEEDS})",
    )
    parser.add_argument(
        "--mutant",
        action="append",
        metavar="NAME",
        help="only this mutant (repeatable; default: every mutant)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the random-testing baseline"
    )
    parser.add_argument("--no-control", action="store_true", help="skip the unmutated control")
    parser.add_argument(
        "--save-cases",
        metavar="DIR",
        help="write each mutant's minimised case to DIR/<mutant>.case (regression corpus)",
    )


def run_from_args(args: argparse.Namespace, progress: TextIO) -> list[Row]:
    """The searches `args` (from `add_arguments`) ask for, with their progress on `progress`;
    each mutant's minimised case saved when ``--save-cases`` is given. A bad mutant name or an
    unwritable ``--save-cases`` directory is a `ZooError` before anything runs."""
    import optimized

    mutants = check_mutants(args.mutant or optimized.MUTANTS)
    if args.save_cases:  # found unwritable now, not after the whole run
        try:
            pathlib.Path(args.save_cases).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ZooError(f"--save-cases {args.save_cases}: {e.strerror or e}") from None
    progress.write(
        f"vmafuzz zoo: {len(mutants)} mutants"
        + ("" if args.no_control else " and the control")
        + f", {args.seeds} seeds, {args.budget:g} s each on one core"
        + ("" if args.no_baseline else ", with the random-testing baseline")
        + "\n"
    )
    rows = run_zoo(
        mutants,
        args.seeds,
        args.budget,
        baseline=not args.no_baseline,
        control=not args.no_control,
        progress=progress,
    )
    if args.save_cases:
        for path in save_cases(rows, pathlib.Path(args.save_cases)):
            progress.write(f"wrote {path}\n")
    return rows


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the zoo as `args` asks, print the progress and the table; 0 if it passed."""
    out = out or sys.stdout
    rows = run_from_args(args, out)
    out.write("\n" + table(rows, args.budget))
    ok = passed(rows, args.budget)
    out.write(
        "\nzoo: every mutant found within the budget (median), control clean\n"
        if ok
        else "\nzoo: FAILED: a mutant was not found within the budget, or the control "
        "reported a finding\n"
    )
    return 0 if ok else 1
