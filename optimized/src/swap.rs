//! Swap: slots and the swap cache (`mm/swapfile.c`, `mm/swap_state.c`), and swap I/O with its
//! completion daemon (`mm/page_io.c`). The swap-in fault is in `swapin`.
//!
//! **Slots** (MODEL.md §2): `count` is the number of swap PTEs naming the slot, `has_cache`
//! is `SWAP_HAS_CACHE`; a slot is free iff both are clear, and slots are allocated lowest-free
//! first, so a freed slot is soon reused (the ABA hazard `pte_same` cannot see). **The swap
//! cache** maps slot -> folio and holds one reference on its folio. **I/O**: on a
//! `SWP_SYNCHRONOUS_IO` device every read and write completes inside the call (one `[S]`
//! point); otherwise the request is queued and the I/O daemon completes it as a separate step.
//!
//! | rule         | when                                                                     |
//! |--------------|--------------------------------------------------------------------------|
//! | `swap.count` | [`swap_free`] below zero (exactness at quiescence: `snapshot`)           |

use crate::folio::{
    check_folio, folio_assert_locked, folio_end_writeback, folio_get, folio_get_ref,
    folio_lock_for_io, folio_put, folio_put_ref, folio_start_writeback, folio_trylock,
    folio_unlock, folio_unlock_bit,
};
use crate::objects::{FolioId, IoReq, Kernel, State, SwapInfo, WaitOn, NR_SWAP_SLOTS};
use crate::primitives::{folio_event, io_schedule, might_sleep, violate, KResult};

pub const EEXIST: i32 = -17;
pub const ENOENT: i32 = -2;

fn slot_index(slot: i32) -> usize {
    usize::try_from(slot).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Slots (mm/swapfile.c)

/// `folio_alloc_swap()`: the lowest free slot with `SWAP_HAS_CACHE` set, or -1.
pub fn folio_alloc_swap(si: &mut SwapInfo) -> i32 {
    match si.slots.iter().position(crate::objects::SwapSlot::is_free) {
        Some(i) => {
            si.slots[i].has_cache = true;
            i32::try_from(i).unwrap_or(-1)
        }
        None => -1,
    }
}

pub fn swap_count(si: &SwapInfo, slot: i32) -> i32 {
    si.slots[slot_index(slot)].count
}

pub fn vm_swap_full(si: &SwapInfo) -> bool {
    let free = si.slots.iter().filter(|s| s.is_free()).count();
    free * 2 < NR_SWAP_SLOTS
}

pub fn swap_duplicate(si: &mut SwapInfo, slot: i32) {
    si.slots[slot_index(slot)].count += 1;
}

/// `swap_free()`: drop one swap-PTE reference to `slot`.
pub fn swap_free(s: &mut State, slot: i32) {
    let sl = &mut s.swap.slots[slot_index(slot)];
    sl.count -= 1;
    if sl.count < 0 {
        sl.count = 0;
        violate(
            s,
            "swap.count",
            "swap_free",
            format!("slot {slot} count below zero"),
        );
    }
}

/// `__swap_duplicate(entry, SWAP_HAS_CACHE)`: 0, -EEXIST (cached) or -ENOENT (unused).
pub fn swapcache_prepare(si: &mut SwapInfo, slot: i32) -> i32 {
    let sl = &mut si.slots[slot_index(slot)];
    if sl.has_cache {
        return EEXIST;
    }
    if sl.count == 0 {
        return ENOENT;
    }
    sl.has_cache = true;
    0
}

/// `swapcache_clear()` (13ddaf26be32) / `put_swap_folio()`: clear `SWAP_HAS_CACHE`.
pub fn swapcache_clear(si: &mut SwapInfo, slot: i32) {
    si.slots[slot_index(slot)].has_cache = false;
}

// ---------------------------------------------------------------------------------------------
// The swap cache (mm/swap_state.c)

/// `mm/swap_state.c:add_to_swap_cache()` (v6.6) on a locked folio: the slot's
/// `SWAP_HAS_CACHE` is already set by the caller; the cache takes a reference.
pub fn add_to_swap_cache(s: &mut State, f: FolioId, slot: i32) -> KResult<()> {
    folio_assert_locked(s, f, "add_to_swap_cache");
    s.swap.cache[slot_index(slot)] = Some(f);
    s.folios[f as usize].swapcache = slot;
    folio_get_ref(s, f, "add_to_swap_cache")
}

/// `mm/swap_state.c:delete_from_swap_cache()` (v6.6) on a locked folio: leave the swap cache
/// (`__delete_from_swap_cache`), clear `SWAP_HAS_CACHE`, drop the cache's reference.
pub fn delete_from_swap_cache(s: &mut State, f: FolioId) -> KResult<()> {
    folio_assert_locked(s, f, "__delete_from_swap_cache");
    let slot = s.folios[f as usize].swapcache;
    s.swap.cache[slot_index(slot)] = None;
    s.folios[f as usize].swapcache = -1;
    swapcache_clear(&mut s.swap, slot);
    folio_put_ref(s, f, "delete_from_swap_cache")
}

/// `swap_cache_get_folio()` / `filemap_get_folio()`: +1 reference if found.
pub fn swap_cache_get_folio(
    s: &mut State,
    slot: i32,
    site: &'static str,
) -> KResult<Option<FolioId>> {
    let folio = s.swap.cache[slot_index(slot)];
    if let Some(f) = folio {
        folio_get(s, f, site)?;
    }
    Ok(folio)
}

/// `mm/swapfile.c:folio_free_swap()`: caller holds the folio lock.
pub fn folio_free_swap(s: &mut State, f: FolioId) -> KResult<bool> {
    folio_assert_locked(s, f, "folio_free_swap");
    let folio = &s.folios[f as usize];
    if folio.swapcache < 0 || folio.writeback {
        return Ok(false);
    }
    if swap_count(&s.swap, folio.swapcache) != 0 {
        return Ok(false); // folio_swapped()
    }
    delete_from_swap_cache(s, f)?;
    s.folios[f as usize].dirty = true;
    Ok(true)
}

/// `mm/swapfile.c:free_swap_and_cache()`: a swap PTE is zapped (caller holds the PTL).
pub fn free_swap_and_cache(s: &mut State, slot: i32) -> KResult<()> {
    swap_free(s, slot);
    let sl = s.swap.slots[slot_index(slot)];
    if sl.count != 0 || !sl.has_cache {
        return Ok(());
    }
    let Some(f) = swap_cache_get_folio(s, slot, "__try_to_reclaim_swap")? else {
        return Ok(());
    };
    if folio_trylock(s, f)? {
        if s.folios[f as usize].mapcount == 0 || vm_swap_full(&s.swap) {
            folio_free_swap(s, f)?;
        }
        folio_unlock(s, f)?;
    }
    folio_put(s, f, "__try_to_reclaim_swap")
}

// ---------------------------------------------------------------------------------------------
// Swap I/O (mm/page_io.c)

fn queue_io(s: &mut State, req: IoReq) {
    s.io_queue.push_back(req);
    let sleepers = std::mem::take(&mut s.io_sleepers);
    s.wakes.extend(sleepers);
}

/// `mm/page_io.c:swap_readpage()` (v6.6): read `slot` into the locked `folio`; the I/O unlocks
/// it when it completes.
pub async fn swap_readpage(k: &Kernel, f: FolioId, slot: i32) -> KResult<()> {
    folio_assert_locked(&mut k.st(), f, "swap_readpage");
    if k.st().swap.synchronous {
        io_schedule(k, "swap_readpage:submit_bio_wait").await;
        return end_swap_bio_read(&mut k.st(), f, slot);
    }
    let mut s = k.st();
    folio_lock_for_io(&mut s, f);
    queue_io(&mut s, IoReq::Read(f, slot));
    Ok(())
}

pub fn end_swap_bio_read(s: &mut State, f: FolioId, slot: i32) -> KResult<()> {
    check_folio(s, f, "end_swap_bio_read")?;
    let data = s.swap.slots[slot_index(slot)].data;
    let folio = &mut s.folios[f as usize];
    folio.data = data;
    folio.uptodate = true;
    folio_event(s, "release", "folio_lock", f, "io");
    folio_unlock_bit(s, f);
    Ok(())
}

/// `swap_writepage()`: start writeback, unlock the folio, write (sync or queued).
pub async fn swap_writepage(k: &Kernel, f: FolioId) -> KResult<()> {
    let sync = {
        let mut s = k.st();
        folio_start_writeback(&mut s, f);
        folio_unlock(&mut s, f)?;
        if !s.swap.synchronous {
            queue_io(&mut s, IoReq::Write(f));
        }
        s.swap.synchronous
    };
    if sync {
        io_schedule(k, "swap_writepage:submit_bio_wait").await;
        end_swap_bio_write(&mut k.st(), f)?;
    }
    Ok(())
}

pub fn end_swap_bio_write(s: &mut State, f: FolioId) -> KResult<()> {
    check_folio(s, f, "end_swap_bio_write")?;
    let slot = s.folios[f as usize].swapcache;
    if slot >= 0 {
        s.swap.slots[slot_index(slot)].data = s.folios[f as usize].data;
    }
    folio_end_writeback(s, f);
    Ok(())
}

/// The swap I/O completion task: completes one queued request per step.
pub async fn swap_io_daemon(k: &Kernel) -> KResult<()> {
    loop {
        let req = {
            let mut s = k.st();
            let req = s.io_queue.pop_front();
            if req.is_none() {
                might_sleep(&mut s, "swap_io");
                let tid = s.tid;
                s.io_sleepers.push(tid);
            }
            req
        };
        match req {
            None => k.block(WaitOn::SwapIo, "swap_io:idle").await,
            Some(r) => {
                {
                    let mut s = k.st();
                    match r {
                        IoReq::Read(f, slot) => end_swap_bio_read(&mut s, f, slot)?,
                        IoReq::Write(f) => end_swap_bio_write(&mut s, f)?,
                    }
                }
                k.yield_now("swap_io:end_io").await;
            }
        }
    }
}
