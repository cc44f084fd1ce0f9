"""Write-protect faults: ``do_wp_page``, ``wp_page_reuse``, ``wp_page_copy`` (research §3.5).

``do_wp_page`` is entered with the PTL held (from ``handle_pte_fault`` or ``do_swap_page``)
and releases it. An anonymous folio is reused when its page is ``PageAnonExclusive``, or when
the v6.6 inline checks prove this mapping holds the only reference (freeing a swap-cache copy
under the folio lock taken by trylock); otherwise it is copied, with an extra reference on the
old folio held across ``wp_page_copy`` (which makes a concurrent migration of it fail its
refcount check). The zero page is always copied.
"""

from __future__ import annotations

from reference.folio import (
    check_folio,
    folio_get,
    folio_put,
    folio_put_ref,
    folio_ref_to_map,
    folio_trylock,
    folio_unlock,
    page_add_anon_rmap,
    page_remove_rmap,
)
from reference.objects import VM_WRITE, Folio, mk_pte
from reference.pgtable import pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at
from reference.primitives import Current, Gen, might_sleep
from reference.swap import folio_free_swap
from reference.vma import anon_vma_prepare
from reference.vmf import Vmf


def do_wp_page(vmf: Vmf) -> Gen[int]:
    """mm/memory.c:do_wp_page() (v6.6), private anonymous mappings. Entered with the PTL."""
    cur, table = vmf.cur, vmf.table
    assert table is not None
    folio = vmf.orig_pte.folio  # vm_normal_page(): None for the zero page
    if folio is not None:
        check_folio(cur, folio, "do_wp_page")
        if folio.anon_exclusive:
            return wp_page_reuse(vmf)
        # Early checks; the decision is re-made under the folio lock.
        maybe_ours = folio.refcount <= 3 and folio.refcount <= 1 + (folio.swapcache >= 0)
        if maybe_ours and folio_trylock(cur, folio):
            if folio.swapcache >= 0:
                folio_free_swap(cur, folio)
            if folio.refcount == 1:
                folio.anon_exclusive = True  # page_move_anon_rmap()
                folio_unlock(cur, folio)
                return wp_page_reuse(vmf)
            folio_unlock(cur, folio)
    # copy:
    if folio is not None:
        folio_get(cur, folio, "do_wp_page")
    pte_unmap_unlock(cur, table)
    return (yield from wp_page_copy(vmf, folio))


def wp_page_reuse(vmf: Vmf) -> int:
    """mm/memory.c:wp_page_reuse(): make the PTE young, dirty and (if VM_WRITE) writable."""
    cur, table = vmf.cur, vmf.table
    assert table is not None
    writable = bool(vmf.vma.vm_flags & VM_WRITE)  # maybe_mkwrite()
    entry = vmf.orig_pte._replace(young=True, dirty=True, writable=writable)
    set_pte_at(cur, vmf.mm, table, vmf.page, entry, "wp_page_reuse")
    pte_unmap_unlock(cur, table)
    return 0


def wp_page_copy(vmf: Vmf, old: Folio | None) -> Gen[int]:
    """mm/memory.c:wp_page_copy() (v6.6). Entered without the PTL, holding an extra
    reference on `old` (None: the zero page), which is dropped before returning."""
    cur, mm, page = vmf.cur, vmf.mm, vmf.page
    yield from anon_vma_prepare(cur, mm, vmf.vma)
    might_sleep(cur, "wp_page_copy")
    yield "wp_page_copy:vma_alloc_folio"
    new = cur.kernel.alloc_folio(0 if old is None else old.data)  # __wp_page_copy_user()
    new.refs.append((cur.tid, "wp_page_copy"))
    might_sleep(cur, "mmu_notifier_invalidate_range_start")
    yield "wp_page_copy:mmu_notifier_invalidate_range_start"  # [S], after the memcg charge
    table = yield from pte_offset_map_lock(cur, mm, page)
    copied = False
    if table is not None and ptep_get(cur, table, page) == vmf.orig_pte:
        vma = vmf.vma
        writable = bool(vma.vm_flags & VM_WRITE)
        entry = mk_pte(new, writable, True, True, False)
        page_add_anon_rmap(cur, new, True, "wp_page_copy")  # page_add_new_anon_rmap()
        new.lru = True
        folio_ref_to_map(cur, new)
        set_pte_at(cur, mm, table, page, entry, "wp_page_copy")
        if old is not None:
            page_remove_rmap(cur, old, "wp_page_copy")
        copied = True
    if table is not None:
        pte_unmap_unlock(cur, table)
    if copied:
        if old is not None:
            folio_put_ref(cur, old, "wp_page_copy")  # the old PTE's reference
            free_swap_cache(cur, old)
    else:
        folio_put(cur, new, "wp_page_copy")
    if old is not None:
        folio_put(cur, old, "wp_page_copy")  # do_wp_page's extra reference
    return 0


def free_swap_cache(cur: Current, folio: Folio) -> None:
    """mm/swap_state.c:free_swap_cache(): drop an unmapped folio's swap-cache copy."""
    if folio.freed or folio.swapcache < 0 or folio.mapcount:
        return
    if folio_trylock(cur, folio):
        folio_free_swap(cur, folio)
        folio_unlock(cur, folio)
