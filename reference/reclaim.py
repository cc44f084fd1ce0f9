"""``madvise(MADV_PAGEOUT)``: isolate this mm's exclusively mapped folios and reclaim them to
swap (mm/madvise.c, mm/vmscan.c, v6.6; MODEL.md §8).

Per PTE table, under the PTL: present, normal, on the LRU, ``mapcount == 1``: clear the PTE's
young bit and isolate the folio. Then ``reclaim_pages`` → ``shrink_folio_list`` for the batch,
one folio at a time (a yield point each): trylock; keep if under writeback or referenced
(``folio_referenced`` clears young PTEs); ``add_to_swap`` (lowest free slot); ``try_to_unmap``
(swap PTEs); ``pageout`` if dirty (sync write, or queued to the I/O daemon); relock and
``__remove_mapping`` (swap cache + isolation references only, clean). Kept folios are put
back on the LRU.
"""

from __future__ import annotations

import errno

from reference.folio import (
    folio_isolate_lru,
    folio_put,
    folio_putback_lru,
    folio_test_dirty,
    folio_test_writeback,
    folio_trylock,
    folio_unlock,
)
from reference.mmap import _table_ranges, madvise_has_hole, madvise_walk
from reference.mmap_lock import mmap_read_lock, mmap_read_unlock
from reference.objects import PTE_PRESENT, Folio, Mm
from reference.pgtable import pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at
from reference.primitives import Current, Gen, fatal_signal_pending
from reference.rmap import folio_referenced, try_to_unmap
from reference.swap import (
    add_to_swap_cache,
    delete_from_swap_cache,
    folio_alloc_swap,
    folio_free_swap,
    swap_writepage,
)

ENOMEM, EINTR = -errno.ENOMEM, -errno.EINTR


def do_madvise_pageout(cur: Current, mm: Mm, start: int, npages: int) -> Gen[int]:
    """mm/madvise.c:do_madvise(MADV_PAGEOUT) (v6.6): ``madvise_walk_vmas`` under ``mmap_lock``
    read, ``madvise_pageout`` per VMA piece; -ENOMEM if the range has a hole, -EINTR if the
    task was killed during the walk."""
    end = start + npages
    yield from mmap_read_lock(cur, mm)
    pieces = madvise_walk(cur, mm, start, end)
    for _vma, lo, hi in pieces:
        if (yield from madvise_pageout_page_range(cur, mm, lo, hi)) == EINTR:
            mmap_read_unlock(cur, mm)
            return EINTR
    mmap_read_unlock(cur, mm)
    return ENOMEM if madvise_has_hole(pieces, start, end) else 0


def madvise_pageout_page_range(cur: Current, mm: Mm, start: int, end: int) -> Gen[int]:
    """mm/madvise.c:madvise_cold_or_pageout_pte_range() per table, then reclaim_pages(); 0, or
    -EINTR: each table's walk starts with ``if (fatal_signal_pending(current)) return
    -EINTR;``."""
    for t, first, stop in _table_ranges(start, end):
        if mm.pmd[t] is None:
            continue
        if fatal_signal_pending(cur):
            return EINTR
        table = yield from pte_offset_map_lock(cur, mm, first)
        if table is None:
            continue
        batch: list[Folio] = []
        for page in range(first, stop):
            pte = ptep_get(cur, table, page)
            folio = pte.folio
            if pte.kind != PTE_PRESENT or folio is None:
                continue
            if not folio.lru or folio.mapcount != 1:
                continue  # Do not interfere with other mappings of this folio.
            if pte.young:
                set_pte_at(cur, mm, table, page, pte._replace(young=False), "madvise_pageout")
            if folio_isolate_lru(cur, folio, "madvise_pageout"):
                batch.append(folio)
        pte_unmap_unlock(cur, table)
        if batch:
            yield from shrink_folio_list(cur, batch)
    return 0


def shrink_folio_list(cur: Current, folios: list[Folio]) -> Gen[None]:
    """mm/vmscan.c:shrink_folio_list() (v6.6) for isolated anonymous folios."""
    for folio in folios:
        yield "shrink_folio_list:folio"
        if not folio_trylock(cur, folio):
            folio_putback_lru(cur, folio, "shrink_folio_list")  # keep
            continue
        locked = yield from shrink_one(cur, folio)
        if locked is None:
            continue  # freed
        if locked:
            folio_unlock(cur, folio)  # keep_locked
        folio_putback_lru(cur, folio, "shrink_folio_list")


def shrink_one(cur: Current, folio: Folio) -> Gen[bool | None]:
    """One locked folio: None if freed, else whether it is still locked (to keep)."""
    if folio.writeback:
        return True
    if (yield from folio_referenced(cur, folio)):
        return True  # FOLIOREF_ACTIVATE / FOLIOREF_KEEP
    if folio.swapcache < 0:  # add_to_swap()
        slot = folio_alloc_swap(cur.kernel.swap)
        if slot < 0:
            return True
        add_to_swap_cache(cur, folio, slot)
        folio.dirty = True
    if folio.mapcount:
        yield from try_to_unmap(cur, folio)
        if folio.mapcount:
            return True
    if folio.dirty:
        if folio.refcount != 2:  # is_page_cache_freeable(): cache + isolation only
            return True
        if folio_free_swap(cur, folio):  # swap_writepage(): nobody uses the slot any more
            folio_unlock(cur, folio)
            return False
        yield from swap_writepage(cur, folio)  # pageout(): unlocks the folio
        if folio_test_writeback(folio) or folio_test_dirty(folio):
            return False
        if not folio_trylock(cur, folio):
            return False
        if folio_test_dirty(folio) or folio_test_writeback(folio):
            return True
    if folio.refcount == 2 and not folio.dirty:  # __remove_mapping()
        delete_from_swap_cache(cur, folio)
        folio_unlock(cur, folio)
        folio_put(cur, folio, "shrink_folio_list")  # the isolation reference: freed
        return None
    return True
