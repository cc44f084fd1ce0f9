"""The finding report, as a kernel developer wants to read it.

Layout: the violated rule in one line; the case in a few lines; then both engines side by side,
one column per (thread, engine) and one row per step, each cell the yield point the task
reached and the locks it took (``+``) or dropped (``-``), with the locks it holds after the step
and, in the optimized engine, ``mm_lock_seq`` / ``vm_lock_seq``. Only the relevant window is
shown (the steps leading to the first violation, marked ``▶``), then the oracle's own detail,
then the one command that replays the finding.

The two engines have different yield points, so their step numbers are their own: a row pairs
what each engine did at that step of its own run.
"""

from __future__ import annotations

import re
from collections import defaultdict

from fuzz.case import Case, format_op
from fuzz.harness import Finding, Verdict, schedule_text
from fuzz.record import LockEvent, RunRecord, result_name

CELL = 28
WINDOW = 18
AFTER = 2

# Lock objects as the engines name them, and as the report writes them.
_ABBREV = (
    (re.compile(r"^mm(\d+)\.mmap_lock$"), r"ML\1"),
    (re.compile(r"^mm(\d+)\.page_table_lock$"), r"PTLK\1"),
    (re.compile(r"^vma#(\d+)\.vm_lock$"), r"VL#\1"),
    (re.compile(r"^mm(\d+)\.pt(\d+)\.ptl$"), r"PTL\1.\2"),
    (re.compile(r"^folio#(\d+)$"), r"PG#\1"),
)
LEGEND = (
    "ML mmap_lock, VL per-VMA lock, PTL page-table lock, PTLK mm->page_table_lock, PG folio lock",
    "+taken -released ~waits !trylock failed v downgraded ✗violation; [mm_lock_seq,vm_lock_seq];"
    " |holds",
)


def abbrev(obj: str) -> str:
    for pat, rep in _ABBREV:
        if pat.match(obj):
            return pat.sub(rep, obj)
    return obj


def _mode(mode: str) -> str:
    return {"r": ".r", "w": ".w", "io": ".io"}.get(mode, "")


class _Holdings:
    """Replays lock events to know what each task holds after each step."""

    def __init__(self, events: tuple[LockEvent, ...]) -> None:
        self.by_step: dict[int, list[LockEvent]] = defaultdict(list)
        for e in events:
            self.by_step[e.step].append(e)
        self.held: dict[int, dict[str, str]] = defaultdict(dict)
        self.step = 0

    def advance(self, step: int) -> list[LockEvent]:
        """Apply every event up to `step`; return those of `step` itself."""
        for s in range(self.step + 1, step + 1):
            for e in self.by_step.get(s, ()):
                self._apply(e)
        self.step = max(self.step, step)
        return self.by_step.get(step, [])

    def _apply(self, e: LockEvent) -> None:
        held = self.held[e.task]
        key = abbrev(e.obj)
        if e.action == "acquire":
            held[key] = _mode(e.mode)
        elif e.action == "release":
            held.pop(key, None)
        elif e.action == "downgrade":
            held[key] = ".r"

    def holding(self, task: int) -> str:
        return " ".join(f"{k}{v}" for k, v in sorted(self.held[task].items()))


def _event_text(e: LockEvent) -> str:
    """``+VL#3.r[1,0]``: the change, and ``[mm_lock_seq, vm_lock_seq]`` after it if known."""
    sign = {"acquire": "+", "release": "-", "wait": "~", "trylock_fail": "!", "downgrade": "v"}
    seq = "[" + ",".join(map(str, e.seq)) + "]" if e.seq else ""
    return f"{sign.get(e.action, '?')}{abbrev(e.obj)}{_mode(e.mode)}{seq}"


def _fit(text: str, width: int = CELL) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _threads(case: Case, finding: Finding | None) -> list[int]:
    """The tasks worth a column: up to three threads with operations, always including the
    task the finding names (a fourth thread, the main task of setup and post, a daemon)."""
    tasks = [t for t, ops in enumerate(case.threads) if ops][:3]
    if finding is not None and finding.task >= 0 and finding.task not in tasks:
        tasks = [*tasks[:2], finding.task]
    return tasks


def _label(case: Case, task: int) -> str:
    return f"t{task}" if task < len(case.threads) else f"task {task}"


def _window(finding: Finding | None, rec: RunRecord | None) -> tuple[int, int]:
    last = rec.steps if rec else 0
    end = finding.step if finding and finding.step > 0 else last
    end = min(end + AFTER, last) if last else end + AFTER
    return max(1, end - WINDOW), end


Cell = tuple[str, str]


def _cells(rec: RunRecord | None, tasks: list[int], lo: int, hi: int) -> dict[int, dict[int, Cell]]:
    """step -> task -> (yield point reached, lock changes and holdings after the step); a
    contract violation in the step is marked ``✗rule``."""
    out: dict[int, dict[int, Cell]] = defaultdict(dict)
    if rec is None:
        return out
    hold = _Holdings(rec.lock_events)
    broken: dict[tuple[int, int], str] = {}
    for v in rec.violations:
        broken.setdefault((v.step, v.task), f"✗{v.rule} ")
    for step, task, site in rec.trace:
        if step > hi:
            break
        events = hold.advance(step)
        if step < lo or task not in tasks:
            continue
        changes = " ".join(_event_text(e) for e in events if e.task == task)
        held = hold.holding(task)
        locks = broken.get((step, task), "") + (f"{changes} |{held}" if held else changes)
        out[step][task] = (site or "(returned)", locks.strip())
    return out


def _table(case: Case, verdict: Verdict, finding: Finding | None) -> list[str]:
    threads = _threads(case, finding)
    failing = verdict.record(finding.engine) if finding else verdict.optimized
    lo, hi = _window(finding, failing)
    ref = _cells(verdict.reference, threads, lo, hi)
    opt = _cells(verdict.optimized, threads, lo, hi)
    header = " step │ " + " │ ".join(
        _fit(f"{_label(case, t)} {eng}").ljust(CELL)
        for t in threads
        for eng in ("reference", "optimized")
    )
    lines = [header, "─" * len(header)]
    mark = finding.step if finding else -1
    for step in range(lo, hi + 1):
        cells = [c.get(step, {}).get(t, ("", "")) for t in threads for c in (ref, opt)]
        if not any(site for site, _ in cells) and step != mark:
            continue
        flag = "▶" if step == mark else " "
        lines.append(f"{flag}{step:>4} │ " + " │ ".join(_fit(s).ljust(CELL) for s, _ in cells))
        if any(locks for _, locks in cells):
            lines.append("      │ " + " │ ".join(_fit(k).ljust(CELL) for _, k in cells))
    return lines


def _case_lines(case: Case) -> list[str]:
    lines = []
    if case.setup:
        lines.append("  setup: " + "; ".join(format_op(o) for o in case.setup))
    for t, ops in enumerate(case.threads):
        lines.append(f"  t{t}: " + "; ".join(format_op(o) for o in ops))
    if case.post:
        lines.append("  post: " + "; ".join(format_op(o) for o in case.post))
    lines.append(
        f"  pages {case.nr_pages}, swap {'async' if case.swap_async else 'sync'}, "
        f"monitor {'on' if case.uffd_monitor else 'off'}, schedule {_fit(schedule_text(case), 60)}"
    )
    return lines


def _results(case: Case, rec: RunRecord | None) -> str:
    if rec is None:
        return "(did not run)"
    return ", ".join(f"#{o.index} {result_name(o.result)}" for o in rec.ops if o.part != "monitor")


def render(case: Case, verdict: Verdict, replay: str) -> str:
    """The report for `verdict` on `case` (run with ``trace=True``); `replay` is the command."""
    finding = verdict.finding
    head = finding.headline() if finding else f"no finding: the case {verdict.kind}es"
    lines = [f"vmafuzz: {head}"]
    if finding:
        lines.append(f"signature: {finding.signature}")
    lines.append(f"case ({len(case.threads)} threads, {case.op_count()} ops):")
    lines.extend(_case_lines(case))
    lines.append(f"results: reference {_results(case, verdict.reference)}")
    lines.append(f"         optimized {_results(case, verdict.optimized)}")
    if verdict.reference is not None or verdict.optimized is not None:
        lines.append("steps (each engine numbers its own; ▶ marks the first violation):")
        lines.extend(_table(case, verdict, finding))
        lines.extend(LEGEND)
    if finding and finding.detail:
        lines.append("detail:")
        lines.extend("  " + ln for ln in finding.detail.splitlines()[:20])
    for extra in verdict.findings[1:4]:
        lines.append(f"also: {extra.headline()}")
    lines.append(f"replay: {replay}")
    return "\n".join(lines) + "\n"
