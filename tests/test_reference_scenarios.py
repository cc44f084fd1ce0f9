"""Hand-written scenarios for the reference engine, one kernel path each.

Cases are written in the text form of `fuzz.case.parse_case`. Concurrent scenarios use a
``random`` schedule whose seed was chosen once to produce the interleaving under test; each
test asserts that interleaving happened (from the trace or the lock events) before asserting
its outcome, so a change of yield points shows up as a clear failure, not a silent pass.
"""

from __future__ import annotations

import errno

import reference
from fuzz.case import parse_case
from fuzz.linearize import check_record
from fuzz.record import (
    PTE_DEVICE_PRIVATE,
    PTE_NONE,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_ZERO,
    RES_HUNG,
    RES_KILLED,
    RES_NOT_RUN,
    RES_SIGSEGV,
    STATUS_OK,
    PteSnap,
    RunRecord,
)


def run(text: str, trace: bool = False) -> RunRecord:
    case = parse_case(text)
    rec = reference.run(case, trace=trace)
    assert rec.status == STATUS_OK, rec.wait_for
    assert rec.violations == (), rec.violations
    assert check_record(case, rec).ok
    return rec


def results(rec: RunRecord) -> list[int]:
    return [o.result for o in rec.ops]


def sites(rec: RunRecord, task: int) -> list[str]:
    return [s for _, t, s in rec.trace if t == task]


def last_snapshot_ptes(rec: RunRecord, mm: int = 0) -> list[tuple[int, int, bool]]:
    snap = rec.snapshots[-1].mms[mm]
    assert snap is not None
    return [(p.kind, p.data, p.writable) for p in snap.ptes]


# ---------------------------------------------------------------------------------------------
# Anonymous faults, COW


def test_read_maps_zero_page_then_write_allocates() -> None:
    rec = run(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
        thread 0:
          read mm0 0
          write mm0 0 0x5
          read mm0 0
        schedule serial
        """
    )
    assert results(rec)[1:] == [0, 0, 5]
    kinds = [s.mms[0].ptes[0].kind for s in rec.snapshots if s.mms[0] is not None]
    assert kinds == [PTE_NONE, PTE_ZERO, PTE_PRESENT, PTE_PRESENT]
    assert rec.snapshots[-1].folios == ((1, 1),)  # one folio: one reference, one mapping


def test_fork_child_sees_snapshot_and_cow_separates() -> None:
    rec = run(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
          write mm0 0 0x11
          fork mm0
        thread 0:
          write mm0 0 0x22
          read mm1 0
          read mm0 0
        schedule serial
        """
    )
    assert results(rec)[2:] == [1, 0, 0x11, 0x22]
    after_fork = rec.snapshots[2]
    assert after_fork.folios == ((2, 2),)  # shared: two PTEs, write-protected in both
    assert after_fork.mms[0] is not None and not after_fork.mms[0].ptes[0].writable
    assert after_fork.mms[1] is not None and not after_fork.mms[1].ptes[0].writable
    assert rec.snapshots[-1].folios == ((1, 1), (1, 1))  # wp_page_copy gave mm0 its own


def test_cow_reuses_page_once_the_child_is_gone() -> None:
    rec = run(
        """
        pages 1
        setup:
          mmap mm0 0+1 rw
          write mm0 0 0x11
          fork mm0
          munmap mm1 0+1
        thread 0:
          write mm0 0 0x22
        schedule serial
        """
    )
    before, after = rec.snapshots[-2], rec.snapshots[-1]
    assert before.mms[0] is not None and after.mms[0] is not None
    # do_wp_page reused the folio (refcount 1 under the folio lock): same folio, now writable.
    assert before.mms[0].ptes[0].ref == after.mms[0].ptes[0].ref == 0
    assert after.mms[0].ptes[0].writable and after.folios == ((1, 1),)


def test_write_to_read_only_mapping_is_sigsegv() -> None:
    rec = run(
        """
        pages 1
        setup:
          mmap mm0 0+1 r
        thread 0:
          read mm0 0
          write mm0 0 0x1
        schedule serial
        """
    )
    assert results(rec)[1:] == [0, RES_SIGSEGV]


# ---------------------------------------------------------------------------------------------
# munmap, mmap, mprotect, madvise


def test_munmap_splits_zaps_and_frees_page_tables() -> None:
    rec = run(
        """
        pages 8
        setup:
          mmap mm0 0+8 rw
          write mm0 1 0x1
          write mm0 5 0x2
        thread 0:
          munmap mm0 4+4
          read mm0 5
          read mm0 1
        schedule serial
        """
    )
    assert results(rec)[3:] == [0, RES_SIGSEGV, 1]
    snap = rec.snapshots[-1].mms[0]
    assert snap is not None
    assert [(v.start, v.end) for v in snap.vmas] == [(0, 4)]
    assert snap.ptes[5].kind == PTE_NONE and rec.snapshots[-1].folios == ((1, 1),)


def test_map_fixed_replaces_old_contents() -> None:
    rec = run(
        """
        pages 4
        setup:
          mmap mm0 0+4 rw
          write mm0 2 0x9
        thread 0:
          mmap mm0 2+1 rw
          read mm0 2
        schedule serial
        """
    )
    assert results(rec)[2:] == [2, 0]
    snap = rec.snapshots[-1].mms[0]
    assert snap is not None and [(v.start, v.end) for v in snap.vmas] == [(0, 4)]  # re-merged


def test_mprotect_splits_then_merges_back() -> None:
    rec = run(
        """
        pages 4
        setup:
          mmap mm0 0+4 rw
          write mm0 1 0x3
        thread 0:
          mprotect mm0 1+2 r
          write mm0 1 0x4
          mprotect mm0 1+2 rw
          write mm0 1 0x5
          read mm0 1
        schedule serial
        """
    )
    assert results(rec)[2:] == [0, RES_SIGSEGV, 0, 0, 5]
    split = rec.snapshots[2].mms[0]
    assert split is not None
    assert [(v.start, v.end, v.prot) for v in split.vmas] == [(0, 1, 3), (1, 3, 1), (3, 4, 3)]
    merged = rec.snapshots[-1].mms[0]
    assert merged is not None and [(v.start, v.end) for v in merged.vmas] == [(0, 4)]


def test_mprotect_stops_at_a_hole_with_enomem() -> None:
    rec = run(
        """
        pages 4
        setup:
          mmap mm0 0+2 rw
          mmap mm0 3+1 rw
        thread 0:
          mprotect mm0 0+4 r
        schedule serial
        """
    )
    assert results(rec)[-1] == -errno.ENOMEM
    snap = rec.snapshots[-1].mms[0]
    assert snap is not None and [(v.start, v.prot) for v in snap.vmas] == [(0, 1), (3, 3)]


def test_dontneed_makes_later_reads_return_zero() -> None:
    rec = run(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
          write mm0 0 0x7
          write mm0 1 0x8
        thread 0:
          madvise_dontneed mm0 0+1
          read mm0 0
          read mm0 1
        schedule serial
        """
    )
    assert results(rec)[3:] == [0, 0, 8]


def test_stack_grows_down_into_the_gap() -> None:
    rec = run(
        """
        pages 4
        setup:
          mmap mm0 2+2 rw,growsdown
        thread 0:
          write mm0 1 0x6
          read mm0 1
        schedule serial
        """
    )
    assert results(rec)[1:] == [0, 6]
    (growth,) = rec.growths
    assert (growth.mm, growth.start, growth.end, growth.prot, growth.uffd) == (0, 1, 2, 3, False)
    snap = rec.snapshots[-1].mms[0]
    assert snap is not None and [(v.start, v.end, v.anon_vma) for v in snap.vmas] == [(1, 4, True)]


# ---------------------------------------------------------------------------------------------
# Swap


def test_pageout_writes_to_swap_and_a_fault_reads_it_back() -> None:
    rec = run(
        """
        pages 2
        swap sync
        setup:
          mmap mm0 0+2 rw
          write mm0 1 0x2a
        thread 0:
          madvise_pageout mm0 0+2
          read mm0 1
        schedule serial
        """
    )
    out = rec.snapshots[-2]
    assert out.mms[0] is not None
    assert out.mms[0].ptes[1] == PteSnap(PTE_SWAP, 0x2A, False, 0)  # slot 0
    assert out.swap == ((0, 1, False),) and out.folios == ()  # written back and freed
    assert results(rec)[-1] == 0x2A
    assert rec.snapshots[-1].swap == ()  # the skip-swapcache fault freed the slot


def test_async_swapin_drops_the_lock_waits_for_io_and_retries() -> None:
    rec = run(
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
        """,
        trace=True,
    )
    assert results(rec)[-1] == 0x2A
    start = rec.ops[-1].invoke
    ev = [(e.action, e.primitive) for e in rec.lock_events if e.task == 0 and e.step >= start]
    # First attempt: mmap_lock taken, the folio is locked by the I/O, the lock is dropped
    # before waiting (__folio_lock_or_retry), then the retry takes mmap_lock again.
    i = ev.index(("release", "mmap_read_unlock"))
    assert ev[i + 1] == ("wait", "folio_wait_locked")
    assert ("acquire", "mmap_read_trylock") in ev[i + 2 :]
    assert "swap_io:end_io" in sites(rec, 2)  # the I/O daemon completed the read


def test_skip_swapcache_race_waits_on_swapcache_prepare() -> None:
    rec = run(
        """
        pages 2
        swap sync
        setup:
          mmap mm0 0+2 rw
          write mm0 1 0x2a
          madvise_pageout mm0 1+1
        thread 0:
          read mm0 1
        thread 1:
          write mm0 1 0x2b
        schedule random seed=0x3
        """,
        trace=True,
    )
    assert "do_swap_page:vma_alloc_folio" in sites(rec, 0)
    assert "do_swap_page:swapcache_prepare" in sites(rec, 1)  # 13ddaf26be32: back off
    assert results(rec)[-2:] == [0x2A, 0]
    assert rec.snapshots == () and rec.image[0] is not None and rec.image[0][1].value == 0x2B


# ---------------------------------------------------------------------------------------------
# Migration and device memory


def test_fault_on_migration_entry_sleeps_and_refaults_onto_new_folio() -> None:
    rec = run(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
          write mm0 0 0x11
        thread 0:
          migrate mm0 0
        thread 1:
          read mm0 0
        schedule random seed=0x5
        """,
        trace=True,
    )
    assert "migration_entry_wait_on_locked:io_schedule" in sites(rec, 1)
    assert results(rec)[-2:] == [0, 0x11]
    assert rec.migration_failures == ()  # the waiter took no reference


def test_extra_reference_from_wp_page_copy_fails_the_migration_check() -> None:
    rec = run(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
          write mm0 0 0x11
          fork mm0
          munmap mm1 0+2
        thread 0:
          migrate mm0 0
        thread 1:
          write mm0 0 0x22
        schedule random seed=0x2e
        """
    )
    failure = rec.migration_failures[0]
    assert (failure.expected, failure.actual) == (1, 2)
    assert failure.holders == ((1, "do_wp_page", False),)
    assert rec.image[0] is not None and rec.image[0][0].value == 0x22


def test_migrate_results() -> None:
    rec = run(
        """
        pages 4
        setup:
          mmap mm0 0+2 rw
          write mm0 0 0x1
          fork mm0
        thread 0:
          migrate mm0 0
          migrate mm0 1
          migrate mm0 3
        schedule serial
        """
    )
    # Shared after fork: -EACCES. A hole: -EFAULT (FOLL_DUMP). No VMA: -EFAULT.
    assert results(rec)[3:] == [-errno.EACCES, -errno.EFAULT, -errno.EFAULT]


def test_device_private_page_migrates_back_on_cpu_fault() -> None:
    rec = run(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
          write mm0 0 0x44
        thread 0:
          to_device mm0 0
          read mm0 0
          write mm0 0 0x45
        schedule serial
        """
    )
    assert results(rec)[2:] == [0, 0x44, 0]
    on_device = rec.snapshots[2].mms[0]
    assert on_device is not None and on_device.ptes[0].kind == PTE_DEVICE_PRIVATE
    assert on_device.ptes[0].data == 0x44 and on_device.ptes[0].writable
    assert last_snapshot_ptes(rec)[0] == (PTE_PRESENT, 0x45, True)


# ---------------------------------------------------------------------------------------------
# userfaultfd


def test_uffd_fault_blocks_until_copy_and_reads_the_copied_value() -> None:
    rec = run(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
          uffd_register mm0 0+2
        thread 0:
          read mm0 1
        thread 1:
          uffd_copy mm0 1 0x77
        schedule random seed=0x3
        """,
        trace=True,
    )
    assert "handle_userfault:schedule" in sites(rec, 0)
    read, copy = rec.ops[2], rec.ops[3]
    assert (read.result, copy.result) == (0x77, 0)
    assert copy.response < read.response


def test_uffd_monitor_serves_faults() -> None:
    rec = run(
        """
        pages 4
        monitor on
        setup:
          mmap mm0 0+4 rw
          uffd_register mm0 0+4
        thread 0:
          read mm0 3
          write mm0 2 0x9
          read mm0 2
        schedule serial
        """
    )
    assert results(rec)[2:5] == [0xF003, 0, 9]
    monitor = [o for o in rec.ops if o.part == "monitor"]
    assert [(o.op.page, o.op.value, o.result, o.task) for o in monitor] == [
        (3, 0xF003, 0, 4),
        (2, 0xF002, 0, 4),
    ]


def test_uffd_fault_without_server_is_hung_and_the_run_goes_on() -> None:
    rec = run(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
          uffd_register mm0 1+1
        thread 0:
          read mm0 1
          read mm0 0
        thread 1:
          write mm0 0 0x3
        post:
          uffd_copy mm0 1 0x8
        schedule serial
        """
    )
    assert results(rec)[2:] == [RES_HUNG, RES_NOT_RUN, 0, 0]
    assert rec.image[0] is not None and rec.image[0][1].value == 0x8


def test_uffd_unregister_wakes_waiters() -> None:
    rec = run(
        """
        pages 2
        setup:
          mmap mm0 0+2 rw
          uffd_register mm0 0+2
        thread 0:
          read mm0 0
        thread 1:
          uffd_unregister mm0 0+2
        schedule random seed=0x5
        """,
        trace=True,
    )
    assert "handle_userfault:schedule" in sites(rec, 0)
    assert results(rec)[2:] == [0, 0]


# ---------------------------------------------------------------------------------------------
# kill


def test_killed_task_aborts_its_killable_wait_holding_nothing() -> None:
    rec = run(
        """
        pages 4
        setup:
          mmap mm0 0+4 rw
          write mm0 0 0x1
          write mm0 1 0x2
          write mm0 2 0x3
        thread 0:
          mmap mm0 0+3 rw
        thread 1:
          read mm0 3
        thread 2:
          kill t1
        schedule random seed=0x2
        """,
        trace=True,
    )
    mine = [e for e in rec.lock_events if e.task == 1]
    assert mine[-1].action == "wait" and mine[-1].primitive == "mmap_read_lock_killable"
    assert [o.result for o in rec.ops[-2:]] == [RES_KILLED, 0]


def test_kill_before_start_and_after_finish() -> None:
    rec = run(
        """
        pages 1
        setup:
          mmap mm0 0+1 rw
          kill t0
        thread 0:
          write mm0 0 0x1
        thread 1:
          read mm0 0
        post:
          kill t1
        schedule serial
        """
    )
    assert results(rec) == [0, 0, RES_NOT_RUN, 0, -errno.ESRCH]


def test_a_killed_pageout_stops_at_the_next_page_table() -> None:
    """madvise_cold_or_pageout_pte_range() returns -EINTR on a fatal signal, table by table:
    killed after the first table, the walk never takes the second table's lock (and the
    optimized engine stops at the same place)."""
    import optimized

    case = parse_case(
        """
        pages 8
        setup:
          mmap mm0 0+8 rw
          write mm0 0 0x1
          write mm0 4 0x2
        thread 0:
          madvise_pageout mm0 0+8
        thread 1:
          kill t0
        schedule explicit 0 0 0 1
        """
    )
    for engine in (reference, optimized):
        rec = engine.run(case, trace=True)
        pageout = rec.ops[3]
        assert pageout.result == RES_KILLED
        taken = {e.obj for e in rec.lock_events if e.task == pageout.task and "ptl" in e.obj}
        assert taken == {"mm0.pt0.ptl"}, engine.__name__
