"""Swap: slots and the swap cache (mm/swapfile.c, mm/swap_state.c), and swap I/O with its
completion daemon (mm/page_io.c). The swap-in fault is in `reference.swapin`.

**Slots** (MODEL.md §2): ``count`` is the number of swap PTEs naming the slot, ``has_cache``
is SWAP_HAS_CACHE; a slot is free iff both are clear, and slots are allocated lowest-free
first, so a freed slot is soon reused (the ABA hazard ``pte_same`` cannot see).

**The swap cache** maps slot → folio and holds one reference on its folio.

**I/O**: on a SWP_SYNCHRONOUS_IO device every read and write completes inside the call (one
``[S]`` yield point). On an asynchronous device the request is queued; the I/O daemon
completes it as a separate step: a read fills the folio, marks it uptodate and unlocks it
(the I/O owns ``PG_locked`` meanwhile); a write copies the folio's data to the slot and ends
writeback.

=====================  ========================================================================
rule                   when
=====================  ========================================================================
swap.count             `swap_free` below zero (exactness at quiescence: `reference.snapshot`)
=====================  ========================================================================
"""

from __future__ import annotations

import errno

from reference.folio import (
    check_folio,
    folio_assert_locked,
    folio_end_writeback,
    folio_get,
    folio_get_ref,
    folio_lock_for_io,
    folio_put,
    folio_put_ref,
    folio_start_writeback,
    folio_trylock,
    folio_unlock,
    folio_unlock_bit,
)
from reference.objects import NR_SWAP_SLOTS, Folio, SwapInfo
from reference.primitives import Current, Gen, io_schedule, violate

EEXIST, ENOENT = -errno.EEXIST, -errno.ENOENT

# ---------------------------------------------------------------------------------------------
# Slots (mm/swapfile.c)


def folio_alloc_swap(si: SwapInfo) -> int:
    """``folio_alloc_swap()``: the lowest free slot with SWAP_HAS_CACHE set, or -1."""
    for i, s in enumerate(si.slots):
        if s.is_free():
            s.has_cache = True
            return i
    return -1


def swap_count(si: SwapInfo, slot: int) -> int:
    return si.slots[slot].count


def vm_swap_full(si: SwapInfo) -> bool:
    free = sum(1 for s in si.slots if s.is_free())
    return free * 2 < NR_SWAP_SLOTS


def swap_duplicate(si: SwapInfo, slot: int) -> None:
    si.slots[slot].count += 1


def swap_free(cur: Current, si: SwapInfo, slot: int) -> None:
    """``swap_free()``: drop one swap-PTE reference to `slot`."""
    s = si.slots[slot]
    s.count -= 1
    if s.count < 0:
        violate(cur, "swap.count", "swap_free", f"slot {slot} count below zero")
        s.count = 0


def swapcache_prepare(si: SwapInfo, slot: int) -> int:
    """``__swap_duplicate(entry, SWAP_HAS_CACHE)``: 0, -EEXIST (cached) or -ENOENT (unused)."""
    s = si.slots[slot]
    if s.has_cache:
        return EEXIST
    if not s.count:
        return ENOENT
    s.has_cache = True
    return 0


def swapcache_clear(si: SwapInfo, slot: int) -> None:
    """``swapcache_clear()`` (13ddaf26be32) / ``put_swap_folio()``: clear SWAP_HAS_CACHE."""
    si.slots[slot].has_cache = False


# ---------------------------------------------------------------------------------------------
# The swap cache (mm/swap_state.c)


def add_to_swap_cache(cur: Current, folio: Folio, slot: int) -> None:
    """mm/swap_state.c:add_to_swap_cache() (v6.6) on a locked folio: the slot's
    SWAP_HAS_CACHE is already set by the caller; the cache takes a reference."""
    folio_assert_locked(cur, folio, "add_to_swap_cache")
    si = cur.kernel.swap
    si.cache[slot] = folio
    folio.swapcache = slot
    folio_get_ref(cur, folio, "add_to_swap_cache")


def delete_from_swap_cache(cur: Current, folio: Folio) -> None:
    """mm/swap_state.c:delete_from_swap_cache() (v6.6) on a locked folio: leave the swap
    cache (``__delete_from_swap_cache``), clear SWAP_HAS_CACHE, drop the cache's reference."""
    folio_assert_locked(cur, folio, "__delete_from_swap_cache")
    si = cur.kernel.swap
    slot = folio.swapcache
    del si.cache[slot]
    folio.swapcache = -1
    swapcache_clear(si, slot)
    folio_put_ref(cur, folio, "delete_from_swap_cache")


def swap_cache_get_folio(cur: Current, slot: int, site: str) -> Folio | None:
    """``swap_cache_get_folio()`` / ``filemap_get_folio()``: +1 reference if found."""
    folio = cur.kernel.swap.cache.get(slot)
    if folio is not None:
        folio_get(cur, folio, site)
    return folio


def folio_free_swap(cur: Current, folio: Folio) -> bool:
    """mm/swapfile.c:folio_free_swap(): caller holds the folio lock."""
    folio_assert_locked(cur, folio, "folio_free_swap")
    if folio.swapcache < 0 or folio.writeback:
        return False
    if swap_count(cur.kernel.swap, folio.swapcache):
        return False  # folio_swapped()
    delete_from_swap_cache(cur, folio)
    folio.dirty = True
    return True


def free_swap_and_cache(cur: Current, slot: int) -> None:
    """mm/swapfile.c:free_swap_and_cache(): a swap PTE is zapped (caller holds the PTL)."""
    si = cur.kernel.swap
    swap_free(cur, si, slot)
    s = si.slots[slot]
    if s.count or not s.has_cache:
        return
    folio = swap_cache_get_folio(cur, slot, "__try_to_reclaim_swap")
    if folio is None:
        return
    if folio_trylock(cur, folio):
        if not folio.mapcount or vm_swap_full(si):
            folio_free_swap(cur, folio)
        folio_unlock(cur, folio)
    folio_put(cur, folio, "__try_to_reclaim_swap")


# ---------------------------------------------------------------------------------------------
# Swap I/O (mm/page_io.c)


def swap_readpage(cur: Current, folio: Folio, slot: int) -> Gen[None]:
    """mm/page_io.c:swap_readpage() (v6.6): read `slot` into the locked `folio`; the I/O
    unlocks it when it completes."""
    folio_assert_locked(cur, folio, "swap_readpage")
    k = cur.kernel
    if k.swap.synchronous:
        yield from io_schedule(cur, "swap_readpage:submit_bio_wait")
        end_swap_bio_read(cur, folio, slot)
        return
    folio_lock_for_io(cur, folio)
    k.io_queue.append(("read", folio, slot))
    k.io_wait.wake_up(k.rt)


def end_swap_bio_read(cur: Current, folio: Folio, slot: int) -> None:
    check_folio(cur, folio, "end_swap_bio_read")
    folio.data = cur.kernel.swap.slots[slot].data
    folio.uptodate = True
    cur.contract.event(cur.tid, "release", "folio_lock", folio.name, "io")
    folio_unlock_bit(cur, folio)


def swap_writepage(cur: Current, folio: Folio) -> Gen[None]:
    """``swap_writepage()``: start writeback, unlock the folio, write (sync or queued)."""
    k = cur.kernel
    folio_start_writeback(folio)
    folio_unlock(cur, folio)
    if k.swap.synchronous:
        yield from io_schedule(cur, "swap_writepage:submit_bio_wait")
        end_swap_bio_write(cur, folio)
        return
    k.io_queue.append(("write", folio, folio.swapcache))
    k.io_wait.wake_up(k.rt)


def end_swap_bio_write(cur: Current, folio: Folio) -> None:
    check_folio(cur, folio, "end_swap_bio_write")
    if folio.swapcache >= 0:
        cur.kernel.swap.slots[folio.swapcache].data = folio.data
    folio_end_writeback(cur, folio)


def swap_io_daemon(cur: Current) -> Gen[None]:
    """The swap I/O completion task: completes one queued request per step."""
    k = cur.kernel
    while True:
        if not k.io_queue:
            yield from k.io_wait.sleep(cur, "swap_io:idle")
            continue
        kind, folio, slot = k.io_queue.popleft()
        if kind == "read":
            end_swap_bio_read(cur, folio, slot)
        else:
            end_swap_bio_write(cur, folio)
        yield "swap_io:end_io"
