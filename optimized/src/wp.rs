//! Write-protect faults: `do_wp_page`, `wp_page_reuse`, `wp_page_copy` (research §3.5).
//!
//! `do_wp_page` is entered with the PTL held (from `handle_pte_fault` or `do_swap_page`) and
//! releases it. An anonymous folio is reused when its page is `PageAnonExclusive`, or when the
//! v6.6 inline checks prove this mapping holds the only reference (freeing a swap-cache copy
//! under the folio lock taken by trylock); otherwise it is copied, with an extra reference on
//! the old folio held across `wp_page_copy`. The zero page is always copied. Under the VMA
//! lock, 6.6 bails out with RETRY before the copy if the VMA has no `anon_vma` (unreachable
//! here: `lock_vma_under_rcu` refused such a VMA).

use crate::folio::{
    check_folio, folio_get, folio_put, folio_put_ref, folio_ref_to_map, folio_trylock,
    folio_unlock, page_add_anon_rmap, page_remove_rmap,
};
use crate::objects::{mk_pte, FolioId, Kernel, State, VM_WRITE};
use crate::pgtable::{pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use crate::primitives::{might_sleep, model_error, KResult};
use crate::swap::folio_free_swap;
use crate::vma::anon_vma_prepare;
use crate::vma_lock::vma_end_read;
use crate::vmf::{Vmf, VM_FAULT_RETRY};

/// `mm/memory.c:do_wp_page()` (v6.6), private anonymous mappings. Entered with the PTL.
pub async fn do_wp_page(k: &Kernel, vmf: &mut Vmf) -> KResult<u32> {
    let Some(table) = vmf.table else {
        return model_error("do_wp_page without a page table");
    };
    let folio = vmf.orig_pte.folio; // vm_normal_page(): None for the zero page
    {
        let mut s = k.st();
        if let Some(f) = folio {
            check_folio(&mut s, f, "do_wp_page")?;
            if s.folios[f as usize].anon_exclusive || try_reuse(&mut s, f)? {
                return wp_page_reuse(&mut s, vmf, table);
            }
        }
        // copy:
        if vmf.vma_locked() {
            let vma = vmf.vma(&mut s)?;
            if s.vmas[vma].anon_vma.is_none() {
                pte_unmap_unlock(&mut s, table);
                vma_end_read(&mut s, vma)?;
                vmf.fl_held = false;
                return Ok(VM_FAULT_RETRY);
            }
        }
        if let Some(f) = folio {
            folio_get(&mut s, f, "do_wp_page")?;
        }
        pte_unmap_unlock(&mut s, table);
    }
    wp_page_copy(k, vmf, folio).await
}

/// The 6.6 inline reuse checks (the decision is re-made under the folio lock).
fn try_reuse(s: &mut State, f: FolioId) -> KResult<bool> {
    let folio = &s.folios[f as usize];
    let cached = i32::from(folio.swapcache >= 0);
    if folio.refcount > 3 || folio.refcount > 1 + cached || !folio_trylock(s, f)? {
        return Ok(false);
    }
    if s.folios[f as usize].swapcache >= 0 {
        folio_free_swap(s, f)?;
    }
    let reuse = s.folios[f as usize].refcount == 1;
    if reuse {
        s.folios[f as usize].anon_exclusive = true; // page_move_anon_rmap()
    }
    folio_unlock(s, f)?;
    Ok(reuse)
}

/// `mm/memory.c:wp_page_reuse()`: make the PTE young, dirty and (if `VM_WRITE`) writable.
fn wp_page_reuse(s: &mut State, vmf: &Vmf, table: usize) -> KResult<u32> {
    let writable = vmf.vm_flags(s)? & VM_WRITE != 0; // maybe_mkwrite()
    let mut entry = vmf.orig_pte;
    entry.young = true;
    entry.dirty = true;
    entry.writable = writable;
    set_pte_at(s, vmf.mm, table, vmf.page, entry, "wp_page_reuse")?;
    pte_unmap_unlock(s, table);
    Ok(0)
}

/// `mm/memory.c:wp_page_copy()` (v6.6). Entered without the PTL, holding an extra reference
/// on `old` (None: the zero page), which is dropped before returning.
pub async fn wp_page_copy(k: &Kernel, vmf: &mut Vmf, old: Option<FolioId>) -> KResult<u32> {
    let (mm, page) = (vmf.mm, vmf.page);
    let vma = vmf.vma(&mut k.st())?;
    anon_vma_prepare(k, mm, vma).await?;
    might_sleep(&mut k.st(), "wp_page_copy");
    k.yield_now("wp_page_copy:vma_alloc_folio").await;
    let new = {
        let mut s = k.st();
        let data = old.map_or(0, |f| s.folios[f as usize].data); // __wp_page_copy_user()
        s.alloc_folio(data, false, "wp_page_copy")
    };
    might_sleep(&mut k.st(), "mmu_notifier_invalidate_range_start");
    // [S], after the memcg charge.
    k.yield_now("wp_page_copy:mmu_notifier_invalidate_range_start")
        .await;
    let table = pte_offset_map_lock(k, mm, page).await?;
    let mut s = k.st();
    let mut copied = false;
    if let Some(t) = table {
        if ptep_get(&mut s, t, page)? == vmf.orig_pte {
            let writable = vmf.vm_flags(&mut s)? & VM_WRITE != 0;
            let entry = mk_pte(new, writable, true, true, false);
            page_add_anon_rmap(&mut s, new, true, "wp_page_copy")?; // page_add_new_anon_rmap()
            s.folios[new as usize].lru = true;
            folio_ref_to_map(&mut s, new);
            set_pte_at(&mut s, mm, t, page, entry, "wp_page_copy")?;
            if let Some(o) = old {
                page_remove_rmap(&mut s, o, "wp_page_copy")?;
            }
            copied = true;
        }
        pte_unmap_unlock(&mut s, t);
    }
    if copied {
        if let Some(o) = old {
            folio_put_ref(&mut s, o, "wp_page_copy")?; // the old PTE's reference
            free_swap_cache(&mut s, o)?;
        }
    } else {
        folio_put(&mut s, new, "wp_page_copy")?;
    }
    if let Some(o) = old {
        folio_put(&mut s, o, "wp_page_copy")?; // do_wp_page's extra reference
    }
    Ok(0)
}

/// `mm/swap_state.c:free_swap_cache()`: drop an unmapped folio's swap-cache copy.
pub fn free_swap_cache(s: &mut State, f: FolioId) -> KResult<()> {
    let folio = &s.folios[f as usize];
    if folio.freed || folio.swapcache < 0 || folio.mapcount != 0 {
        return Ok(());
    }
    if folio_trylock(s, f)? {
        folio_free_swap(s, f)?;
        folio_unlock(s, f)?;
    }
    Ok(())
}
