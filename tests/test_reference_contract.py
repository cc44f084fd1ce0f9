"""The reference engine's contract layer (its lockdep and KASAN) and run outcomes.

Each test breaks one kernel function on purpose (with ``monkeypatch``, never in the engine) in
the way a historical bug did, and checks that the contract layer reports the rule id of
MODEL.md §4.2 from the effect alone, or that the run reports the deadlock with its wait-for
graph. The unbroken engine gives no violation on the same cases.
"""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import pytest

import reference
import reference.device
import reference.fault
import reference.folio
import reference.migrate
import reference.mmap
import reference.swapin
import reference.userfaultfd
import reference.wp
from fuzz.case import Case, OpKind, parse_case
from fuzz.record import STATUS_DEADLOCK, STATUS_OK, RunRecord
from reference.folio import folio_get
from reference.mmap_lock import mmap_read_lock, mmap_read_unlock, mmap_write_lock
from reference.objects import Folio, Mm
from reference.pgtable import pte_offset_map_lock, set_pte_at
from reference.primitives import Current, Gen
from reference.sched import IDLE, ExplicitPolicy, Runtime, Task, TaskGen
from reference.vmf import VM_FAULT_RETRY, Vmf, release_fault_lock

run_module = importlib.import_module("reference.run")  # `reference.run` is the function

MIGRATE_VS_READ = """
pages 2
setup:
  mmap mm0 0+2 rw
  write mm0 0 0x11
thread 0:
  migrate mm0 0
thread 1:
  read mm0 0
schedule random seed=0x5
"""


def rules(rec: RunRecord) -> set[str]:
    return {v.rule for v in rec.violations}


def run_text(text: str, trace: bool = False) -> RunRecord:
    return reference.run(parse_case(text), trace=trace)


def test_unbroken_engine_is_clean_on_the_cases_below() -> None:
    for text in (MIGRATE_VS_READ, TWO_READS, DEVICE_READ, UFFD_READ):
        rec = run_text(text)
        assert rec.status == STATUS_OK and rec.violations == ()


# ---------------------------------------------------------------------------------------------
# Lock hand-off (I1), Z18/Z19-style


TWO_READS = """
pages 1
setup:
  mmap mm0 0+1 rw
thread 0:
  read mm0 0
thread 1:
  read mm0 0
schedule serial
"""


def test_retry_with_the_fault_lock_still_held_breaks_the_handoff_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def broken(vmf: Vmf) -> Gen[int]:
        calls.append(vmf.page)
        yield "broken:handle_pte_fault"
        if len(calls) == 1:
            return VM_FAULT_RETRY  # RETRY, but the fault lock was never released
        return 0

    monkeypatch.setattr(reference.fault, "handle_pte_fault", broken)
    rec = run_text(TWO_READS)
    assert "lock.handoff" in rules(rec)
    assert "lock.recursive" in rules(rec)  # the retry takes mmap_lock again on top


def test_double_release_of_the_fault_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = reference.swapin.folio_lock_or_retry

    def broken(vmf: Vmf, folio: object) -> Gen[int]:
        ret = yield from original(vmf, folio)  # type: ignore[arg-type]
        if ret & VM_FAULT_RETRY:
            mmap_read_unlock(vmf.cur, vmf.mm)  # Z19: an extra mmap_read_unlock()
        return ret

    monkeypatch.setattr(reference.swapin, "folio_lock_or_retry", broken)
    rec = run_text(
        """
        pages 2
        swap async
        setup:
          mmap mm0 0+2 rw
          write mm0 1 0x2a
          madvise_pageout mm0 1+1
          read mm0 1
          madvise_pageout mm0 1+1
        thread 0:
          read mm0 1
        schedule serial
        """
    )
    assert "lock.release-unheld" in rules(rec)


# ---------------------------------------------------------------------------------------------
# Sleeping under the PTL, unlocked PTE writes, locks held at return


def test_sleeping_under_the_ptl_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(c: Current, mm: Mm, op: object) -> Gen[int]:
        table = yield from pte_offset_map_lock(c, mm, 0)
        assert table is not None
        yield from mmap_write_lock(c, mm)  # may sleep, with the PTL held
        return 0

    monkeypatch.setitem(run_module.HANDLERS, OpKind.MADVISE_DONTNEED, broken)
    rec = run_text(
        """
        pages 1
        setup:
          mmap mm0 0+1 rw
          write mm0 0 0x1
        thread 0:
          madvise_dontneed mm0 0+1
        thread 1:
          read mm0 0
        schedule serial
        """
    )
    assert {"lock.sleep-under-ptl", "lock.held-at-return", "lock.held-at-quiescence"} <= rules(rec)


def test_pte_write_without_the_ptl_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(c: Current, mm: Mm, op: object) -> Gen[int]:
        table = mm.pmd[0]
        assert table is not None
        set_pte_at(c, mm, table, 0, table.ptes[0]._replace(young=False), "broken")
        yield "broken"
        return 0

    monkeypatch.setitem(run_module.HANDLERS, OpKind.MADVISE_DONTNEED, broken)
    rec = run_text(
        """
        pages 1
        setup:
          mmap mm0 0+1 rw
          write mm0 0 0x1
        thread 0:
          madvise_dontneed mm0 0+1
        schedule serial
        """
    )
    assert rules(rec) == {"pte.unlocked-write"}


# ---------------------------------------------------------------------------------------------
# Migration waiters (I13a), Z24


def test_migration_waiter_taking_a_reference_is_caught_and_fails_migration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = reference.migrate.migration_entry_wait

    def broken(vmf: Vmf) -> Gen[None]:
        folio = vmf.orig_pte.folio
        assert folio is not None
        folio_get(vmf.cur, folio, "__migration_entry_wait")  # before ffa65753c431
        yield from original(vmf)
        reference.folio.folio_put(vmf.cur, folio, "__migration_entry_wait")

    monkeypatch.setattr(reference.swapin, "migration_entry_wait", broken)
    rec = run_text(MIGRATE_VS_READ)
    assert rules(rec) == {"migration.waiter-holds-ref"}
    # In another interleaving the waiter's reference is there when the migrator checks the
    # refcount: the failure names it, and says its holder sleeps on that very folio.
    rec = run_text(MIGRATE_VS_READ.replace("seed=0x5", "seed=0xe"))
    failure = rec.migration_failures[0]
    assert (failure.expected, failure.actual) == (1, 2)
    assert failure.holders == ((1, "__migration_entry_wait", True),)


# ---------------------------------------------------------------------------------------------
# Device-private memory needs mmap_lock (seed 000), Z-devpriv


DEVICE_READ = """
pages 1
setup:
  mmap mm0 0+1 rw
  write mm0 0 0x5
  to_device mm0 0
thread 0:
  read mm0 0
schedule serial
"""


def test_migrate_to_ram_without_mmap_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = reference.device.do_device_private_fault

    def broken(vmf: Vmf) -> Gen[int]:
        release_fault_lock(vmf)  # as if the fault held only a VMA lock
        yield from original(vmf)
        return VM_FAULT_RETRY

    monkeypatch.setattr(reference.swapin, "do_device_private_fault", broken)
    rec = run_text(DEVICE_READ)
    assert "devpriv.mmap-lock" in rules(rec)


MADVISE = """
pages 2
setup:
  mmap mm0 0+2 rw
  write mm0 0 0x11
thread 0:
  madvise_dontneed mm0 0+2
schedule serial
"""


def test_tree_walk_without_mmap_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """madvise walking the VMA tree with no ``mmap_lock``: the maple tree's lockdep check."""
    assert rules(run_text(MADVISE)) == set()

    def no_lock(cur: Current, mm: Mm) -> Gen[None]:
        return
        yield

    monkeypatch.setattr(reference.mmap, "mmap_read_lock", no_lock)
    monkeypatch.setattr(reference.mmap, "mmap_read_unlock", lambda cur, mm: None)
    rec = run_text(MADVISE)
    assert rules(rec) == {"vma.tree-unlocked"}
    assert {v.function for v in rec.violations} == {"find_vma"}


# ---------------------------------------------------------------------------------------------
# userfaultfd: assert_fault_locked (I5) and no VMA use after the release (I4)


UFFD_READ = """
pages 1
monitor on
setup:
  mmap mm0 0+1 rw
  uffd_register mm0 0+1
thread 0:
  read mm0 0
schedule serial
"""


def test_vma_use_after_the_fault_lock_is_released_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = reference.userfaultfd.handle_userfault

    def broken(vmf: Vmf) -> Gen[int]:
        ret = yield from original(vmf)
        _ = vmf.vma.vm_flags  # after release_fault_lock()
        return ret

    monkeypatch.setattr(reference.fault, "handle_userfault", broken)
    rec = run_text(UFFD_READ)
    assert rules(rec) == {"vma.use-after-unlock"}


def test_handle_userfault_without_the_fault_lock_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = reference.userfaultfd.handle_userfault

    def broken(vmf: Vmf) -> Gen[int]:
        mmap_read_unlock(vmf.cur, vmf.mm)
        vmf.fl_held = False
        yield from mmap_read_lock(vmf.cur, vmf.mm)
        vmf.fl_held = True
        mm = vmf.mm
        mmap_read_unlock(vmf.cur, mm)  # enter handle_userfault unlocked
        return (yield from original(vmf))

    monkeypatch.setattr(reference.fault, "handle_userfault", broken)
    rec = run_text(UFFD_READ)
    assert "uffd.fault-lock" in rules(rec)


# ---------------------------------------------------------------------------------------------
# Exact refcounts at quiescence (I11)


def test_a_leaked_folio_reference_is_caught_at_quiescence(monkeypatch: pytest.MonkeyPatch) -> None:
    original = reference.folio.folio_put

    def leaky(c: Current, folio: object, function: str, site: str | None = None) -> None:
        if function == "wp_page_copy" and isinstance(folio, Folio) and folio.mapcount:
            return  # drop do_wp_page's extra reference on the floor
        original(c, folio, function, site)  # type: ignore[arg-type]

    monkeypatch.setattr(reference.wp, "folio_put", leaky)
    rec = run_text(
        """
        pages 1
        setup:
          mmap mm0 0+1 rw
          write mm0 0 0x1
          fork mm0
        thread 0:
          write mm0 0 0x2
        schedule serial
        """
    )
    assert rules(rec) == {"folio.refcount"}


# ---------------------------------------------------------------------------------------------
# Deadlock reports


def test_recursive_read_lock_behind_a_writer_deadlocks_with_its_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(c: Current, mm: Mm, op: object) -> Gen[int]:
        yield from mmap_read_lock(c, mm)
        yield "broken:between"
        yield from mmap_read_lock(c, mm)  # a writer queued in between: never granted
        return 0

    monkeypatch.setitem(run_module.HANDLERS, OpKind.MADVISE_DONTNEED, broken)
    rec = run_text(
        """
        pages 1
        setup:
          mmap mm0 0+1 rw
        thread 0:
          madvise_dontneed mm0 0+1
        thread 1:
          mmap mm0 0+1 r
        schedule explicit 0 0 1 1 0
        """
    )
    assert rec.status == STATUS_DEADLOCK
    edges = {(w.task, w.site, w.obj, w.holders) for w in rec.wait_for}
    assert (0, "mmap_read_lock:wait", "mm0.mmap_lock", (0,)) in edges
    assert (1, "mmap_write_lock_killable:wait", "mm0.mmap_lock", (0,)) in edges
    # Blocked behind itself: reported once, before it waits.
    assert [v.rule for v in rec.violations].count("lock.recursive") == 1
    assert rec.ops[1].response == -1 and rec.ops[1].invoke >= 0  # pending, not "not run"


def test_timed_sleepers_cannot_starve_the_task_they_poll() -> None:
    """Two tasks poll a flag in timed sleeps; the third sets it after a few steps. With the
    fewest-switches fallback of an exhausted explicit schedule this used to spin forever."""
    rt = Runtime(stall_steps=1000)
    done = [False]

    def poller(task: Task) -> TaskGen:
        while not done[0]:
            rt.sleep_timed(task)
            yield "poll"
        rt.op_end(task)

    def worker() -> TaskGen:
        for _ in range(5):
            yield "work"
        done[0] = True

    for i in range(2):
        t = rt.spawn(f"poller{i}")
        rt.start(t, poller(t))
        rt.op_begin(t)
    rt.start(rt.spawn("worker"), worker())
    rt.policy = ExplicitPolicy([])
    assert rt.run() == IDLE


# ---------------------------------------------------------------------------------------------
# Determinism and the record's shape


def _busy_case() -> Case:
    from fuzz.gen import random_case

    return random_case(12345, threads=(4, 4), ops_per_thread=(8, 8))


def test_same_case_same_record_in_process_and_across_processes() -> None:
    case = _busy_case()
    a, b = reference.run(case, trace=True), reference.run(case, trace=True)
    assert a == b and a.trace and a.lock_events
    code = (
        "import pickle, sys, reference, fuzz.gen as g;"
        "sys.stdout.buffer.write(pickle.dumps(reference.run(g.random_case("
        "12345, threads=(4, 4), ops_per_thread=(8, 8)), trace=True)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert pickle.loads(out) == a


def test_trace_and_lock_events_only_when_asked_snapshots_only_when_serial() -> None:
    case = _busy_case()
    quiet = reference.run(case)
    assert quiet.trace == () and quiet.lock_events == ()
    assert (quiet.snapshots == ()) == (case.schedule.strategy != 0)
    serial = reference.run(parse_case(TWO_READS))
    assert len(serial.snapshots) == 3 and all(s.locks == () for s in serial.snapshots)


# ---------------------------------------------------------------------------------------------
# KASAN: a use after free stops the run


def test_fault_on_a_freed_vma_is_caught_and_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    mmap_module = importlib.import_module("reference.mmap")

    def broken_remove(mm: Mm, vma: object) -> None:
        pass  # Z09-detach-like: the VMA stays in the tree, but munmap frees it below

    monkeypatch.setattr(mmap_module, "vma_iter_remove", broken_remove)
    rec = run_text(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
          munmap mm0 0+2
        thread 0:
          read mm0 0
          read mm0 1
        schedule serial
        """
    )
    assert rules(rec) == {"vma.use-after-free"}
    assert rec.extra["stopped"] and rec.ops[-1].invoke == -1  # the rest is not run


def test_swap_cache_work_on_an_unlocked_folio_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # folio_free_swap() is VM_BUG_ON_FOLIO(!folio_test_locked()) in the kernel.
    def broken(c: Current, mm: Mm, op: object) -> Gen[int]:
        folio = c.kernel.alloc_folio(0)
        yield "broken:alloc"
        reference.swap.folio_free_swap(c, folio)  # never locked
        return 0

    monkeypatch.setitem(run_module.HANDLERS, OpKind.MADVISE_DONTNEED, broken)
    rec = run_text(
        """
        pages 1
        setup:
          mmap mm0 0+1 rw
        thread 0:
          madvise_dontneed mm0 0+1
        schedule serial
        """
    )
    assert ("folio.not-locked", "folio_free_swap") in {(v.rule, v.function) for v in rec.violations}
