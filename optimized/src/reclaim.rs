//! `madvise(MADV_PAGEOUT)`: isolate this mm's exclusively mapped folios and reclaim them to
//! swap (mm/madvise.c, mm/vmscan.c, v6.6; MODEL.md §8). Reclaim takes no VMA lock: it works
//! through the folio lock, rmap walks and the PTL.
//!
//! Per PTE table, under the PTL: present, normal, on the LRU, `mapcount == 1`: clear the
//! PTE's young bit and isolate the folio. Then `shrink_folio_list` for the batch, one folio at
//! a time (a yield point each): trylock; keep if under writeback or referenced; `add_to_swap`;
//! `try_to_unmap`; `pageout` if dirty; relock and `__remove_mapping`. Kept folios are put back.

use crate::folio::{
    folio_isolate_lru, folio_put, folio_putback_lru, folio_trylock, folio_unlock, EINTR,
};
use crate::madvise::{madvise_has_hole, madvise_walk};
use crate::mmap::{table_ranges, ENOMEM};
use crate::mmap_lock::{mmap_read_lock, mmap_read_unlock};
use crate::objects::{FolioId, Kernel, MmId, Page, Pte, PteKind};
use crate::pgtable::{pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use crate::primitives::KResult;
use crate::rmap::{folio_referenced, try_to_unmap};
use crate::swap::{
    add_to_swap_cache, delete_from_swap_cache, folio_alloc_swap, folio_free_swap, swap_writepage,
};

/// `madvise(MADV_PAGEOUT)` under `mmap_lock` read; -ENOMEM if the range has a hole.
pub async fn do_madvise_pageout(k: &Kernel, mm: MmId, start: Page, npages: Page) -> KResult<i32> {
    let end = start + npages;
    mmap_read_lock(k, mm).await?;
    let pieces = madvise_walk(&mut k.st(), mm, start, end);
    for &(_, lo, hi) in &pieces {
        if madvise_pageout_page_range(k, mm, lo, hi).await? == EINTR {
            mmap_read_unlock(&mut k.st(), mm);
            return Ok(EINTR);
        }
    }
    mmap_read_unlock(&mut k.st(), mm);
    Ok(if madvise_has_hole(&pieces, start, end) {
        ENOMEM
    } else {
        0
    })
}

/// `mm/madvise.c:madvise_cold_or_pageout_pte_range()` per table, then `reclaim_pages()`; 0,
/// or -EINTR: each table's walk starts with `if (fatal_signal_pending(current)) return
/// -EINTR;`.
async fn madvise_pageout_page_range(k: &Kernel, mm: MmId, start: Page, end: Page) -> KResult<i32> {
    for (t, first, stop) in table_ranges(start, end) {
        if k.st().mm(mm).pmd[t].is_none() {
            continue;
        }
        if k.st().me().killed {
            return Ok(EINTR);
        }
        let Some(table) = pte_offset_map_lock(k, mm, first).await? else {
            continue;
        };
        let mut batch: Vec<FolioId> = Vec::new();
        {
            let mut s = k.st();
            for page in first..stop {
                let pte = ptep_get(&mut s, table, page)?;
                let Some(f) = pte.folio.filter(|_| pte.kind == PteKind::Present) else {
                    continue;
                };
                let folio = &s.folios[f as usize];
                if !folio.lru || folio.mapcount != 1 {
                    continue; // Do not interfere with other mappings of this folio.
                }
                if pte.young {
                    let old = Pte {
                        young: false,
                        ..pte
                    };
                    set_pte_at(&mut s, mm, table, page, old, "madvise_pageout")?;
                }
                if folio_isolate_lru(&mut s, f, "madvise_pageout")? {
                    batch.push(f);
                }
            }
            pte_unmap_unlock(&mut s, table);
        }
        if !batch.is_empty() {
            shrink_folio_list(k, &batch).await?;
        }
    }
    Ok(0)
}

/// What reclaim did with one locked folio.
enum Shrunk {
    Freed,
    /// Kept: whether it is still locked.
    Keep(bool),
}

/// `mm/vmscan.c:shrink_folio_list()` (v6.6) for isolated anonymous folios.
async fn shrink_folio_list(k: &Kernel, folios: &[FolioId]) -> KResult<()> {
    for &folio in folios {
        k.yield_now("shrink_folio_list:folio").await;
        if !folio_trylock(&mut k.st(), folio)? {
            folio_putback_lru(&mut k.st(), folio, "shrink_folio_list")?; // keep
            continue;
        }
        let Shrunk::Keep(locked) = shrink_one(k, folio).await? else {
            continue; // freed
        };
        let mut s = k.st();
        if locked {
            folio_unlock(&mut s, folio)?; // keep_locked
        }
        folio_putback_lru(&mut s, folio, "shrink_folio_list")?;
    }
    Ok(())
}

/// One locked folio through reclaim.
async fn shrink_one(k: &Kernel, folio: FolioId) -> KResult<Shrunk> {
    if k.st().folios[folio as usize].writeback {
        return Ok(Shrunk::Keep(true));
    }
    if folio_referenced(k, folio).await? != 0 {
        return Ok(Shrunk::Keep(true)); // FOLIOREF_ACTIVATE / FOLIOREF_KEEP
    }
    if k.st().folios[folio as usize].swapcache < 0 {
        // add_to_swap()
        let mut s = k.st();
        let slot = folio_alloc_swap(&mut s.swap);
        if slot < 0 {
            return Ok(Shrunk::Keep(true));
        }
        add_to_swap_cache(&mut s, folio, slot)?;
        s.folios[folio as usize].dirty = true;
    }
    if k.st().folios[folio as usize].mapcount != 0 {
        try_to_unmap(k, folio).await?;
        if k.st().folios[folio as usize].mapcount != 0 {
            return Ok(Shrunk::Keep(true));
        }
    }
    if k.st().folios[folio as usize].dirty {
        {
            let mut s = k.st();
            if s.folios[folio as usize].refcount != 2 {
                return Ok(Shrunk::Keep(true)); // is_page_cache_freeable()
            }
            if folio_free_swap(&mut s, folio)? {
                // swap_writepage(): nobody uses the slot any more
                folio_unlock(&mut s, folio)?;
                return Ok(Shrunk::Keep(false));
            }
        }
        swap_writepage(k, folio).await?; // pageout(): unlocks the folio
        let mut s = k.st();
        let f = &s.folios[folio as usize];
        if f.writeback || f.dirty || !folio_trylock(&mut s, folio)? {
            return Ok(Shrunk::Keep(false));
        }
        let f = &s.folios[folio as usize];
        if f.dirty || f.writeback {
            return Ok(Shrunk::Keep(true));
        }
    }
    let mut s = k.st();
    let f = &s.folios[folio as usize];
    if f.refcount == 2 && !f.dirty {
        // __remove_mapping()
        delete_from_swap_cache(&mut s, folio)?;
        folio_unlock(&mut s, folio)?;
        folio_put(&mut s, folio, "shrink_folio_list")?; // the isolation reference: freed
        return Ok(Shrunk::Freed);
    }
    Ok(Shrunk::Keep(true))
}
