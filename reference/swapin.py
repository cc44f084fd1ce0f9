"""Swap-in faults: ``do_swap_page`` (mm/memory.c, v6.6 + 13ddaf26be32), ``swapin_readahead``
for one page (mm/swap_state.c) and ``folio_lock_or_retry`` (mm/filemap.c).

``do_swap_page`` is entered with the fault lock held and the PTL not held. Migration and
device-private entries branch off first. A swap entry is served from the swap cache, by the
skip-swapcache path (synchronous device, ``__swap_count == 1``: ``swapcache_prepare`` pins the
slot with SWAP_HAS_CACHE until the PTE is mapped, 13ddaf26be32), or by ``swapin_readahead``
(one page, through the swap cache). ``folio_lock_or_retry`` drops the fault lock and waits
rather than sleeping on a locked folio on the first try (RETRY); every commit re-checks
``pte_same`` under the PTL (I10); references and the folio lock are balanced on every exit
(I11).

Yield points: ``do_swap_page:swapcache_prepare`` (the 1-tick sleep), the folio allocations,
the synchronous read, ``read_swap_cache_async:schedule_timeout`` and the folio-lock waits.
"""

from __future__ import annotations

from reference.device import do_device_private_fault
from reference.folio import (
    folio_lock,
    folio_lock_killable,
    folio_put,
    folio_ref_to_map,
    folio_trylock,
    folio_unlock,
    folio_wait_locked,
    page_add_anon_rmap,
)
from reference.migrate import migration_entry_wait
from reference.objects import (
    PTE_DEVICE_PRIVATE,
    PTE_MIGRATION,
    VM_ACCESS_FLAGS,
    VM_WRITE,
    Folio,
    mk_pte,
)
from reference.pgtable import pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at
from reference.primitives import (
    Current,
    Gen,
    ModelError,
    might_sleep,
    schedule_timeout_uninterruptible,
)
from reference.swap import (
    EEXIST,
    add_to_swap_cache,
    folio_free_swap,
    swap_cache_get_folio,
    swap_count,
    swap_free,
    swap_readpage,
    swapcache_clear,
    swapcache_prepare,
    vm_swap_full,
)
from reference.vmf import (
    FAULT_FLAG_KILLABLE,
    FAULT_FLAG_RETRY_NOWAIT,
    FAULT_FLAG_WRITE,
    VM_FAULT_ERROR,
    VM_FAULT_MAJOR,
    VM_FAULT_RETRY,
    VM_FAULT_SIGBUS,
    Vmf,
    fault_flag_allow_retry_first,
    release_fault_lock,
)
from reference.wp import do_wp_page


def read_swap_cache_async(vmf: Vmf, slot: int) -> Gen[Folio | None]:
    """mm/swap_state.c:__read_swap_cache_async() + swap_readpage() (v6.6), one page."""
    cur = vmf.cur
    si = cur.kernel.swap
    while True:
        folio = swap_cache_get_folio(cur, slot, "read_swap_cache_async")
        if folio is not None:
            return folio
        if not swap_count(si, slot):
            return None  # Just skip read ahead for unused swap slot.
        might_sleep(cur, "vma_alloc_folio")
        yield "read_swap_cache_async:vma_alloc_folio"
        new = cur.kernel.alloc_folio(0)
        new.refs.append((cur.tid, "read_swap_cache_async"))
        new.uptodate = False
        err = swapcache_prepare(si, slot)
        if not err:
            break
        folio_put(cur, new, "read_swap_cache_async")
        if err != EEXIST:
            return None
        yield from schedule_timeout_uninterruptible(cur, "read_swap_cache_async:schedule_timeout")
    if not folio_trylock(cur, new):  # __folio_set_locked() on a folio nobody else sees
        raise ModelError("a new folio is locked")
    add_to_swap_cache(cur, new, slot)
    new.lru = True  # folio_add_lru()
    yield from swap_readpage(cur, new, slot)
    return new


def folio_lock_or_retry(vmf: Vmf, folio: Folio) -> Gen[int]:
    """mm/filemap.c:__folio_lock_or_retry() (v6.6): 0 with the folio locked and FL held, or
    RETRY with FL released (first try: wait for the lock with FL dropped)."""
    cur, flags = vmf.cur, vmf.flags
    might_sleep(cur, "folio_lock_or_retry")
    if folio_trylock(cur, folio):
        return 0
    if fault_flag_allow_retry_first(flags):
        if flags & FAULT_FLAG_RETRY_NOWAIT:
            return VM_FAULT_RETRY
        release_fault_lock(vmf)
        yield from folio_wait_locked(cur, folio, bool(flags & FAULT_FLAG_KILLABLE))
        return VM_FAULT_RETRY
    if flags & FAULT_FLAG_KILLABLE:
        if (yield from folio_lock_killable(cur, folio)):
            release_fault_lock(vmf)
            return VM_FAULT_RETRY
    else:
        yield from folio_lock(cur, folio)
    return 0


def should_try_to_free_swap(cur: Current, folio: Folio, flags: int) -> bool:
    """mm/memory.c:should_try_to_free_swap() (v6.6)."""
    if folio.swapcache < 0:
        return False
    if vm_swap_full(cur.kernel.swap):
        return True
    return bool(flags & FAULT_FLAG_WRITE) and folio.refcount == 2


def do_swap_page(vmf: Vmf) -> Gen[int]:
    """mm/memory.c:do_swap_page() (v6.6 + 13ddaf26be32). FL held, PTL not held."""
    orig = vmf.orig_pte
    if orig.kind == PTE_MIGRATION:
        yield from migration_entry_wait(vmf)
        return 0
    if orig.kind == PTE_DEVICE_PRIVATE:
        return (yield from do_device_private_fault(vmf))
    cur = vmf.cur
    si, slot = cur.kernel.swap, orig.slot
    folio = swap_cache_get_folio(cur, slot, "do_swap_page")
    swapcache = folio
    ret = 0
    need_clear_cache = False
    if folio is None:
        if si.synchronous and swap_count(si, slot) == 1:
            # Prevent parallel swapin from proceeding with the cache flag (13ddaf26be32).
            if swapcache_prepare(si, slot):
                yield from schedule_timeout_uninterruptible(cur, "do_swap_page:swapcache_prepare")
                return 0
            need_clear_cache = True
            might_sleep(cur, "vma_alloc_folio")
            yield "do_swap_page:vma_alloc_folio"  # skip swapcache
            folio = cur.kernel.alloc_folio(0)
            folio.refs.append((cur.tid, "do_swap_page"))
            folio.uptodate = False
            folio_trylock(cur, folio)  # __folio_set_locked()
            folio.lru = True  # folio_add_lru()
            yield from swap_readpage(cur, folio, slot)
        else:
            folio = yield from read_swap_cache_async(vmf, slot)  # swapin_readahead()
            swapcache = folio
        if folio is None:
            return (yield from _swapin_failed(vmf))
        ret = VM_FAULT_MAJOR
    ret |= yield from folio_lock_or_retry(vmf, folio)
    if ret & VM_FAULT_RETRY:
        return _out_release(vmf, folio, ret, need_clear_cache)
    if swapcache is not None and folio.swapcache != slot:
        folio_unlock(cur, folio)  # the folio left the swap cache (or the slot was reused)
        return _out_release(vmf, folio, ret, need_clear_cache)
    table = yield from pte_offset_map_lock(cur, vmf.mm, vmf.page)
    if table is None or ptep_get(cur, table, vmf.page) != orig:
        if table is not None:
            pte_unmap_unlock(cur, table)
        folio_unlock(cur, folio)
        return _out_release(vmf, folio, ret, need_clear_cache)
    if not folio.uptodate:
        pte_unmap_unlock(cur, table)
        folio_unlock(cur, folio)
        return _out_release(vmf, folio, ret | VM_FAULT_SIGBUS, need_clear_cache)
    vmf.table = table
    return (yield from _swap_map(vmf, folio, swapcache is not None, ret, need_clear_cache))


def _swapin_failed(vmf: Vmf) -> Gen[int]:
    """No folio (the slot was freed under us): OOM only if the PTE is unchanged."""
    cur = vmf.cur
    table = yield from pte_offset_map_lock(cur, vmf.mm, vmf.page)
    if table is None:
        return 0
    same = ptep_get(cur, table, vmf.page) == vmf.orig_pte
    pte_unmap_unlock(cur, table)
    if same:
        raise ModelError("do_swap_page: VM_FAULT_OOM with an unchanged swap PTE")
    return 0


def _out_release(vmf: Vmf, folio: Folio, ret: int, need_clear_cache: bool) -> int:
    """``out_release:``: drop our reference (and the 13ddaf26be32 cache pin)."""
    cur = vmf.cur
    folio_put(cur, folio, "do_swap_page")
    if need_clear_cache:
        swapcache_clear(cur.kernel.swap, vmf.orig_pte.slot)
    return ret


def _swap_map(vmf: Vmf, folio: Folio, from_cache: bool, ret: int, clear: bool) -> Gen[int]:
    """The map step of do_swap_page under the PTL, after ``pte_same`` succeeded."""
    cur, mm, page, orig, table = vmf.cur, vmf.mm, vmf.page, vmf.orig_pte, vmf.table
    assert table is not None
    si, slot = cur.kernel.swap, orig.slot
    if folio.anon_exclusive:
        raise ModelError("BUG_ON(folio_test_anon(folio) && PageAnonExclusive(page))")
    exclusive = orig.exclusive or not from_cache
    swap_free(cur, si, slot)
    if should_try_to_free_swap(cur, folio, vmf.flags):
        folio_free_swap(cur, folio)
    vma = vmf.vma
    writable = dirty = rmap_exclusive = False
    if exclusive or folio.refcount == 1:
        if vmf.flags & FAULT_FLAG_WRITE:
            writable, dirty = bool(vma.vm_flags & VM_WRITE), True
            vmf.flags &= ~FAULT_FLAG_WRITE
        rmap_exclusive = True
    entry = mk_pte(folio, writable, True, dirty, not vma.vm_flags & VM_ACCESS_FLAGS)
    vmf.orig_pte = entry
    page_add_anon_rmap(cur, folio, rmap_exclusive, "do_swap_page")
    folio_ref_to_map(cur, folio)
    set_pte_at(cur, mm, table, page, entry, "do_swap_page")
    folio_unlock(cur, folio)
    if vmf.flags & FAULT_FLAG_WRITE:
        ret |= yield from do_wp_page(vmf)  # releases the PTL
        if ret & VM_FAULT_ERROR:
            ret &= VM_FAULT_ERROR
    else:
        pte_unmap_unlock(cur, table)
    if clear:  # Clear the swap cache pin for direct swapin after PTL unlock.
        swapcache_clear(si, slot)
    return ret
