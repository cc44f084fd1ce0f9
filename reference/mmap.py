"""Address-space writers: mmap (MAP_FIXED anonymous private), munmap, mprotect,
madvise(MADV_DONTNEED), and the zap / free_pgtables / mmu_gather machinery they share
(mm/mmap.c, mm/mprotect.c, mm/madvise.c, mm/memory.c, v6.6; research §7).

munmap, mmap and mprotect hold ``mmap_lock`` for write; munmap downgrades it to read after
removing the VMAs from the tree and zaps with the read lock, concurrently with faults on other
VMAs. DONTNEED zaps under ``mmap_lock`` for read, racing with faults on the same VMA: every
fault re-validates its PTE under the PTL. A zap clears each PTE under its PTL with one ``[I]``
point per entry; a present page's reference goes to the task's mmu_gather and is put by
``tlb_finish_mmu`` at the end of the zap.
"""

from __future__ import annotations

import errno

from reference.folio import folio_put, folio_put_ref, folio_ref_from_map, page_remove_rmap
from reference.mmap_lock import (
    mmap_read_lock,
    mmap_read_unlock,
    mmap_write_downgrade,
    mmap_write_lock_killable,
    mmap_write_unlock,
)
from reference.objects import (
    NR_TABLES,
    PTE_DEVICE_PRIVATE,
    PTE_MIGRATION,
    PTE_NONE,
    PTE_NONE_ENTRY,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_ZERO,
    PTRS_PER_TABLE,
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_GROWSDOWN,
    VM_WRITE,
    Mm,
    PageTable,
    Vma,
)
from reference.pgtable import (
    free_pte_range,
    pte_offset_map_lock,
    pte_unmap_unlock,
    ptep_get,
    set_pte_at,
)
from reference.primitives import Current, Gen
from reference.swap import free_swap_and_cache
from reference.vma import (
    can_vma_merge,
    find_vma,
    split_vma,
    vm_area_free,
    vma_assert_write_locked,
    vma_expand,
    vma_iter_remove,
    vma_iter_store,
    vma_merge,
    vma_prev,
    vma_prev_of,
)

EINTR, ENOMEM, EINVAL = -errno.EINTR, -errno.ENOMEM, -errno.EINVAL
NO_CEILING = 1 << 30


def _table_ranges(start: int, end: int) -> list[tuple[int, int, int]]:
    """(table, first page, end page) for every table intersecting ``[start, end)``."""
    out = []
    page = start
    while page < end:
        t = page // PTRS_PER_TABLE
        stop = min(end, (t + 1) * PTRS_PER_TABLE)
        out.append((t, page, stop))
        page = stop
    return out


# ---------------------------------------------------------------------------------------------
# Zap and the mmu_gather


def zap_pte_range(cur: Current, mm: Mm, start: int, end: int) -> Gen[None]:
    """mm/memory.c:zap_pte_range() (v6.6) over ``[start, end)``: each PTE cleared under its
    PTL (an ``[I]`` point before each), present pages' references into the mmu_gather."""
    for t, first, stop in _table_ranges(start, end):
        if mm.pmd[t] is None:
            continue
        table = yield from pte_offset_map_lock(cur, mm, first)
        if table is None:
            continue
        for page in range(first, stop):
            if ptep_get(cur, table, page).kind == PTE_NONE:
                continue
            yield "zap_pte_range:pte"
            zap_one_pte(cur, mm, table, page)
        pte_unmap_unlock(cur, table)


def zap_one_pte(cur: Current, mm: Mm, table: PageTable, page: int) -> None:
    """Clear one PTE (``ptep_get_and_clear_full``) and release what it held. PTL held."""
    pte = ptep_get(cur, table, page)
    kind, folio = pte.kind, pte.folio
    set_pte_at(cur, mm, table, page, PTE_NONE_ENTRY, "zap_pte_range")
    if kind == PTE_PRESENT and folio is not None:
        page_remove_rmap(cur, folio, "zap_pte_range")
        folio_ref_from_map(cur, folio, "zap_pte_range")  # __tlb_remove_page()
        cur.tlb.append(folio)
    elif kind == PTE_SWAP:
        free_swap_and_cache(cur, pte.slot)
    elif kind == PTE_DEVICE_PRIVATE and folio is not None:
        page_remove_rmap(cur, folio, "zap_pte_range")
        folio_put_ref(cur, folio, "zap_pte_range")
    # PTE_ZERO and PTE_MIGRATION: just cleared (the migrator will not find the entry).
    assert kind in (PTE_PRESENT, PTE_SWAP, PTE_DEVICE_PRIVATE, PTE_ZERO, PTE_MIGRATION)


def tlb_finish_mmu(cur: Current) -> None:
    """Put every page reference the zap gathered (after the TLB flush)."""
    for folio in cur.tlb:
        folio_put(cur, folio, "tlb_finish_mmu")
    cur.tlb.clear()


def free_pgtables(cur: Current, mm: Mm, vmas: list[Vma], floor: int, ceiling: int) -> None:
    """mm/memory.c:free_pgtables() (v6.6): unlink the VMAs from their anon_vmas and free every
    table that intersects them and lies wholly inside ``[floor, ceiling)``."""
    for v in vmas:
        if v in mm.detached:
            mm.detached.remove(v)  # unlink_anon_vmas()
    for t in range(NR_TABLES):
        lo, hi = t * PTRS_PER_TABLE, (t + 1) * PTRS_PER_TABLE
        if lo >= floor and hi <= ceiling and any(v.vm_start < hi and lo < v.vm_end for v in vmas):
            free_pte_range(cur, mm, t)


# ---------------------------------------------------------------------------------------------
# munmap


def sys_munmap(cur: Current, mm: Mm, start: int, npages: int) -> Gen[int]:
    """The munmap syscall (v6.6): ``SYSCALL_DEFINE2(munmap)`` is mm/mmap.c:__vm_munmap(addr,
    len, unlock=true): ``mmap_write_lock_killable``, ``do_vmi_munmap``, which downgrades."""
    end = start + npages
    if end > cur.kernel.nr_pages:
        return EINVAL
    if (yield from mmap_write_lock_killable(cur, mm)):
        return EINTR
    yield from do_vmi_munmap(cur, mm, start, end, True)
    return 0


def do_vmi_munmap(cur: Current, mm: Mm, start: int, end: int, unlock: bool) -> Gen[None]:
    """mm/mmap.c:do_vmi_munmap() (v6.6). Called with ``mmap_lock`` write-held; with `unlock`
    it returns with nothing held, else still write-held."""
    vma = find_vma(cur, mm, start)
    if vma is None or vma.vm_start >= end:
        if unlock:
            mmap_write_unlock(cur, mm)
        return
    yield from do_vmi_align_munmap(cur, mm, vma, start, end, unlock)


def do_vmi_align_munmap(
    cur: Current, mm: Mm, vma: Vma, start: int, end: int, unlock: bool
) -> Gen[None]:
    """mm/mmap.c:do_vmi_align_munmap() (v6.6): split at the edges, detach the VMAs, clear them
    from the tree, (downgrade,) zap, free page tables, free the VMAs. Caller holds
    ``mmap_lock`` for write."""
    vma_assert_write_locked(cur, mm, "do_vmi_align_munmap")
    if start > vma.vm_start:
        split_vma(cur, mm, vma, start, True)
    detached: list[Vma] = []
    nxt: Vma | None = vma
    while nxt is not None and nxt.vm_start < end:
        if nxt.vm_end > end:
            split_vma(cur, mm, nxt, end, False)
        detached.append(nxt)  # vma_start_write() + vma_mark_detached(): no-ops here
        nxt = find_vma(cur, mm, nxt.vm_end)
    for v in detached:  # vma_iter_clear_gfp(): point of no return
        vma_iter_remove(mm, v)
        mm.detached.append(v)
    if unlock:
        mmap_write_downgrade(cur, mm)
    prev = vma_prev_of(cur, mm, start)
    nxt = find_vma(cur, mm, end)
    yield from unmap_region(cur, mm, detached, prev, nxt)
    for v in detached:  # remove_mt() → remove_vma() → vm_area_free()
        vm_area_free(v)
    if unlock:
        mmap_read_unlock(cur, mm)


def unmap_region(
    cur: Current, mm: Mm, vmas: list[Vma], prev: Vma | None, nxt: Vma | None
) -> Gen[None]:
    """mm/mmap.c:unmap_region() (v6.6): ``unmap_vmas`` (zap), then ``free_pgtables`` between
    the neighbours' bounds."""
    for v in vmas:  # unmap_vmas()
        yield from zap_pte_range(cur, mm, v.vm_start, v.vm_end)
    floor = prev.vm_end if prev is not None else 0
    ceiling = nxt.vm_start if nxt is not None else NO_CEILING
    free_pgtables(cur, mm, vmas, floor, ceiling)
    tlb_finish_mmu(cur)


# ---------------------------------------------------------------------------------------------
# mmap


def vm_mmap_pgoff(cur: Current, mm: Mm, addr: int, npages: int, prot: int) -> Gen[int]:
    """mm/util.c:vm_mmap_pgoff() (v6.6) for ``mmap(addr, n, prot,
    MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS[|MAP_GROWSDOWN])``: ``mmap_write_lock_killable``, then
    ``do_mmap`` -> ``mmap_region`` with the lock held, then unlock."""
    end = addr + npages
    if end > cur.kernel.nr_pages:
        return ENOMEM
    flags = prot & (VM_ACCESS_FLAGS | VM_GROWSDOWN)
    if flags & VM_WRITE:  # accountable_mapping()
        flags |= VM_ACCOUNT
    if (yield from mmap_write_lock_killable(cur, mm)):
        return EINTR
    yield from mmap_region(cur, mm, addr, end, flags)
    mmap_write_unlock(cur, mm)
    return addr


def mmap_region(cur: Current, mm: Mm, addr: int, end: int, flags: int) -> Gen[None]:
    """mm/mmap.c:mmap_region() (v6.6): unmap the range, then expand a neighbour or insert a
    new VMA. Caller holds ``mmap_lock`` for write."""
    vma_assert_write_locked(cur, mm, "mmap_region")
    yield from do_vmi_munmap(cur, mm, addr, end, False)
    nxt = find_vma(cur, mm, addr)
    prev = vma_prev_of(cur, mm, addr)
    vma: Vma | None = None
    merge_start, merge_end = addr, end
    if nxt is not None and nxt.vm_start == end and can_vma_merge(nxt, flags, None, None):
        merge_end, vma = nxt.vm_end, nxt
    if prev is not None and prev.vm_end == addr:
        anon_vma = vma.anon_vma if vma is not None else None
        ctx = vma.uffd_ctx if vma is not None else None
        if can_vma_merge(prev, flags, anon_vma, ctx):
            merge_start, vma = prev.vm_start, prev
    if vma is not None:
        vma_expand(cur, mm, vma, merge_start, merge_end, nxt)
        return
    vma_iter_store(mm, cur.kernel.alloc_vma(mm, addr, end, flags))


# ---------------------------------------------------------------------------------------------
# mprotect


def do_mprotect_pkey(cur: Current, mm: Mm, start: int, npages: int, prot: int) -> Gen[int]:
    """mm/mprotect.c:do_mprotect_pkey() (v6.6): -ENOMEM at the first hole (the VMAs before
    it are already changed)."""
    end = start + npages
    if (yield from mmap_write_lock_killable(cur, mm)):
        return EINTR
    vma = find_vma(cur, mm, start)
    if vma is None or vma.vm_start >= end or vma.vm_start > start:
        mmap_write_unlock(cur, mm)
        return ENOMEM
    prev = vma if start > vma.vm_start else vma_prev(cur, mm, vma)
    error = 0
    nstart, tmp = start, vma.vm_start
    next_vma: Vma | None = vma
    while next_vma is not None and next_vma.vm_start < end:
        if next_vma.vm_start != tmp:
            error = ENOMEM
            break
        newflags = (prot & VM_ACCESS_FLAGS) | (next_vma.vm_flags & ~VM_ACCESS_FLAGS)
        tmp = min(next_vma.vm_end, end)
        vma = yield from mprotect_fixup(cur, mm, next_vma, prev, nstart, tmp, newflags)
        prev = vma
        tmp = nstart = vma.vm_end  # vma_iter_end()
        next_vma = find_vma(cur, mm, tmp)
    if not error and tmp < end:
        error = ENOMEM
    mmap_write_unlock(cur, mm)
    return error


def mprotect_fixup(
    cur: Current, mm: Mm, vma: Vma, prev: Vma | None, start: int, end: int, newflags: int
) -> Gen[Vma]:
    """mm/mprotect.c:mprotect_fixup() (v6.6): merge or split, set the flags, change PTEs.
    Caller holds ``mmap_lock`` for write."""
    vma_assert_write_locked(cur, mm, "mprotect_fixup")
    if newflags == vma.vm_flags:
        return vma
    if newflags & VM_WRITE and not vma.vm_flags & (VM_ACCOUNT | VM_WRITE):
        newflags |= VM_ACCOUNT  # a private mapping made writable is charged, never uncharged
    merged = vma_merge(cur, mm, prev, start, end, newflags, vma.anon_vma, vma.uffd_ctx)
    if merged is not None:
        vma = merged
    else:
        if start != vma.vm_start:
            split_vma(cur, mm, vma, start, True)
        if end != vma.vm_end:
            split_vma(cur, mm, vma, end, False)
    vma.vm_flags = newflags  # vm_flags_reset()
    yield from change_protection(cur, mm, vma, start, end)
    return vma


def change_protection(cur: Current, mm: Mm, vma: Vma, start: int, end: int) -> Gen[None]:
    """mm/mprotect.c:change_pte_range() (v6.6), with MM_CP_TRY_CHANGE_WRITABLE for VM_WRITE."""
    flags = vma.vm_flags
    protnone = not flags & VM_ACCESS_FLAGS
    for t, first, stop in _table_ranges(start, end):
        if mm.pmd[t] is None:
            continue
        table = yield from pte_offset_map_lock(cur, mm, first)
        if table is None:
            continue
        for page in range(first, stop):
            if ptep_get(cur, table, page).kind == PTE_NONE:
                continue
            yield "change_pte_range:pte"
            pte = ptep_get(cur, table, page)
            new = pte
            if pte.kind == PTE_PRESENT or pte.kind == PTE_ZERO:
                folio = pte.folio
                writable = bool(
                    flags & VM_WRITE and not protnone and folio is not None and folio.anon_exclusive
                )  # can_change_pte_writable()
                new = pte._replace(writable=writable, protnone=protnone)
            elif pte.kind == PTE_MIGRATION and pte.writable:
                new = pte._replace(writable=False, exclusive=True)
            elif pte.kind == PTE_DEVICE_PRIVATE and pte.writable:
                new = pte._replace(writable=False)
            if new != pte:
                set_pte_at(cur, mm, table, page, new, "change_pte_range")
        pte_unmap_unlock(cur, table)


# ---------------------------------------------------------------------------------------------
# madvise


def madvise_walk(cur: Current, mm: Mm, start: int, end: int) -> list[tuple[Vma, int, int]]:
    """mm/madvise.c:madvise_walk_vmas(): the (vma, start, end) pieces of ``[start, end)``,
    in address order. Caller holds ``mmap_lock`` (read), so the VMAs cannot change."""
    out = []
    vma = find_vma(cur, mm, start)
    while vma is not None and vma.vm_start < end:
        lo = max(start, vma.vm_start)
        hi = min(end, vma.vm_end)
        out.append((vma, lo, hi))
        if hi >= end:
            break
        vma = find_vma(cur, mm, hi)
    return out


def madvise_has_hole(pieces: list[tuple[Vma, int, int]], start: int, end: int) -> bool:
    covered = sum(hi - lo for _, lo, hi in pieces)
    return covered < end - start


def do_madvise_dontneed(cur: Current, mm: Mm, start: int, npages: int) -> Gen[int]:
    """mm/madvise.c:do_madvise(MADV_DONTNEED) (v6.6): ``madvise_walk_vmas`` under ``mmap_lock``
    read, zapping each VMA piece (``madvise_dontneed_single_vma``); -ENOMEM if the range has a
    hole (the mapped parts are still zapped)."""
    end = start + npages
    yield from mmap_read_lock(cur, mm)
    pieces = madvise_walk(cur, mm, start, end)
    for _vma, lo, hi in pieces:
        yield from zap_pte_range(cur, mm, lo, hi)  # zap_page_range_single()
        tlb_finish_mmu(cur)
    mmap_read_unlock(cur, mm)
    return ENOMEM if madvise_has_hole(pieces, start, end) else 0
