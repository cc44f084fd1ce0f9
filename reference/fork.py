"""fork: ``dup_mmap`` and ``copy_page_range`` (kernel/fork.c, mm/memory.c, v6.6; research
§7.3, MODEL.md §8), and ``exit_mmap`` for a child torn down because the parent was killed.

The child gets the lowest unused mm id at ``dup_mm`` time and becomes visible to later
operations when fork returns. ``dup_mmap`` holds the parent's ``mmap_lock`` for write (so no
fault runs in the parent; user accesses through present PTEs still do) and copies each VMA
(without VM_UFFD_MISSING and its ctx, as without UFFD_FEATURE_EVENT_FORK); page tables are
copied only for VMAs with an anon_vma (``vma_needs_copy``), under the child's and the parent's
PTLs, with an ``[I]`` point per entry. COW: present anonymous pages lose AnonExclusive, gain a
reference and a mapcount, and are write-protected in both; swap entries gain a count and lose
their exclusive bit in both; non-readable migration entries and writable device-private
entries become readable in both.
"""

from __future__ import annotations

import errno

from reference.folio import folio_get_ref, page_add_anon_rmap
from reference.mmap import NO_CEILING, _table_ranges, free_pgtables, tlb_finish_mmu, zap_pte_range
from reference.mmap_lock import mmap_write_lock, mmap_write_lock_killable, mmap_write_unlock
from reference.objects import (
    PTE_DEVICE_PRIVATE,
    PTE_MIGRATION,
    PTE_NONE,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_ZERO,
    VM_UFFD_MISSING,
    Mm,
    PageTable,
    Pte,
    Vma,
)
from reference.pgtable import pte_alloc, pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at
from reference.primitives import (
    Current,
    Gen,
    fatal_signal_pending,
    might_sleep,
    spin_lock,
    spin_unlock,
)
from reference.swap import swap_duplicate
from reference.vma import vm_area_dup, vm_area_free, vma_assert_write_locked, vma_iter_store

EAGAIN, EINTR = -errno.EAGAIN, -errno.EINTR


def do_fork(cur: Current, oldmm: Mm) -> Gen[int]:
    """``fork()`` as far as memory goes: the child's mm id, -EAGAIN (no free id) or -EINTR."""
    k = cur.kernel
    cid = next((i for i, m in enumerate(k.mms) if m is None), -1)
    if cid < 0:
        return EAGAIN
    mm = Mm(cid)
    k.add_mm(mm)  # dup_mm(): reserved, not yet visible
    rc = yield from dup_mmap(cur, mm, oldmm)
    if rc or fatal_signal_pending(cur):  # copy_process() gives up: mmput(child)
        yield from exit_mmap(cur, mm)
        k.remove_mm(mm)
        return rc
    mm.visible = True
    return cid


def dup_mmap(cur: Current, mm: Mm, oldmm: Mm) -> Gen[int]:
    """kernel/fork.c:dup_mmap() (v6.6)."""
    if (yield from mmap_write_lock_killable(cur, oldmm)):
        return EINTR
    yield from mmap_write_lock(cur, mm)  # mmap_write_lock_nested(): nobody else sees mm
    oldmm.dup_mmap_task = cur.tid
    retval = 0
    for mpnt in list(oldmm.vmas):
        if fatal_signal_pending(cur):  # Don't duplicate many vmas if we've been oom-killed
            retval = EINTR
            break
        might_sleep(cur, "vm_area_dup")
        yield "dup_mmap:vm_area_dup"
        tmp = vm_area_dup(cur, mpnt, mm)
        # dup_userfaultfd() without UFFD_FEATURE_EVENT_FORK: vm_flags_reset() asserts the
        # child's lock.
        vma_assert_write_locked(cur, mm, "dup_userfaultfd")
        tmp.vm_flags &= ~VM_UFFD_MISSING
        tmp.uffd_ctx = None
        if mpnt.anon_vma is not None:  # anon_vma_fork(): a new anon_vma linked under the parent's
            tmp.anon_vma = cur.kernel.alloc_anon_vma()
            tmp.anon_vma_chain_len = mpnt.anon_vma_chain_len + 1
        vma_iter_store(mm, tmp)
        if mpnt.anon_vma is not None:
            yield from copy_page_range(cur, mm, tmp, oldmm, mpnt)
    oldmm.dup_mmap_task = -1  # loop_out:
    mmap_write_unlock(cur, mm)
    mmap_write_unlock(cur, oldmm)  # flush_tlb_mm(oldmm) first: no TLB in the model
    return retval


def copy_page_range(cur: Current, dst_mm: Mm, dst_vma: Vma, src_mm: Mm, src_vma: Vma) -> Gen[None]:
    """mm/memory.c:copy_page_range() (v6.6): ``copy_pte_range()`` for each table of the VMA;
    asserts the source mm write-locked (the child's is asserted by ``vm_flags_reset``)."""
    vma_assert_write_locked(cur, src_mm, "copy_page_range")
    for t, first, stop in _table_ranges(src_vma.vm_start, src_vma.vm_end):
        if src_mm.pmd[t] is None:
            continue
        yield from pte_alloc(cur, dst_mm, first)
        dst = yield from pte_offset_map_lock(cur, dst_mm, first)
        src = src_mm.pmd[t]
        if dst is None or src is None:
            raise AssertionError("copy_pte_range: a table vanished under mmap_lock")
        yield from spin_lock(cur, src.ptl)  # spin_lock_nested(src_ptl)
        for page in range(first, stop):
            if ptep_get(cur, src, page).kind == PTE_NONE:
                continue
            yield "copy_pte_range:pte"
            copy_one_pte(cur, dst_mm, dst, src_mm, src, page)
        spin_unlock(cur, src.ptl)
        pte_unmap_unlock(cur, dst)


def copy_one_pte(
    cur: Current, dst_mm: Mm, dst: PageTable, src_mm: Mm, src: PageTable, page: int
) -> None:
    """``copy_present_pte`` / ``copy_nonpresent_pte`` for a COW mapping. Both PTLs held."""
    pte = ptep_get(cur, src, page)
    folio = pte.folio
    child: Pte = pte
    if pte.kind == PTE_PRESENT and folio is not None:
        folio_get_ref(cur, folio, "copy_present_pte")
        folio.anon_exclusive = False  # page_try_dup_anon_rmap()
        page_add_anon_rmap(cur, folio, False, "copy_present_pte")
        if pte.writable:
            pte = pte._replace(writable=False)
            set_pte_at(cur, src_mm, src, page, pte, "copy_present_pte")  # ptep_set_wrprotect
        child = pte._replace(young=False)
    elif pte.kind == PTE_ZERO:
        child = pte._replace(young=False)
    elif pte.kind == PTE_SWAP:
        swap_duplicate(cur.kernel.swap, pte.slot)
        if pte.exclusive:
            pte = pte._replace(exclusive=False)  # Mark the swap entry as shared.
            set_pte_at(cur, src_mm, src, page, pte, "copy_nonpresent_pte")
        child = pte
    elif pte.kind == PTE_MIGRATION:
        if pte.writable or pte.exclusive:
            pte = pte._replace(writable=False, exclusive=False)
            set_pte_at(cur, src_mm, src, page, pte, "copy_nonpresent_pte")
        child = pte
    elif pte.kind == PTE_DEVICE_PRIVATE and folio is not None:
        folio_get_ref(cur, folio, "copy_nonpresent_pte")
        folio.anon_exclusive = False
        page_add_anon_rmap(cur, folio, False, "copy_nonpresent_pte")
        if pte.writable:
            pte = pte._replace(writable=False)
            set_pte_at(cur, src_mm, src, page, pte, "copy_nonpresent_pte")
        child = pte
    set_pte_at(cur, dst_mm, dst, page, child, "copy_pte_range")


def exit_mmap(cur: Current, mm: Mm) -> Gen[None]:
    """kernel/fork.c:mmput() → mm/mmap.c:exit_mmap() for a child nobody else can see."""
    yield from mmap_write_lock(cur, mm)
    vmas = list(mm.vmas)
    for v in vmas:
        yield from zap_pte_range(cur, mm, v.vm_start, v.vm_end)
    mm.detached.extend(vmas)
    mm.vmas.clear()
    free_pgtables(cur, mm, vmas, 0, NO_CEILING)
    tlb_finish_mmu(cur)
    for v in vmas:
        vm_area_free(v)
    mmap_write_unlock(cur, mm)
