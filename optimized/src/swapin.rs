//! Swap-in faults: `do_swap_page` (mm/memory.c, v6.6 + 13ddaf26be32), `swapin_readahead` for
//! one page (`mm/swap_state.c`) and `folio_lock_or_retry` (`mm/filemap.c`).
//!
//! `do_swap_page` is entered with the fault lock held and the PTL not held; swap faults run
//! under the VMA lock (1235ccd05b6d). Migration entries wait with the fault lock kept and no
//! reference; a device-private entry under the VMA lock drops it and returns RETRY, so that
//! `migrate_to_ram` runs under `mmap_lock`. `folio_lock_or_retry` drops the fault lock
//! (whichever kind, fdc724d6aa44) and waits rather than sleeping on a locked folio on the
//! first try, which every VMA-lock attempt is (I3); every commit re-checks `pte_same` under
//! the PTL (I10); references and the folio lock are balanced on every exit (I11).

use crate::device::do_device_private_fault;
use crate::folio::{
    folio_lock, folio_lock_killable, folio_put, folio_ref_to_map, folio_trylock, folio_unlock,
    folio_wait_locked, page_add_anon_rmap,
};
use crate::migrate::migration_entry_wait;
use crate::mmap_lock::mmap_read_unlock;
use crate::mutant::Mutant;
use crate::objects::{mk_pte, FolioId, Kernel, PteKind, State, VM_ACCESS_FLAGS, VM_WRITE};
use crate::pgtable::{pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use crate::primitives::{might_sleep, model_error, schedule_timeout_uninterruptible, KResult};
use crate::swap::{
    add_to_swap_cache, folio_free_swap, swap_cache_get_folio, swap_count, swap_free, swap_readpage,
    swapcache_clear, swapcache_prepare, vm_swap_full, EEXIST,
};
use crate::vma_lock::vma_end_read;
use crate::vmf::{
    fault_flag_allow_retry_first, release_fault_lock, Vmf, FAULT_FLAG_KILLABLE,
    FAULT_FLAG_RETRY_NOWAIT, FAULT_FLAG_WRITE, VM_FAULT_ERROR, VM_FAULT_MAJOR, VM_FAULT_RETRY,
    VM_FAULT_SIGBUS,
};
use crate::wp::do_wp_page;

/// `mm/swap_state.c:__read_swap_cache_async()` + `swap_readpage()` (v6.6), one page.
async fn read_swap_cache_async(k: &Kernel, slot: i32) -> KResult<Option<FolioId>> {
    let new = loop {
        {
            let mut s = k.st();
            if let Some(f) = swap_cache_get_folio(&mut s, slot, "read_swap_cache_async")? {
                return Ok(Some(f));
            }
            if swap_count(&s.swap, slot) == 0 {
                return Ok(None); // Just skip read ahead for unused swap slot.
            }
            might_sleep(&mut s, "vma_alloc_folio");
        }
        k.yield_now("read_swap_cache_async:vma_alloc_folio").await;
        let err = {
            let mut s = k.st();
            let new = s.alloc_folio(0, false, "read_swap_cache_async");
            s.folios[new as usize].uptodate = false;
            let err = swapcache_prepare(&mut s.swap, slot);
            if err == 0 {
                break new;
            }
            folio_put(&mut s, new, "read_swap_cache_async")?;
            err
        };
        if err != EEXIST {
            return Ok(None);
        }
        let site = "read_swap_cache_async:schedule_timeout";
        schedule_timeout_uninterruptible(k, site).await;
    };
    {
        let mut s = k.st();
        if !folio_trylock(&mut s, new)? {
            return model_error("a new folio is locked"); // __folio_set_locked()
        }
        add_to_swap_cache(&mut s, new, slot)?;
        s.folios[new as usize].lru = true; // folio_add_lru()
    }
    swap_readpage(k, new, slot).await?;
    Ok(Some(new))
}

/// `mm/filemap.c:__folio_lock_or_retry()` (v6.6): 0 with the folio locked and FL held, or
/// RETRY with FL released (first try: wait for the lock with FL dropped).
async fn folio_lock_or_retry(k: &Kernel, vmf: &mut Vmf, folio: FolioId) -> KResult<u32> {
    let flags = vmf.flags;
    if folio_trylock(&mut k.st(), folio)? {
        return Ok(0);
    }
    if fault_flag_allow_retry_first(flags) {
        if flags & FAULT_FLAG_RETRY_NOWAIT != 0 {
            return Ok(VM_FAULT_RETRY);
        }
        fault_lock_drop(&mut k.st(), vmf)?;
        folio_wait_locked(k, folio, flags & FAULT_FLAG_KILLABLE != 0).await?;
        return Ok(VM_FAULT_RETRY);
    }
    if flags & FAULT_FLAG_KILLABLE != 0 {
        if folio_lock_killable(k, folio).await? != 0 {
            fault_lock_drop(&mut k.st(), vmf)?;
            return Ok(VM_FAULT_RETRY);
        }
    } else {
        folio_lock(k, folio).await?;
    }
    Ok(0)
}

/// How `__folio_lock_or_retry` drops the fault lock: `release_fault_lock(vmf)` since
/// fdc724d6aa44.
fn fault_lock_drop(s: &mut State, vmf: &mut Vmf) -> KResult<()> {
    if s.mutant == Mutant::Z19FolioLockMmapUnlock {
        // Z19: before fdc724d6aa44 ("mm: change folio_lock_or_retry to use vm_fault
        // directly") the function took (folio, mm, flags) and always did
        // mmap_read_unlock(mm), whichever lock the fault held.
        mmap_read_unlock(s, vmf.mm);
        vmf.fl_held = false;
        return Ok(());
    }
    release_fault_lock(s, vmf)
}

fn should_try_to_free_swap(s: &State, folio: FolioId, flags: u32) -> bool {
    let f = &s.folios[folio as usize];
    if f.swapcache < 0 {
        return false;
    }
    vm_swap_full(&s.swap) || (flags & FAULT_FLAG_WRITE != 0 && f.refcount == 2)
}

/// `mm/memory.c:do_swap_page()` (v6.6 + 13ddaf26be32). FL held, PTL not held.
pub async fn do_swap_page(k: &Kernel, vmf: &mut Vmf) -> KResult<u32> {
    let orig = vmf.orig_pte;
    match orig.kind {
        PteKind::Migration => {
            migration_entry_wait(k, vmf).await?;
            return Ok(0);
        }
        // Zdevpriv: the swap-under-VMA-lock patch as first posted ("mm: handle swap page
        // faults under VMA lock if page is uncontended", v1, May 2023, seed 001) only dropped
        // the VMA_LOCK bail-out at the top of do_swap_page; 1235ccd05b6d added this fallback.
        PteKind::DevicePrivate if vmf.vma_locked() && k.mutant != Mutant::ZdevprivUnderVmaLock => {
            // migrate_to_ram is not yet ready to operate under VMA lock.
            let mut s = k.st();
            let vma = vmf.vma(&mut s)?;
            vma_end_read(&mut s, vma)?;
            vmf.fl_held = false;
            return Ok(VM_FAULT_RETRY);
        }
        PteKind::DevicePrivate => return do_device_private_fault(k, vmf).await,
        _ => {}
    }
    let slot = orig.slot;
    let cached = swap_cache_get_folio(&mut k.st(), slot, "do_swap_page")?;
    let (folio, from_cache, need_clear_cache, mut ret) = match cached {
        Some(f) => (f, true, false, 0),
        None => match swapin_new_folio(k, slot).await? {
            Swapin::Busy => return Ok(0),
            Swapin::Failed => return swapin_failed(k, vmf).await,
            Swapin::Folio(f, from_cache, clear) => (f, from_cache, clear, VM_FAULT_MAJOR),
        },
    };
    if vmf.vma_locked() && k.mutant == Mutant::ZasyncSwapFolioLock {
        // Zasync-swap: the folio locked as do_swap_page did before d065bd810b6d ("mm: retry
        // page fault when blocking on disk transfer"), lock_page(), now under the VMA lock:
        // an asynchronous swap-in's folio stays locked until its I/O completes (seeds 000,
        // 001: only SWP_SYNCHRONOUS_IO may wait with the fault lock held).
        folio_lock(k, folio).await?;
    } else {
        ret |= folio_lock_or_retry(k, vmf, folio).await?;
    }
    if ret & VM_FAULT_RETRY != 0 {
        return out_release(&mut k.st(), folio, slot, ret, need_clear_cache);
    }
    if from_cache && k.st().folios[folio as usize].swapcache != slot {
        let mut s = k.st();
        folio_unlock(&mut s, folio)?; // the folio left the swap cache (or the slot was reused)
        return out_release(&mut s, folio, slot, ret, need_clear_cache);
    }
    let table = pte_offset_map_lock(k, vmf.mm, vmf.page).await?;
    {
        let mut s = k.st();
        let same = match table {
            Some(t) => ptep_get(&mut s, t, vmf.page)? == orig,
            None => false,
        };
        let (Some(table), true) = (table, same) else {
            if let Some(t) = table {
                pte_unmap_unlock(&mut s, t);
            }
            folio_unlock(&mut s, folio)?;
            return out_release(&mut s, folio, slot, ret, need_clear_cache);
        };
        if !s.folios[folio as usize].uptodate {
            pte_unmap_unlock(&mut s, table);
            folio_unlock(&mut s, folio)?;
            return out_release(&mut s, folio, slot, ret | VM_FAULT_SIGBUS, need_clear_cache);
        }
        vmf.table = Some(table);
    }
    swap_map(k, vmf, folio, from_cache, ret, need_clear_cache).await
}

/// How a swap-cache miss went.
enum Swapin {
    /// The folio (whether it is in the swap cache, whether the cache pin must be cleared).
    Folio(FolioId, bool, bool),
    /// Another task is swapping the entry in (13ddaf26be32): refault after a tick.
    Busy,
    /// No folio (the slot was freed under us).
    Failed,
}

/// The swap-cache miss: the skip-swapcache path (synchronous device, `__swap_count == 1`,
/// pinned by `swapcache_prepare`) or `swapin_readahead`.
async fn swapin_new_folio(k: &Kernel, slot: i32) -> KResult<Swapin> {
    let skip = {
        let s = k.st();
        s.swap.synchronous && swap_count(&s.swap, slot) == 1
    };
    if !skip {
        return Ok(match read_swap_cache_async(k, slot).await? {
            Some(f) => Swapin::Folio(f, true, false),
            None => Swapin::Failed,
        });
    }
    let busy = {
        let mut s = k.st();
        // Prevent parallel swapin from proceeding with the cache flag (13ddaf26be32).
        let busy = swapcache_prepare(&mut s.swap, slot) != 0;
        if !busy {
            might_sleep(&mut s, "vma_alloc_folio");
        }
        busy
    };
    if busy {
        schedule_timeout_uninterruptible(k, "do_swap_page:swapcache_prepare").await;
        return Ok(Swapin::Busy);
    }
    k.yield_now("do_swap_page:vma_alloc_folio").await; // skip swapcache
    let folio = {
        let mut s = k.st();
        let f = s.alloc_folio(0, false, "do_swap_page");
        s.folios[f as usize].uptodate = false;
        folio_trylock(&mut s, f)?; // __folio_set_locked()
        s.folios[f as usize].lru = true; // folio_add_lru()
        f
    };
    swap_readpage(k, folio, slot).await?;
    Ok(Swapin::Folio(folio, false, true))
}

/// No folio (the slot was freed under us): OOM only if the PTE is unchanged.
async fn swapin_failed(k: &Kernel, vmf: &Vmf) -> KResult<u32> {
    let Some(table) = pte_offset_map_lock(k, vmf.mm, vmf.page).await? else {
        return Ok(0);
    };
    let mut s = k.st();
    let same = ptep_get(&mut s, table, vmf.page)? == vmf.orig_pte;
    pte_unmap_unlock(&mut s, table);
    if same {
        return model_error("do_swap_page: VM_FAULT_OOM with an unchanged swap PTE");
    }
    Ok(0)
}

/// `out_release:`: drop our reference (and the 13ddaf26be32 cache pin).
fn out_release(s: &mut State, folio: FolioId, slot: i32, ret: u32, clear: bool) -> KResult<u32> {
    folio_put(s, folio, "do_swap_page")?;
    if clear {
        swapcache_clear(&mut s.swap, slot);
    }
    Ok(ret)
}

/// The map step of `do_swap_page` under the PTL, after `pte_same` succeeded.
async fn swap_map(
    k: &Kernel,
    vmf: &mut Vmf,
    folio: FolioId,
    from_cache: bool,
    mut ret: u32,
    clear: bool,
) -> KResult<u32> {
    let (mm, page, orig) = (vmf.mm, vmf.page, vmf.orig_pte);
    let Some(table) = vmf.table else {
        return model_error("do_swap_page without a page table");
    };
    let slot = orig.slot;
    {
        let mut s = k.st();
        if s.folios[folio as usize].anon_exclusive {
            return model_error("BUG_ON(folio_test_anon(folio) && PageAnonExclusive(page))");
        }
        let exclusive = orig.exclusive || !from_cache;
        swap_free(&mut s, slot);
        if should_try_to_free_swap(&s, folio, vmf.flags) {
            folio_free_swap(&mut s, folio)?;
        }
        let flags = vmf.vm_flags(&mut s)?;
        let (mut writable, mut dirty, mut rmap_exclusive) = (false, false, false);
        if exclusive || s.folios[folio as usize].refcount == 1 {
            if vmf.flags & FAULT_FLAG_WRITE != 0 {
                (writable, dirty) = (flags & VM_WRITE != 0, true);
                vmf.flags &= !FAULT_FLAG_WRITE;
            }
            rmap_exclusive = true;
        }
        let entry = mk_pte(folio, writable, true, dirty, flags & VM_ACCESS_FLAGS == 0);
        vmf.orig_pte = entry;
        page_add_anon_rmap(&mut s, folio, rmap_exclusive, "do_swap_page")?;
        folio_ref_to_map(&mut s, folio);
        set_pte_at(&mut s, mm, table, page, entry, "do_swap_page")?;
        folio_unlock(&mut s, folio)?;
        if vmf.flags & FAULT_FLAG_WRITE == 0 {
            pte_unmap_unlock(&mut s, table);
        }
    }
    if vmf.flags & FAULT_FLAG_WRITE != 0 {
        ret |= do_wp_page(k, vmf).await?; // releases the PTL
        if ret & VM_FAULT_ERROR != 0 {
            ret &= VM_FAULT_ERROR;
        }
    }
    if clear {
        // Clear the swap cache pin for direct swapin after PTL unlock.
        swapcache_clear(&mut k.st().swap, slot);
    }
    Ok(ret)
}
