"""`fuzz.harness`: every oracle fires on a crafted run and stays quiet on a clean one."""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest

import reference
from fuzz import harness
from fuzz.case import Case, CaseFormatError, Op, OpKind, Schedule, parse_case
from fuzz.harness import (
    BENIGN,
    FINDING,
    PASS,
    Finding,
    Verdict,
    check_case,
    contract_findings,
    divergences,
    linearizability_finding,
    liveness_findings,
    lockstep_findings,
)
from fuzz.record import (
    RES_HUNG,
    RES_KILLED,
    RES_NOT_RUN,
    RES_SIGBUS,
    RES_SIGSEGV,
    STATUS_DEADLOCK,
    STATUS_LIVELOCK,
    MigrationFailure,
    OpRecord,
    RunRecord,
    Violation,
    WaitEdge,
)

CASE = parse_case(
    """
pages 4
setup:
  mmap mm0 0+4 rw
  write mm0 1 0x11
thread 0:
  read mm0 1
  write mm0 2 0x22
thread 1:
  read mm0 2
  migrate mm0 1
schedule serial
"""
)


@pytest.fixture(scope="module")
def clean() -> RunRecord:
    rec = reference.run(CASE)
    assert rec.status == "ok" and not rec.violations
    return rec


def _with_result(rec: RunRecord, index: int, result: int) -> RunRecord:
    ops = tuple(o._replace(result=result) if o.index == index else o for o in rec.ops)
    return replace(rec, ops=ops)


def test_contract_quiet_and_firing(clean: RunRecord) -> None:
    assert contract_findings("optimized", clean) == []
    read = next(o for o in clean.ops if o.op.kind is OpKind.READ and o.part == "thread")
    v = Violation("lock.release-unheld", "vma_end_read", "not held", read.invoke, read.task)
    found = contract_findings("optimized", replace(clean, violations=(v,)))
    assert len(found) == 1
    f = found[0]
    assert (f.oracle, f.rule, f.function, f.op_kinds) == (
        "contract",
        "lock.release-unheld",
        "vma_end_read",
        ("read",),
    )
    assert f.signature == "contract/lock.release-unheld/optimized/vma_end_read/read"


def test_liveness_deadlock_and_livelock(clean: RunRecord) -> None:
    assert liveness_findings("optimized", clean) == []
    edges = (
        WaitEdge(0, "vma_start_write:down_write", "vma#1.vm_lock", (1,)),
        WaitEdge(1, "lock_mm_and_find_vma:mmap_read_lock", "mm0.mmap_lock", (0,)),
    )
    dead = liveness_findings("optimized", replace(clean, status=STATUS_DEADLOCK, wait_for=edges))
    assert [f.rule for f in dead] == ["deadlock"]
    assert dead[0].function == "lock_mm_and_find_vma+vma_start_write"
    assert "vma#1.vm_lock held by [1]" in dead[0].detail
    live = liveness_findings("optimized", replace(clean, status=STATUS_LIVELOCK))
    assert [f.rule for f in live] == ["livelock"]


def _failed_migration(clean: RunRecord, site: str) -> RunRecord:
    mig = next(o for o in clean.ops if o.op.kind is OpKind.MIGRATE)
    failure = MigrationFailure(mig.invoke, mig.task, "folio#3", 1, 2, ((0, site, True),))
    return replace(_with_result(clean, mig.index, 1), migration_failures=(failure,))


def test_liveness_migration_eagain(clean: RunRecord) -> None:
    # A reference taken on the way to waiting on a migration entry (the pre-ffa65753c431
    # __migration_entry_wait) is no legitimate reason for a migration to fail.
    found = liveness_findings("optimized", _failed_migration(clean, "__migration_entry_wait"))
    assert [(f.rule, f.function) for f in found] == [("migration-eagain", "__migration_entry_wait")]
    # A swap-in's reference held while it waits for the folio lock is legitimate (v6.6), and
    # so is a COW copy's.
    for site in ("read_swap_cache_async", "do_wp_page:folio_get"):
        assert liveness_findings("optimized", _failed_migration(clean, site)) == []


def test_linearizability_quiet_and_firing(clean: RunRecord) -> None:
    assert linearizability_finding("optimized", CASE, clean) is None
    read = next(o for o in clean.ops if o.op.kind is OpKind.READ and o.part == "thread")
    lost = _with_result(clean, read.index, 0x99)  # a value nobody wrote
    f = linearizability_finding("optimized", CASE, lost)
    assert isinstance(f, harness.Finding)
    assert (f.oracle, f.rule, f.function) == ("linearizability", "not-linearizable", "read")
    assert "page 1" in f.message


def test_lockstep_quiet_and_firing(clean: RunRecord) -> None:
    assert lockstep_findings(CASE, clean, clean) == []
    read = next(o for o in clean.ops if o.op.kind is OpKind.READ and o.part == "thread")
    other = _with_result(clean, read.index, RES_SIGSEGV)
    assert [f.rule for f in lockstep_findings(CASE, clean, other)] == ["serial-result"]
    snaps = list(clean.snapshots)
    snaps[2] = replace(snaps[2], swap=((0, 1, False),))
    found = lockstep_findings(CASE, clean, replace(clean, snapshots=tuple(snaps)))
    assert [f.rule for f in found] == ["serial-swap"]


def test_divergences(clean: RunRecord) -> None:
    assert divergences(CASE, clean, clean) == ()
    mig = next(o for o in clean.ops if o.op.kind is OpKind.MIGRATE)
    other = _with_result(clean, mig.index, -errno.EBUSY)
    (diff,) = divergences(CASE, clean, other)
    assert "migrate mm0 1" in diff and "-EBUSY" in diff


def _patched(monkeypatch: pytest.MonkeyPatch, ref: object, opt: object) -> None:
    def run_engine(
        engine: str, case: Case, mutant: str | None, trace: bool, encoded: bytes | None = None
    ) -> object:
        which = ref if engine == "reference" else opt
        if isinstance(which, BaseException):
            return harness._crash(engine, which)
        return which

    monkeypatch.setattr(harness, "run_engine", run_engine)


def test_check_case_verdicts(monkeypatch: pytest.MonkeyPatch, clean: RunRecord) -> None:
    concurrent = replace(CASE, schedule=Schedule.explicit([1, 0, 1]))
    clean = replace(clean, snapshots=())  # a concurrent run takes no snapshots
    _patched(monkeypatch, clean, clean)
    assert check_case(concurrent).kind == PASS
    mig = next(o for o in clean.ops if o.op.kind is OpKind.MIGRATE)
    _patched(monkeypatch, clean, _with_result(clean, mig.index, -errno.EBUSY))
    v = check_case(concurrent)
    assert v.kind == BENIGN and len(v.divergences) == 1
    _patched(monkeypatch, clean, RuntimeError("bug in optimized._native: panic: boom"))
    v = check_case(concurrent)
    assert v.kind == FINDING
    assert v.finding is not None and v.finding.oracle == "crash"
    assert v.finding.rule == "RuntimeError"


def test_finding_against_the_reference_is_labelled(
    monkeypatch: pytest.MonkeyPatch, clean: RunRecord
) -> None:
    read = next(o for o in clean.ops if o.op.kind is OpKind.READ and o.part == "thread")
    _patched(monkeypatch, _with_result(clean, read.index, 0x99), clean)
    v = check_case(CASE)
    assert v.kind == FINDING and v.finding is not None
    assert v.finding.engine == "reference"
    assert "spec or harness defect" in v.finding.headline()


def test_real_engines_agree_on_the_examples() -> None:
    from fuzz.cli import bundled_examples

    for _, case in bundled_examples():
        v = check_case(case)
        assert v.kind in (PASS, BENIGN), v.finding and v.finding.headline()


def test_op_at_finds_the_running_operation(clean: RunRecord) -> None:
    o: OpRecord = next(o for o in clean.ops if o.part == "thread")
    assert harness._op_at(clean, o.task, o.invoke) == o
    assert harness._op_at(clean, 99, o.invoke) is None


def test_focus_puts_the_named_finding_first() -> None:
    a = Finding("contract", "a", "optimized", "f", ("read",), "m", 1)
    b = Finding("contract", "b", "optimized", "f", ("read",), "m", 2)
    v = Verdict(FINDING, (a, b))
    assert v.focus(b.signature).findings == (b, a)
    assert v.focus("nothing/like/this").findings == (a, b)


def test_an_unknown_mutant_is_a_usage_error_not_a_finding() -> None:
    with pytest.raises(harness.UnknownMutantError, match="unknown mutant 'Z99'"):
        check_case(CASE, mutant="Z99")


def test_an_operation_that_never_ran_needs_a_hang_or_a_kill(clean: RunRecord) -> None:
    assert harness.skipped_findings("optimized", CASE, clean) == []
    last = clean.ops[-1]  # thread 1's migrate
    lost = _with_result(clean, last.index, RES_NOT_RUN)
    (f,) = harness.skipped_findings("optimized", CASE, lost)
    assert (f.oracle, f.rule, f.op_kinds) == ("liveness", "op-not-run", ("migrate",))
    # After the same thread's read hung (asleep on userfaultfd at the end), it is excused.
    hung = _with_result(lost, last.index - 1, RES_HUNG)
    assert harness.skipped_findings("optimized", CASE, hung) == []
    # A run stopped on a model-corrupting violation skips the rest by design.
    stopped = replace(lost, extra={**lost.extra, "stopped": True})
    assert harness.skipped_findings("optimized", CASE, stopped) == []


def _rules(found: list[Finding]) -> list[tuple[str, str, str]]:
    return [(f.oracle, f.rule, f.function) for f in found]


def test_a_killed_result_needs_a_sigkill_sent_before_it(clean: RunRecord) -> None:
    assert harness.signal_findings("optimized", CASE, clean) == []
    read = next(o for o in clean.ops if o.op.kind is OpKind.READ and o.part == "thread")
    for result in (RES_KILLED, -errno.EINTR):
        found = harness.signal_findings("optimized", CASE, _with_result(clean, read.index, result))
        assert _rules(found) == [("linearizability", "signal-without-kill", "read")]
    setup = clean.ops[1]  # the setup write: no kill reaches the main task
    found = harness.signal_findings("reference", CASE, _with_result(clean, 1, RES_KILLED))
    assert _rules(found) == [("linearizability", "signal-without-kill", "write")]
    assert "setup" in found[0].message and found[0].step == setup.response


def test_a_killed_result_is_explained_by_a_kill_of_its_thread_in_time() -> None:
    case = parse_case(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
        thread 0:
          write mm0 0 0x1
          write mm0 1 0x2
        thread 1:
          kill t0
        schedule serial
        """
    )
    ran = reference.run(case)
    # Serial: thread 0 ran to its end before the kill, which found it gone; say it was sent.
    kill = ran.ops[3]._replace(result=0)
    rec = replace(ran, ops=(*ran.ops[:3], kill))
    first, second = rec.ops[1], rec.ops[2]
    assert kill.op.kind is OpKind.KILL and first.response < kill.invoke
    # A result that says killed before the kill was sent is no kill's doing ...
    early = _with_result(rec, first.index, RES_KILLED)
    (f,) = harness.signal_findings("optimized", case, early)
    assert f.rule == "signal-without-kill" and f.step == first.response
    # ... one that returns after it is.
    late = replace(
        rec,
        ops=(
            *rec.ops[:2],
            second._replace(response=kill.invoke + 1, result=RES_KILLED),
            *rec.ops[3:],
        ),
    )
    assert harness.signal_findings("optimized", case, late) == []
    # A kill that found its thread gone (-ESRCH) sent nothing.
    gone = replace(late, ops=(*late.ops[:3], kill._replace(result=-errno.ESRCH)))
    assert _rules(harness.signal_findings("optimized", case, gone)) == [
        ("linearizability", "signal-without-kill", "write")
    ]


def test_a_thread_that_kills_itself_may_end_killed() -> None:
    case = parse_case(
        """
        pages 1
        setup:
          mmap mm0 0+1 rw
        thread 0:
          write mm0 0 0x1
          kill t0
          read mm0 0
        schedule serial
        """
    )
    rec = reference.run(case)
    assert [o.result for o in rec.ops[2:]] == [RES_KILLED, RES_NOT_RUN]
    assert harness.signal_findings("reference", case, rec) == []
    assert check_case(case).kind == PASS


def test_sigbus_is_a_finding(clean: RunRecord) -> None:
    read = next(o for o in clean.ops if o.op.kind is OpKind.READ and o.part == "thread")
    found = harness.signal_findings("optimized", CASE, _with_result(clean, read.index, RES_SIGBUS))
    assert _rules(found) == [("linearizability", "sigbus", "read")]
    (f,) = [
        f
        for f in harness.engine_findings(
            "optimized", CASE, _with_result(clean, read.index, RES_SIGBUS), []
        )
        if f.rule == "sigbus"
    ]
    assert f.step == read.response


def test_a_migration_failure_is_blamed_on_any_illegitimate_holder(clean: RunRecord) -> None:
    holders = ((1, "do_wp_page", False), (2, "migration_entry_wait", True))
    m = MigrationFailure(5, 1, "folio#0", 2, 4, holders)
    (f,) = harness._migration_findings("optimized", replace(clean, migration_failures=(m,)))
    assert f.function == "migration_entry_wait"  # the legitimate do_wp_page is no excuse
    fine = MigrationFailure(5, 1, "folio#0", 2, 3, holders[:1])
    assert (
        harness._migration_findings("optimized", replace(clean, migration_failures=(fine,))) == []
    )


def test_native_crashes_with_different_messages_get_different_signatures() -> None:
    def crash(msg: str) -> str:
        return harness._crash(
            "optimized", RuntimeError(f"bug in optimized._native: {msg}")
        ).signature

    assert crash("panic: index 3 out of range") == crash("panic: index 7 out of range")
    assert crash("panic: index 3 out of range") != crash("panic: folio freed twice")


def test_an_invalid_case_is_a_format_error_not_a_crash_finding() -> None:
    bad = replace(CASE, threads=((Op(OpKind.READ, page=20),),))
    with pytest.raises(CaseFormatError):
        check_case(bad)


def test_a_hung_setup_op_excuses_the_rest_of_the_main_task() -> None:
    # The setup write blocks on userfaultfd with no monitor: the main task never gets to the
    # next setup op or to post, while the thread runs on.
    case = parse_case(
        """
        pages 3
        monitor off
        setup:
          mmap mm0 0+3 rw
          uffd_register mm0 1+2
          write mm0 1 0x102
          madvise_pageout mm0 2+1
        thread 0:
          madvise_pageout mm0 0+2
        post:
          read mm0 1
        schedule serial
        """
    )
    rec = reference.run(case)
    assert [o.result for o in rec.ops][2:4] == [RES_HUNG, RES_NOT_RUN]
    assert harness.skipped_findings("reference", case, rec) == []


def test_a_record_of_the_wrong_shape_is_a_crash_finding(clean: RunRecord) -> None:
    assert harness.record_problems(CASE, clean) == []
    short = replace(clean, image=tuple(mm[:-1] if mm else mm for mm in clean.image))
    (f,) = harness.engine_findings("optimized", CASE, short, [])
    assert (f.oracle, f.rule) == ("crash", "bad-record") and "image" in f.message
    missing = replace(clean, ops=clean.ops[:-1])
    (f,) = harness.engine_findings("optimized", CASE, missing, [])
    assert "op records" in f.message
