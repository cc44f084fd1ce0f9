"""The reference engine's contract layer: one test per MODEL.md §4.2 rule that no other test
shows firing.

Each test breaks one kernel function on purpose (with ``monkeypatch``, never in the engine) the
way a plausible kernel bug would (a missing lock, get, put, unlock or re-check), runs a small
case and checks that the contract layer reports the rule id, and which kernel function it
names, from the effect alone. The unbroken engine gives no violation on the same cases.

Rules the reference cannot break with ``CONFIG_PER_VMA_LOCK=n`` (``lock.retry-nowait-vma``,
``lock.order-vma-mmap``, ``lock.order-vma-folio``, ``vma.freed-locked``; MODEL.md §9) are not
here; ``folio.refcount`` and the rest are in `tests.test_reference_contract`.
"""

from __future__ import annotations

import pytest

import reference
import reference.fault
import reference.folio
import reference.fork
import reference.mmap
import reference.pgtable
import reference.swap
import reference.userfaultfd
import reference.vma
import reference.wp
from fuzz.case import parse_case
from fuzz.record import RES_SIGSEGV, STATUS_OK, RunRecord
from reference.folio import folio_put, folio_trylock
from reference.mmap_lock import (
    mmap_read_lock,
    mmap_read_lock_killable,
    mmap_read_unlock,
    mmap_write_unlock,
)
from reference.objects import Folio, Mm, Vma
from reference.primitives import Current, Gen, holds
from reference.vma import find_vma
from reference.vmf import Vmf


def rules(rec: RunRecord) -> set[str]:
    return {v.rule for v in rec.violations}


def functions(rec: RunRecord, rule: str) -> set[str]:
    """The kernel functions the violations of `rule` name."""
    return {v.function for v in rec.violations if v.rule == rule}


def run_text(text: str, trace: bool = False) -> RunRecord:
    return reference.run(parse_case(text), trace=trace)


# ---------------------------------------------------------------------------------------------
# The cases (each one is clean on the unbroken engine)


UFFD_REGISTER_HALF = """
pages 2
setup:
  mmap mm0 0+2 rw
thread 0:
  uffd_register mm0 0+1
schedule serial
"""

READ_BELOW_A_VMA = """
pages 2
setup:
  mmap mm0 1+1 rw
thread 0:
  read mm0 0
schedule serial
"""

FIRST_WRITE = """
pages 1
setup:
  mmap mm0 0+1 rw
thread 0:
  write mm0 0 0x1
schedule serial
"""

MUNMAP_TAIL = """
pages 3
setup:
  mmap mm0 0+3 rw
  write mm0 0 0x1
  write mm0 1 0x2
  write mm0 2 0x3
thread 0:
  munmap mm0 1+2
schedule serial
"""

MUNMAP_ALL = """
pages 2
setup:
  mmap mm0 0+2 rw
  write mm0 0 0x1
  write mm0 1 0x2
thread 0:
  munmap mm0 0+2
schedule serial
"""

FORK_TWO_VMAS = """
pages 2
setup:
  mmap mm0 0+1 rw
  mmap mm0 1+1 r
  write mm0 0 0x1
  read mm0 1
thread 0:
  fork mm0
schedule serial
"""

REMAP_AND_READ = """
pages 1
setup:
  mmap mm0 0+1 rw
  write mm0 0 0x1
  munmap mm0 0+1
  mmap mm0 0+1 rw
thread 0:
  read mm0 0
schedule serial
"""

DONTNEED = """
pages 1
setup:
  mmap mm0 0+1 rw
  write mm0 0 0x1
thread 0:
  madvise_dontneed mm0 0+1
schedule serial
"""

COW_AFTER_FORK = """
pages 1
setup:
  mmap mm0 0+1 rw
  write mm0 0 0x1
  fork mm0
thread 0:
  write mm0 0 0x2
  read mm1 0
schedule serial
"""

REUSE_AFTER_FORK = """
pages 1
setup:
  mmap mm0 0+1 rw
  write mm0 0 0x1
  fork mm0
  munmap mm1 0+1
thread 0:
  write mm0 0 0x2
schedule serial
"""

# t1's zap holds the PTL and yields at page 0; t0's swap-in of page 1 locks the swap-cache
# folio, then spins on that PTL; t1 then zaps page 1's swap entry (free_swap_and_cache).
ZAP_VS_SWAPIN = """
pages 2
swap async
setup:
  mmap mm0 0+2 rw
  write mm0 0 0x1
  write mm0 1 0x2
  madvise_pageout mm0 1+1
thread 0:
  read mm0 1
thread 1:
  madvise_dontneed mm0 0+2
schedule explicit 1 0 0 1 0 0
"""

ASYNC_PAGEOUT = """
pages 1
swap async
setup:
  mmap mm0 0+1 rw
  write mm0 0 0x1
thread 0:
  madvise_pageout mm0 0+1
schedule serial
"""

SWAPPED_THEN_FORK = """
pages 1
setup:
  mmap mm0 0+1 rw
  write mm0 0 0x1
  madvise_pageout mm0 0+1
thread 0:
  fork mm0
schedule serial
"""

SWAPPED_FORK_THEN_UNMAP_BOTH = """
pages 1
setup:
  mmap mm0 0+1 rw
  write mm0 0 0x1
  madvise_pageout mm0 0+1
thread 0:
  fork mm0
  munmap mm1 0+1
  munmap mm0 0+1
schedule serial
"""

# t0's dup_mmap yields between the two VMAs (the first already copied); t1 then reads page 0.
FORK_VS_FAULT = """
pages 2
setup:
  mmap mm0 0+1 rw
  mmap mm0 1+1 r
thread 0:
  fork mm0
thread 1:
  read mm0 0
schedule explicit 0 0 0 1
"""

CASES = {
    "uffd_register_half": UFFD_REGISTER_HALF,
    "read_below_a_vma": READ_BELOW_A_VMA,
    "first_write": FIRST_WRITE,
    "munmap_tail": MUNMAP_TAIL,
    "munmap_all": MUNMAP_ALL,
    "fork_two_vmas": FORK_TWO_VMAS,
    "remap_and_read": REMAP_AND_READ,
    "dontneed": DONTNEED,
    "cow_after_fork": COW_AFTER_FORK,
    "reuse_after_fork": REUSE_AFTER_FORK,
    "zap_vs_swapin": ZAP_VS_SWAPIN,
    "async_pageout": ASYNC_PAGEOUT,
    "swapped_then_fork": SWAPPED_THEN_FORK,
    "swapped_fork_then_unmap_both": SWAPPED_FORK_THEN_UNMAP_BOTH,
    "fork_vs_fault": FORK_VS_FAULT,
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_unbroken_engine_is_clean_on_the_cases_below(text: str) -> None:
    rec = run_text(text)
    assert rec.status == STATUS_OK and rec.violations == ()
    assert not rec.extra["stopped"]


# ---------------------------------------------------------------------------------------------
# VMAs: write lock (I6), tree membership (I14), anon_vma_prepare (I15)


def test_vma_split_and_flags_change_without_the_write_lock_are_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def read_lock(cur: Current, mm: Mm) -> Gen[None]:
        yield from mmap_read_lock(cur, mm)  # mmap_read_lock() where mmap_write_lock() belongs

    monkeypatch.setattr(reference.userfaultfd, "mmap_write_lock", read_lock)
    monkeypatch.setattr(reference.userfaultfd, "mmap_write_unlock", mmap_read_unlock)
    rec = run_text(UFFD_REGISTER_HALF)
    assert rules(rec) == {"vma.write-unlocked"}
    # The merge attempt, the split of [0,2) at 1 and the flags change of [0,1).
    assert functions(rec, "vma.write-unlocked") == {
        "vma_merge",
        "__split_vma",
        "userfaultfd_register",
    }


def test_fault_on_a_vma_that_does_not_cover_the_page_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(cur: Current, mm: Mm, addr: int) -> Gen[Vma | None]:
        yield from mmap_read_lock(cur, mm)
        return find_vma(cur, mm, addr)  # the `vma->vm_start <= addr` check is missing

    assert run_text(READ_BELOW_A_VMA).ops[-1].result == RES_SIGSEGV
    monkeypatch.setattr(reference.fault, "lock_mm_and_find_vma", broken)
    rec = run_text(READ_BELOW_A_VMA)
    # The fault goes on and maps the zero page at page 0, which no VMA covers: reported when
    # the PTE is installed and again at quiescence.
    assert rules(rec) == {"vma.detached-used", "pte.outside-vma"}
    assert functions(rec, "vma.detached-used") == {"handle_mm_fault"}
    assert functions(rec, "pte.outside-vma") == {"do_anonymous_page", "quiescence"}
    assert rec.ops[-1].result == 0  # the zero page's data, not SIGSEGV


def test_anon_vma_prepare_without_mmap_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = reference.vma.anon_vma_prepare

    def broken(cur: Current, mm: Mm, vma: Vma) -> Gen[None]:
        mmap_read_unlock(cur, mm)  # prepared under the VMA lock alone, without mmap_lock
        yield from original(cur, mm, vma)
        yield from mmap_read_lock(cur, mm)

    monkeypatch.setattr(reference.fault, "anon_vma_prepare", broken)
    rec = run_text(FIRST_WRITE)
    # find_mergeable_anon_vma() looks at the neighbours, a tree walk under the same missing lock.
    assert rules(rec) == {"vma.anon_vma-under-vma-lock", "vma.tree-unlocked"}
    assert functions(rec, "vma.anon_vma-under-vma-lock") == {"anon_vma_prepare"}
    assert functions(rec, "vma.tree-unlocked") == {"vma_next", "vma_prev"}


# ---------------------------------------------------------------------------------------------
# Page tables: PTEs outside every VMA, freed tables (KASAN)


def test_pte_left_outside_every_vma_is_caught_at_quiescence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = reference.mmap.zap_pte_range

    def broken(cur: Current, mm: Mm, start: int, end: int) -> Gen[None]:
        yield from original(cur, mm, start, end - 1)  # off by one: the last page is not zapped

    monkeypatch.setattr(reference.mmap, "zap_pte_range", broken)
    rec = run_text(MUNMAP_TAIL)
    # Page 2's table is kept (page 0 is still mapped), so only the quiescence scan finds it.
    assert rules(rec) == {"pte.outside-vma"}
    assert [(v.function, v.message) for v in rec.violations] == [("quiescence", "mm0 page 2")]


def test_page_table_freed_with_a_pte_in_it_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = reference.mmap.zap_pte_range

    def broken(cur: Current, mm: Mm, start: int, end: int) -> Gen[None]:
        yield from original(cur, mm, start, end - 1)  # off by one: the last page is not zapped

    monkeypatch.setattr(reference.mmap, "zap_pte_range", broken)
    rec = run_text(MUNMAP_ALL)
    # The table goes with the PTE in it: page 1's folio is left with the PTE's reference and
    # mapcount, and nothing maps it at quiescence.
    assert rules(rec) == {"pte.outside-vma", "folio.refcount", "folio.mapcount"}
    assert [(v.function, v.message) for v in rec.violations if v.rule == "pte.outside-vma"] == [
        ("free_pgtables", "mm0 page 1 not none when its table is freed")
    ]
    assert functions(rec, "folio.refcount") == functions(rec, "folio.mapcount") == {"quiescence"}


def test_pte_installed_outside_every_vma_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = reference.mmap._table_ranges
    # copy_page_range() walks one page past the VMA's end (off by one).
    monkeypatch.setattr(
        reference.fork, "_table_ranges", lambda start, end: original(start, end + 1)
    )
    rec = run_text(FORK_TWO_VMAS)
    # [0,1)'s copy also copies page 1's zero-page PTE, before the child has its [1,2).
    assert rules(rec) == {"pte.outside-vma"}
    assert [(v.function, v.message) for v in rec.violations] == [
        ("copy_pte_range", "mm1 page 1 has no VMA")
    ]


def test_use_of_a_freed_page_table_is_caught_and_stops_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = reference.pgtable.free_pte_range

    def broken(cur: Current, mm: Mm, t: int) -> None:
        table = mm.pmd[t]
        original(cur, mm, t)
        mm.pmd[t] = table  # the table is freed, but pmd_clear() is missing

    monkeypatch.setattr(reference.mmap, "free_pte_range", broken)
    rec = run_text(REMAP_AND_READ)
    assert rules(rec) == {"pte.table-use-after-free"}
    assert functions(rec, "pte.table-use-after-free") == {"ptep_get"}  # handle_pte_fault's
    assert rec.extra["stopped"] and rec.ops[-1].response == -1


def test_writable_pte_on_a_folio_shared_with_a_fork_child_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(vmf: Vmf) -> Gen[int]:
        yield "broken:do_wp_page"
        # Reuse the folio without asking whether the page is exclusive.
        return reference.wp.wp_page_reuse(vmf)

    monkeypatch.setattr(reference.fault, "do_wp_page", broken)
    rec = run_text(COW_AFTER_FORK)
    assert rules(rec) == {"pte.writable-shared"}
    assert functions(rec, "pte.writable-shared") == {"wp_page_reuse"}
    assert rec.ops[-1].result == 0x2  # the child reads the parent's store: the effect


# ---------------------------------------------------------------------------------------------
# Folios: use after free (KASAN), mapcount (I13), PG_locked (I11)


def test_double_put_of_a_zapped_folio_is_caught_and_stops_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = reference.folio.folio_ref_from_map

    def broken(cur: Current, folio: Folio, site: str) -> None:
        original(cur, folio, site)
        folio_put(cur, folio, site)  # put at once, and again from the mmu_gather batch

    monkeypatch.setattr(reference.mmap, "folio_ref_from_map", broken)
    rec = run_text(DONTNEED)
    assert rules(rec) == {"folio.use-after-free"}
    assert functions(rec, "folio.use-after-free") == {"tlb_finish_mmu"}
    assert rec.extra["stopped"]


def test_read_through_the_pte_of_a_freed_folio_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # do_wp_page copies without its folio_get(): wp_page_copy puts one reference too many.
    monkeypatch.setattr(reference.wp, "folio_get", lambda cur, folio, site: None)
    rec = run_text(COW_AFTER_FORK)
    # The folio is freed while the child still maps it (its mapcount is 1), then the child's
    # read goes through that PTE.
    assert rules(rec) == {"folio.mapcount", "folio.use-after-free"}
    assert functions(rec, "folio.mapcount") == {"wp_page_copy"}
    assert functions(rec, "folio.use-after-free") == {"user_access"}
    assert rec.extra["stopped"] and rec.ops[-1].response == -1


def test_missing_page_remove_rmap_is_caught_at_quiescence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # wp_page_copy() replaces the parent's PTE without page_remove_rmap() on the old folio.
    monkeypatch.setattr(reference.wp, "page_remove_rmap", lambda cur, folio, function: None)
    rec = run_text(COW_AFTER_FORK)
    assert rules(rec) == {"folio.mapcount"}
    assert [(v.function, v.message) for v in rec.violations] == [
        ("quiescence", "folio#0 mapcount 2, expected 1")
    ]


def test_mapcount_below_zero_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = reference.folio.page_remove_rmap

    def broken(cur: Current, folio: Folio, function: str) -> None:
        original(cur, folio, function)
        original(cur, folio, function)  # page_remove_rmap() twice for one PTE

    monkeypatch.setattr(reference.mmap, "page_remove_rmap", broken)
    rec = run_text(DONTNEED)
    assert rules(rec) == {"folio.mapcount"}
    # Below zero at the zap; then the last put frees it with a non-zero (-1) mapcount.
    assert [v.function for v in rec.violations] == ["zap_pte_range", "tlb_finish_mmu"]
    assert "below zero" in rec.violations[0].message


def test_unlocking_an_unlocked_folio_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = reference.folio.folio_unlock

    def broken(cur: Current, folio: Folio) -> None:
        original(cur, folio)
        original(cur, folio)  # do_wp_page's reuse path unlocks twice

    monkeypatch.setattr(reference.wp, "folio_unlock", broken)
    rec = run_text(REUSE_AFTER_FORK)
    assert rules(rec) == {"folio.unlock-unheld"}
    assert functions(rec, "folio.unlock-unheld") == {"folio_unlock"}


def test_unlocking_a_folio_another_task_locked_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(cur: Current, folio: Folio) -> bool:
        folio_trylock(cur, folio)
        return True  # __try_to_reclaim_swap ignores folio_trylock()'s result

    monkeypatch.setattr(reference.swap, "folio_trylock", broken)
    rec = run_text(ZAP_VS_SWAPIN, trace=True)
    assert rules(rec) == {"folio.unlock-unheld"}
    (v,) = rec.violations
    assert (v.function, v.task) == ("folio_unlock", 1)
    # At that step the folio is locked by t0 (do_swap_page's folio_lock_or_retry).
    name = v.message.split()[0]
    before = [
        (e.action, e.task)
        for e in rec.lock_events
        if e.obj == name and e.primitive == "folio_lock" and e.step <= v.step
    ]
    assert before[-1] == ("acquire", 0)


def test_folio_left_locked_is_caught_at_quiescence(monkeypatch: pytest.MonkeyPatch) -> None:
    # do_wp_page's reuse path returns without folio_unlock().
    monkeypatch.setattr(reference.wp, "folio_unlock", lambda cur, folio: None)
    rec = run_text(REUSE_AFTER_FORK)
    assert rules(rec) == {"folio.locked-at-quiescence"}
    assert functions(rec, "folio.locked-at-quiescence") == {"quiescence"}
    assert "folio#0:locked" in rec.snapshots[-1].locks


def test_folio_left_under_writeback_is_caught_at_quiescence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # end_swap_bio_write() without folio_end_writeback().
    monkeypatch.setattr(reference.swap, "folio_end_writeback", lambda cur, folio: None)
    rec = run_text(ASYNC_PAGEOUT)
    assert rules(rec) == {"folio.locked-at-quiescence"}
    assert functions(rec, "folio.locked-at-quiescence") == {"quiescence"}
    assert "folio#0:writeback" in rec.snapshots[-1].locks


# ---------------------------------------------------------------------------------------------
# Swap slot counts (I11)


def test_swap_count_not_exact_is_caught_at_quiescence(monkeypatch: pytest.MonkeyPatch) -> None:
    # copy_nonpresent_pte() copies the swap entry without swap_duplicate().
    monkeypatch.setattr(reference.fork, "swap_duplicate", lambda si, slot: None)
    rec = run_text(SWAPPED_THEN_FORK)
    assert rules(rec) == {"swap.count"}
    assert [(v.function, v.message) for v in rec.violations] == [
        ("quiescence", "slot 0: count 1 has_cache False, 2 swap PTEs, cached False")
    ]


def test_swap_count_below_zero_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same missing swap_duplicate(): the second zap of the entry frees the slot once more.
    monkeypatch.setattr(reference.fork, "swap_duplicate", lambda si, slot: None)
    rec = run_text(SWAPPED_FORK_THEN_UNMAP_BOTH)
    assert rules(rec) == {"swap.count"}
    assert [(v.function, v.message) for v in rec.violations] == [
        ("swap_free", "slot 0 count below zero")
    ]


# ---------------------------------------------------------------------------------------------
# fork excludes faults on the parent (I16)


def test_fault_on_the_parent_during_dup_mmap_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def read_lock(cur: Current, mm: Mm) -> Gen[int]:
        # dup_mmap() takes the parent's mmap_lock for read: faults on it are not excluded.
        return (yield from mmap_read_lock_killable(cur, mm))

    def unlock(cur: Current, mm: Mm) -> None:  # the matching unlock (the child's stays write)
        if holds(cur, mm.mmap_lock, "r"):
            mmap_read_unlock(cur, mm)
        else:
            mmap_write_unlock(cur, mm)

    monkeypatch.setattr(reference.fork, "mmap_write_lock_killable", read_lock)
    monkeypatch.setattr(reference.fork, "mmap_write_unlock", unlock)
    rec = run_text(FORK_VS_FAULT)
    assert rules(rec) == {"fork.exclusion"}
    (v,) = rec.violations
    assert (v.function, v.task, v.message) == (
        "handle_mm_fault",
        1,
        "fault on mm0 while t0 runs dup_mmap",
    )
    assert [op.result for op in rec.ops[-2:]] == [1, 0]  # the child is mm1; the read gives 0
