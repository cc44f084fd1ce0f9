"""`check_case`: the one function that decides whether a case passes (DESIGN.md §2).

Every front end (the campaign, atheris targets, Hypothesis tests, the corpus replay, `repro`,
`minimize`, the zoo) calls `check_case` and nothing else to judge a case. It runs both engines
and applies every oracle:

1. **Contract**: each engine's own violations (its lockdep/KASAN, MODEL.md §4.2).
2. **Liveness**: deadlock (with the wait-for graph), livelock (step budget), and a migration
   that fails with -EAGAIN (a refcount check that fails a pass) while an extra reference is
   held from a site where v6.6 holds none legitimately (`LEGITIMATE_REF_SITES`).
3. **Linearizability** of each engine's history against the per-page sequential spec
   (`fuzz.linearize`). An undecided search is not a finding; it is counted. Two results the
   per-page spec cannot judge are checked on the whole history (`signal_findings`): killed
   or -EINTR with no SIGKILL sent to the task, and SIGBUS.
4. **Serial lockstep**, when the schedule is ``serial``: the engines agree exactly after every
   operation (result, then the abstract state snapshot).
5. **Cross-engine comparison**: per-operation results and the final memory image. A difference
   where neither engine broke an oracle above is a *benign divergence* (the two kernels took
   different but correct interleavings); otherwise it is already a finding.

A finding against the reference (the trusted baseline) means the spec or the harness is wrong
and is labelled as such. A crash of an engine (an exception out of `run`) is a finding too.

A finding's **signature** is ``oracle/rule/engine/function/op kinds``: stable under
minimisation and used to deduplicate findings.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import hashlib
import pathlib
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import reference
from fuzz import linearize, spec
from fuzz.case import (
    Case,
    Op,
    OpKind,
    Schedule,
    Strategy,
    encode,
    format_op,
    format_schedule,
)
from fuzz.record import (
    RES_HUNG,
    RES_KILLED,
    RES_NOT_RUN,
    RES_SIGBUS,
    STATUS_DEADLOCK,
    STATUS_LIVELOCK,
    STATUS_OK,
    OpRecord,
    RunRecord,
    Violation,
    result_name,
)

PASS = "pass"
BENIGN = "benign"
FINDING = "finding"

ORACLES = ("crash", "contract", "liveness", "linearizability", "lockstep")
# A finding against the baseline comes first: until the spec or harness is fixed, nothing
# reported against the optimized engine in the same case can be trusted.
ENGINES = ("reference", "optimized")


@dataclass(frozen=True)
class Finding:
    """One broken oracle. ``detail`` is extra text for the report (several lines)."""

    oracle: str
    rule: str
    engine: str
    function: str
    op_kinds: tuple[str, ...]
    message: str
    step: int = -1
    task: int = -1
    detail: str = ""

    @property
    def signature(self) -> str:
        kinds = "+".join(self.op_kinds) or "-"
        return f"{self.oracle}/{self.rule}/{self.engine}/{self.function}/{kinds}"

    @property
    def against_reference(self) -> bool:
        return self.engine == "reference"

    def headline(self) -> str:
        where = f" in {self.function}" if self.function and self.function != "-" else ""
        who = (
            "reference engine: a spec or harness defect, the reference is the baseline"
            if self.against_reference
            else f"{self.engine} engine"
        )
        return f"[{self.oracle}] {self.rule}{where} ({who}): {self.message}"


@dataclass(frozen=True)
class Verdict:
    """What `check_case` concluded, with both records for reports."""

    kind: str
    findings: tuple[Finding, ...] = ()
    divergences: tuple[str, ...] = ()
    reference: RunRecord | None = None
    optimized: RunRecord | None = None
    undecided: tuple[str, ...] = field(default=(), compare=False)

    @property
    def finding(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def focus(self, signature: str) -> Verdict:
        """This verdict with the finding of `signature` (if any) first: the one a token, a
        report or a stored finding is about."""
        first = [f for f in self.findings if f.signature == signature][:1]
        rest = [f for f in self.findings if f not in first]
        return replace(self, findings=(*first, *rest))

    def record(self, engine: str) -> RunRecord | None:
        return self.reference if engine == "reference" else self.optimized


# ---------------------------------------------------------------------------------------------
# Running the engines

EngineFn = Callable[[Case, bool], RunRecord]


def _optimized(mutant: str | None, encoded: bytes | None = None) -> EngineFn:
    import optimized

    def run(case: Case, trace: bool) -> RunRecord:
        return optimized.run(case, mutant=mutant, trace=trace, encoded=encoded)

    return run


def _reference(case: Case, trace: bool) -> RunRecord:
    return reference.run(case, trace=trace)


def _crash(engine: str, exc: BaseException) -> Finding:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/reference/" in f.filename or "/optimized/" in f.filename]
    function = ours[-1].name if ours else "native"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if engine == "optimized":
        # The Python frames end in the wrapper for every native panic or EngineError: the
        # message (numbers masked, so the same bug on other objects matches) tells them apart.
        masked = re.sub(r"\d+", "N", first)
        function += "#" + hashlib.sha256(masked.encode()).hexdigest()[:8]
    return Finding(
        "crash",
        type(exc).__name__,
        engine,
        function,
        (),
        first,
        detail="".join(traceback.format_exception(exc)),
    )


class UnknownMutantError(ValueError):
    """A mutant name the optimized engine does not have: a usage error, never a finding."""


def check_mutant(name: str | None) -> str | None:
    """`name` if it is None or one of `optimized.MUTANTS`, else `UnknownMutantError`."""
    import optimized

    if name is not None and name not in optimized.MUTANTS:
        known = ", ".join(optimized.MUTANTS)
        raise UnknownMutantError(f"unknown mutant {name!r} (known: {known})")
    return name


def run_engine(
    engine: str, case: Case, mutant: str | None, trace: bool, encoded: bytes | None = None
) -> RunRecord | Finding:
    """Run one engine; an exception out of it becomes a crash finding. `encoded`: the case's
    canonical bytes, if the caller has them."""
    fn = _reference if engine == "reference" else _optimized(mutant, encoded)
    try:
        return fn(case, trace)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a PanicException derives from BaseException
        return _crash(engine, exc)


# ---------------------------------------------------------------------------------------------
# The oracles


def _op_at(rec: RunRecord, task: int, step: int) -> OpRecord | None:
    """The operation `task` was running at `step`, if any."""
    for o in rec.ops:
        if o.task == task and 0 <= o.invoke <= step and (o.response < 0 or step <= o.response):
            return o
    return None


def _kinds(ops: Iterable[Op | None]) -> tuple[str, ...]:
    return tuple(sorted({o.kind.name.lower() for o in ops if o is not None}))


def contract_findings(engine: str, rec: RunRecord) -> list[Finding]:
    out = []
    for v in rec.violations:
        op = _op_at(rec, v.task, v.step)
        out.append(
            Finding(
                "contract",
                v.rule,
                engine,
                v.function,
                _kinds([op.op if op else None]),
                v.message,
                v.step,
                v.task,
            )
        )
    return out


def _site_function(site: str) -> str:
    return site.split(":", 1)[0] if site else "-"


def liveness_findings(engine: str, rec: RunRecord) -> list[Finding]:
    out = []
    if rec.status == STATUS_DEADLOCK:
        # The signature leaves out idle background tasks (an I/O, RCU or monitor daemon
        # waiting for work: no operation, no holder); the graph in the message keeps them.
        stuck = [
            w for w in rec.wait_for if w.holders or _op_at(rec, w.task, rec.steps) is not None
        ] or list(rec.wait_for)
        functions = sorted({_site_function(w.site) for w in stuck})
        ops = [_op_at(rec, w.task, rec.steps) for w in stuck]
        graph = "\n".join(
            f"task {w.task} in {w.site} waits for {w.obj} held by {list(w.holders) or 'nobody'}"
            for w in rec.wait_for
        )
        out.append(
            Finding(
                "liveness",
                "deadlock",
                engine,
                "+".join(functions) or "-",
                _kinds(o.op if o else None for o in ops),
                f"no task can run while {len(rec.wait_for)} wait: " + graph.replace("\n", "; "),
                rec.steps,
                detail=graph,
            )
        )
    elif rec.status == STATUS_LIVELOCK:
        running = [o for o in rec.ops if o.invoke >= 0 and o.response < 0]
        out.append(
            Finding(
                "liveness",
                "livelock",
                engine,
                "-",
                _kinds(o.op for o in running),
                f"the step budget ran out after {rec.steps} steps with {len(running)} "
                "operations still running",
                rec.steps,
            )
        )
    out.extend(_migration_findings(engine, rec))
    return out


# Where v6.6 legitimately holds a folio reference that a concurrent migration's exact refcount
# check (folio_migrate_mapping) can meet, making that pass fail with -EAGAIN:
LEGITIMATE_REF_SITES = frozenset(
    {
        # do_swap_page(): the swap-cache lookup or the new folio's reference, held across
        # folio_lock_or_retry() ("the caller's folio ref keeps the folio alive").
        "do_swap_page",
        "swap_cache_get_folio",
        "read_swap_cache_async",
        # do_wp_page() takes a reference held across wp_page_copy().
        "do_wp_page",
        "wp_page_copy",
        # move_pages: follow_page(FOLL_GET); isolation by another migration or by reclaim.
        "follow_page",
        "folio_isolate_lru",
        "shrink_folio_list",
        # The mmu_gather holds a zapped page's reference until tlb_finish_mmu().
        "tlb_finish_mmu",
        "zap_pte_range",
        # Device memory: migrate_vma_setup() and the device-private fault's get_page().
        "migrate_vma_collect",
        "dmirror_devmem_fault",
        # Folios not yet mapped belong to their allocator.
        "do_anonymous_page",
        "mfill_atomic_pte_copy",
        "alloc_migration_target",
        "dmirror_devmem_alloc_page",
    }
)


def _migration_findings(engine: str, rec: RunRecord) -> list[Finding]:
    """A failed refcount check in migration (that pass returns -EAGAIN) must be explained by
    legitimate extra references (`LEGITIMATE_REF_SITES`) alone: a reference taken anywhere
    else, e.g. by a task about to wait on a migration entry, fails migrations that should
    succeed (ffa65753c431), even when a legitimate holder happens to be there too."""
    for m in rec.migration_failures:
        sites = [_site_function(site) for _, site, _ in m.holders]
        if sites and all(site in LEGITIMATE_REF_SITES for site in sites):
            continue
        who = ", ".join(
            f"task {t} from {site}" + (" (asleep on this folio)" if waiting else "")
            for t, site, waiting in m.holders
        )
        # The signature names the illegitimate holders only: a legitimate one that happens to
        # be there too does not make it another bug.
        sites = sorted({site for site in sites if site not in LEGITIMATE_REF_SITES}) or ["-"]
        op = _op_at(rec, m.task, m.step)
        return [
            Finding(
                "liveness",
                "migration-eagain",
                engine,
                "+".join(sites),
                _kinds([op.op if op else None]),
                f"a migration pass of {m.folio} failed with -EAGAIN: refcount {m.actual}, "
                f"expected {m.expected}; not every extra reference has a legitimate holder "
                f"({who or 'nobody holds them'})",
                m.step,
                m.task,
            )
        ]
    return []


def linearizability_finding(engine: str, case: Case, rec: RunRecord) -> Finding | str | None:
    """A finding, or a note if the search was undecided, or None."""
    res = linearize.check_record(case, rec)
    if res.status == linearize.UNDECIDED:
        return f"{engine}: {res.describe()}"
    if res.ok:
        return None
    subs = res.history
    culprit = subs[res.culprit] if 0 <= res.culprit < len(subs) else None
    kinds = _kinds(s.op for s in subs)
    function = culprit.op.kind.name.lower() if culprit and culprit.op else "final image"
    what = str(culprit).strip() if culprit else "the final memory image"
    return Finding(
        "linearizability",
        "not-linearizable",
        engine,
        function,
        kinds,
        f"page {res.page}: no sequential order explains {what}",
        res.fail_step,
        detail=res.describe(),
    )


EINTR = -errno.EINTR
_SIGNAL_RESULTS = frozenset({RES_KILLED, EINTR, RES_SIGBUS})


def signal_findings(engine: str, case: Case, rec: RunRecord) -> list[Finding]:
    """Results only a signal explains, which the per-page spec leaves unconstrained (its
    unknown results) as they depend on the whole history, not on the page:

    * ``signal-without-kill``: an op ended killed or with -EINTR (a killable sleep broken by
      a fatal signal), but no SIGKILL had been sent to its task when it returned: no `kill` of
      its thread ran before its response (a kill that ran returned 0, or ended killed when
      the thread killed itself). Setup, post and the uffd monitor run on tasks no kill names.
    * ``sigbus``: an access ended with SIGBUS. Nothing in the model raises it legitimately:
      `handle_userfault` returns it only for a VMA without a uffd context or a fault that may
      not retry (user faults always may), and `do_swap_page` only for a folio whose read
      failed (swap I/O never fails here).

    The first of each is reported."""
    if not any(o.result in _SIGNAL_RESULTS for o in rec.ops):
        return []
    whos = case.all_ops()
    kills: dict[int, int] = {}  # thread -> the invocation step of the first kill that ran
    for o in rec.ops:
        if o.op.kind is OpKind.KILL and o.result in (0, RES_KILLED):
            kills[o.op.target] = min(kills.get(o.op.target, o.invoke), o.invoke)
    out: dict[str, Finding] = {}
    for o in rec.ops:
        if o.result in (RES_KILLED, EINTR) and "signal-without-kill" not in out:
            part, t, _ = whos[o.index] if o.index < len(whos) else ("monitor", 0, None)
            sent = kills.get(t) if part == "thread" else None
            if sent is None or (o.response >= 0 and sent > o.response):
                who = f"t{t}" if part == "thread" else part
                out["signal-without-kill"] = _result_finding(
                    engine,
                    "signal-without-kill",
                    o,
                    f"op {o.index} ({who}: {format_op(o.op)}) ended {result_name(o.result)} "
                    "with no SIGKILL sent to its task",
                )
        if o.result == RES_SIGBUS and "sigbus" not in out:
            out["sigbus"] = _result_finding(
                engine,
                "sigbus",
                o,
                f"op {o.index} ({format_op(o.op)}) ended with SIGBUS, which nothing in the "
                "model raises legitimately",
            )
    return list(out.values())


def _result_finding(engine: str, rule: str, o: OpRecord, message: str) -> Finding:
    """A linearizability finding against the result of the op `o`."""
    kind = o.op.kind.name.lower()
    return Finding("linearizability", rule, engine, kind, (kind,), message, o.response)


def _diff_snapshot(a: object, b: object) -> list[str]:
    fields = ("mms", "folios", "swap", "locks")
    return [f for f in fields if getattr(a, f) != getattr(b, f)]


def lockstep_findings(
    case: Case, ref: RunRecord, opt: RunRecord, blame: str = "optimized"
) -> list[Finding]:
    """Serial schedule: results, then snapshots, must agree after every operation. `blame`
    names the engine a divergence is reported against (the reference when it alone broke an
    oracle: then the baseline is what went wrong)."""
    found = _lockstep_divergence(ref, opt)
    return [replace(f, engine=blame) for f in found]


def _lockstep_divergence(ref: RunRecord, opt: RunRecord) -> list[Finding]:
    for r, o in zip(ref.ops, opt.ops, strict=False):
        if r.index != o.index or r.result != o.result:
            message = f"reference {result_name(r.result)}, optimized {result_name(o.result)}"
            return [_lockstep("result", o.op, message, o)]
    if len(ref.ops) != len(opt.ops):
        message = f"reference ran {len(ref.ops)} ops, optimized {len(opt.ops)}"
        return [_lockstep("ops", None, message, None)]
    by_index = {o.index: o for o in opt.ops}
    for rs, os_ in zip(ref.snapshots, opt.snapshots, strict=False):
        if rs == os_:
            continue
        fields = _diff_snapshot(rs, os_)
        if fields or rs.after != os_.after:
            after = by_index.get(os_.after)
            return [
                _lockstep(
                    fields[0] if fields else "after",
                    after.op if after else None,
                    f"after op {os_.after}, the state differs in {', '.join(fields) or 'order'}",
                    after,
                    detail=f"reference: {rs}\noptimized: {os_}",
                )
            ]
    if len(ref.snapshots) != len(opt.snapshots):
        return [
            _lockstep("snapshots", None, "the engines took different numbers of snapshots", None)
        ]
    return []


def _lockstep(
    field_: str, op: Op | None, message: str, rec: OpRecord | None, detail: str = ""
) -> Finding:
    return Finding(
        "lockstep",
        f"serial-{field_}",
        "optimized",
        op.kind.name.lower() if op else "-",
        _kinds([op]),
        message,
        rec.response if rec else -1,
        rec.task if rec else -1,
        detail,
    )


def divergences(case: Case, ref: RunRecord, opt: RunRecord) -> tuple[str, ...]:
    """What differs between two runs of one case: per-op results and the final image."""
    out = []
    names = case.all_ops()
    for r, o in zip(ref.ops, opt.ops, strict=False):
        if r.part == "monitor" or o.part == "monitor":
            break
        if r.result != o.result:
            part, t, op = names[r.index]
            who = f"t{t}" if part == "thread" else part
            out.append(
                f"op {r.index} ({who}: {format_op(op)}): reference {result_name(r.result)}, "
                f"optimized {result_name(o.result)}"
            )
    for mm, (ri, oi) in enumerate(zip(ref.image, opt.image, strict=False)):
        if ri == oi:
            continue
        if ri is None or oi is None:
            out.append(f"mm{mm}: exists in one engine only")
            continue
        for page, (a, b) in enumerate(zip(ri, oi, strict=False)):
            if a != b:
                out.append(f"mm{mm} page {page}: reference {a}, optimized {b}")
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# The verdict


def skipped_findings(engine: str, case: Case, rec: RunRecord) -> list[Finding]:
    """In a run that ended normally every operation runs, except a task's operations after
    one of them hung (asleep on userfaultfd when the run ended: a thread's, or the main task's
    in setup and post), a thread's once it was killed, and the post part when a thread hung.
    Any other skipped operation was lost. (A
    run the engine stopped on a violation that would corrupt it, MODEL.md §4.2, skips the rest
    by design: that violation is the finding.)"""
    if rec.status != STATUS_OK or rec.extra.get("stopped"):
        return []
    if not any(o.result == RES_NOT_RUN for o in rec.ops):
        return []
    killed = {op.target for _, _, op in case.all_ops() if op.kind is OpKind.KILL}
    hung: set[tuple[str, int]] = set()  # tasks with a hung op: ("thread", t) or ("main", 0)
    for o, (part, t, op) in zip(rec.ops, case.all_ops(), strict=False):
        who = ("thread", t) if part == "thread" else ("main", 0)  # main runs setup and post
        if o.result == RES_NOT_RUN:
            excused = who in hung or (part == "thread" and t in killed)
            # The post part starts once every thread is done: a hung thread holds it back.
            if excused or (part == "post" and any(w[0] == "thread" for w in hung)):
                continue
            return [
                Finding(
                    "liveness",
                    "op-not-run",
                    engine,
                    "-",
                    _kinds([op]),
                    f"{part} op {o.index} ({format_op(op)}) never ran, although its thread "
                    "neither hung nor was killed",
                    rec.steps,
                )
            ]
        if o.result == RES_HUNG:
            hung.add(who)
    return []


def record_problems(case: Case, rec: RunRecord) -> list[str]:
    """Shape checks on a record, independent of the kernel logic: one record per op in case
    order (the uffd monitor's after them), steps in order, results only for ops that ran,
    snapshots exactly under the serial strategy, an image of every page."""
    out = []
    n = case.op_count()
    if [o.index for o in rec.ops[:n]] != list(range(n)):  # the monitor's follow
        out.append(f"{len(rec.ops)} op records for the case's {n} ops, or out of order")
    for o in rec.ops:
        if o.response >= 0 and (o.invoke < 0 or o.response < o.invoke):
            out.append(f"op {o.index}: response {o.response} before invoke {o.invoke}")
        if o.invoke < 0 and o.result != RES_NOT_RUN:
            out.append(f"op {o.index}: never invoked but result {o.result}")
    serial = case.schedule.strategy is Strategy.SERIAL and any(o.invoke >= 0 for o in rec.ops)
    if rec.status == STATUS_OK and serial != bool(rec.snapshots):
        out.append(f"{len(rec.snapshots)} snapshots under strategy {case.schedule.strategy.name}")
    if any(mm is not None and len(mm) != case.nr_pages for mm in rec.image):
        out.append(f"a memory image that is not {case.nr_pages} pages long")
    return out


def engine_findings(engine: str, case: Case, rec: RunRecord, notes: list[str]) -> list[Finding]:
    """The oracles that judge one engine's run on its own (contract, liveness,
    linearizability); an undecided linearizability search adds a line to `notes`. A record
    of the wrong shape is a crash finding, and the other oracles do not read it."""
    bad = record_problems(case, rec)
    if bad:
        return [Finding("crash", "bad-record", engine, "run", (), "; ".join(bad[:3]), rec.steps)]
    found = contract_findings(engine, rec) + liveness_findings(engine, rec)
    found += skipped_findings(engine, case, rec) + signal_findings(engine, case, rec)
    lin = linearizability_finding(engine, case, rec)
    if isinstance(lin, Finding):
        found.append(lin)
    elif lin:
        notes.append(lin)
    return found


def _order(f: Finding) -> tuple[int, int, int]:
    return (ENGINES.index(f.engine) if f.engine in ENGINES else 2, ORACLES.index(f.oracle), f.step)


@contextlib.contextmanager
def cyclic_gc_deferred() -> Iterator[None]:
    """The cyclic garbage collector off while one case is checked. A run allocates enough
    objects to trigger dozens of young-generation collections, each tracing the kernel model
    alive at the time (~15% of `check_case`, ``python -m fuzz.bench.throughput``). The engines
    leave no cycles behind (the reference breaks its own at the end of a run), so afterwards
    the collector just resumes its schedule; a case's garbage is bounded by its step budget."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def check_case(case: Case, *, mutant: str | None = None, trace: bool = False) -> Verdict:
    """Run both engines on `case` and apply every oracle (see the module docstring). An
    unknown `mutant` raises `UnknownMutantError`, an invalid case `CaseFormatError`, before
    anything runs (neither is a finding)."""
    with cyclic_gc_deferred():
        return _judge_case(case, mutant, trace)


def _judge_case(case: Case, mutant: str | None, trace: bool) -> Verdict:
    check_mutant(mutant)
    encoded = encode(case)  # validates the case; the optimized engine runs these bytes
    ref = run_engine("reference", case, None, trace)
    opt = run_engine("optimized", case, mutant, trace, encoded)
    findings: list[Finding] = []
    notes: list[str] = []
    for engine, rec in (("reference", ref), ("optimized", opt)):
        if isinstance(rec, Finding):
            findings.append(rec)
        else:
            findings.extend(engine_findings(engine, case, rec, notes))
    ref_rec = ref if isinstance(ref, RunRecord) else None
    opt_rec = opt if isinstance(opt, RunRecord) else None
    if ref_rec and opt_rec and case.schedule.strategy is Strategy.SERIAL:
        engines = {f.engine for f in findings}
        blame = "reference" if engines == {"reference"} else "optimized"
        findings.extend(lockstep_findings(case, ref_rec, opt_rec, blame))
    if findings:
        findings.sort(key=_order)
        return Verdict(FINDING, tuple(findings), (), ref_rec, opt_rec, tuple(notes))
    assert ref_rec is not None and opt_rec is not None
    diff = divergences(case, ref_rec, opt_rec)
    return Verdict(BENIGN if diff else PASS, (), diff, ref_rec, opt_rec, tuple(notes))


def resolved_case(case: Case, rec: RunRecord) -> Case:
    """`case` with its concurrent schedule resolved to the explicit choices `rec` made."""
    if case.schedule.strategy is Strategy.SERIAL:
        return case
    return replace(case, schedule=Schedule.explicit(tuple(rec.choices)))


def schedule_text(case: Case) -> str:
    return format_schedule(case.schedule).removeprefix("schedule ")


@functools.cache
def build_identity() -> str:
    """The engines' build identity: package version plus hashes of the native module and of
    the Python that decides a verdict, the reference and the oracles (a replay token from
    another build may replay differently)."""
    from importlib import metadata

    import optimized._native as native

    try:
        version = metadata.version("vmafuzz")
    except metadata.PackageNotFoundError:
        version = "unknown"
    native_hash = hashlib.sha256(pathlib.Path(str(native.__file__)).read_bytes()).hexdigest()[:12]
    ref_dir = pathlib.Path(str(reference.__file__)).parent
    h = hashlib.sha256()
    for f in sorted(ref_dir.glob("*.py")):
        h.update(f.read_bytes())
    oracles = hashlib.sha256()
    for module in (spec, linearize, sys.modules[__name__]):
        oracles.update(pathlib.Path(str(module.__file__)).read_bytes())
    return (
        f"vmafuzz {version} native {native_hash} reference {h.hexdigest()[:12]} "
        f"oracles {oracles.hexdigest()[:12]}"
    )


def violation_text(v: Violation) -> str:
    return f"step {v.step} task {v.task}: {v.rule} in {v.function}: {v.message}"
