//! `handle_mm_fault` -> `handle_pte_fault` -> `do_anonymous_page` (mm/memory.c, v6.6;
//! research §3). `do_wp_page` is in `wp`, `do_swap_page` in `swapin`.
//!
//! Entered with the fault lock held: the VMA's read lock (`FAULT_FLAG_VMA_LOCK`) or
//! `mmap_lock` for read. Under the VMA lock the VMA always has an `anon_vma` (6.6's
//! `lock_vma_under_rcu` refuses one without), so `anon_vma_prepare` is a no-op there.
//!
//! | rule                     | when                                                        |
//! |--------------------------|-------------------------------------------------------------|
//! | `vma.detached-used`      | a fault runs on a detached VMA or one not covering the address (I14) |
//! | `fork.exclusion`         | a fault on a parent VMA `dup_mmap` has already write-locked (I16) |
//! | `lock.retry-nowait-vma`  | `sanitize_fault_flags`: `VMA_LOCK` with `RETRY_NOWAIT` (I2)     |
//! | `lock.handoff`           | `vmf::handle_mm_fault_contract` on every return (I1)        |

use crate::folio::{folio_put, folio_ref_to_map, page_add_anon_rmap};
use crate::objects::{
    mk_pte, zero_pte, Kernel, MmId, Page, PteKind, State, VmaId, VM_ACCESS_FLAGS, VM_UFFD_MISSING,
    VM_WRITE,
};
use crate::pgtable::{
    pte_alloc, pte_offset_map_lock, pte_slot, pte_unmap_unlock, ptep_get, set_pte_at, table_index,
};
use crate::primitives::{might_sleep, model_error, violate, KResult};
use crate::swapin::do_swap_page;
use crate::userfaultfd::handle_userfault;
use crate::vma::anon_vma_prepare;
use crate::vmf::{
    fault_lock_held, handle_mm_fault_contract, Vmf, FAULT_FLAG_ORIG_PTE_VALID,
    FAULT_FLAG_RETRY_NOWAIT, FAULT_FLAG_VMA_LOCK, FAULT_FLAG_WRITE, VM_FAULT_SIGSEGV,
};
use crate::wp::do_wp_page;

/// The entry checks of the contract layer: I14, I16, I2.
fn fault_entry_checks(s: &mut State, mm: MmId, vma: VmaId, page: Page, flags: u32) -> u32 {
    let v = &s.vmas[vma];
    if v.detached || !v.covers(page) || !s.mm(mm).vmas.contains(&vma) {
        let msg = format!("vma#{vma} (detached: {}) used for page {page}", v.detached);
        violate(s, "vma.detached-used", "handle_mm_fault", msg);
    }
    if s.mm(mm).fork_visited.contains(&vma) {
        let msg = format!("fault on vma#{vma} while dup_mmap holds it");
        violate(s, "fork.exclusion", "handle_mm_fault", msg);
    }
    if flags & (FAULT_FLAG_VMA_LOCK | FAULT_FLAG_RETRY_NOWAIT)
        == FAULT_FLAG_VMA_LOCK | FAULT_FLAG_RETRY_NOWAIT
    {
        let msg = "FAULT_FLAG_VMA_LOCK with FAULT_FLAG_RETRY_NOWAIT".to_owned();
        violate(s, "lock.retry-nowait-vma", "sanitize_fault_flags", msg);
        return VM_FAULT_SIGSEGV;
    }
    0
}

/// `mm/memory.c:handle_mm_fault()` (v6.6). Caller holds the fault lock; the callee releases it
/// iff the result has RETRY or COMPLETED (I1, checked on return).
pub async fn handle_mm_fault(
    k: &Kernel,
    mm: MmId,
    vma: VmaId,
    page: Page,
    flags: u32,
) -> KResult<u32> {
    let mut vmf = Vmf::new(mm, vma, page, flags);
    let (held_before, sanitized) = {
        let mut s = k.st();
        let held = fault_lock_held(&s, &vmf);
        (held, fault_entry_checks(&mut s, mm, vma, page, flags))
    };
    let ret = if sanitized == 0 {
        handle_pte_fault(k, &mut vmf).await?
    } else {
        sanitized
    };
    handle_mm_fault_contract(&mut k.st(), &vmf, held_before, ret);
    Ok(ret)
}

/// `mm/memory.c:handle_pte_fault()` (v6.6).
pub async fn handle_pte_fault(k: &Kernel, vmf: &mut Vmf) -> KResult<u32> {
    let (mm, page) = (vmf.mm, vmf.page);
    let table = k.st().mm(mm).pmd[table_index(page)];
    match table {
        None => {
            vmf.table = None;
            vmf.flags &= !FAULT_FLAG_ORIG_PTE_VALID;
        }
        Some(t) => {
            vmf.table = Some(t);
            vmf.orig_pte = ptep_get(&mut k.st(), t, page)?; // ptep_get_lockless()
            vmf.flags |= FAULT_FLAG_ORIG_PTE_VALID;
            k.yield_now("handle_pte_fault:ptep_get_lockless").await;
            if vmf.orig_pte.is_none() {
                vmf.table = None;
            }
        }
    }
    if vmf.table.is_none() {
        return do_anonymous_page(k, vmf).await; // do_pte_missing(): anonymous VMA
    }
    let orig = vmf.orig_pte;
    if !orig.is_present() {
        return do_swap_page(k, vmf).await;
    }
    if orig.protnone && vmf.vm_flags(&mut k.st())? & VM_ACCESS_FLAGS != 0 {
        return model_error("do_numa_page: NUMA hinting is not modelled");
    }
    let Some(table) = pte_offset_map_lock(k, mm, page).await? else {
        return Ok(0);
    };
    vmf.table = Some(table);
    {
        let mut s = k.st();
        if ptep_get(&mut s, table, page)? != orig {
            pte_unmap_unlock(&mut s, table); // lost a race: refault
            return Ok(0);
        }
        let write = vmf.flags & FAULT_FLAG_WRITE != 0;
        if !write || orig.writable {
            let mut entry = orig;
            entry.young = true;
            entry.dirty |= write;
            if entry != orig {
                set_pte_at(&mut s, mm, table, page, entry, "handle_pte_fault")?;
                // ptep_set_access_flags()
            }
            pte_unmap_unlock(&mut s, table);
            return Ok(0);
        }
    }
    do_wp_page(k, vmf).await // entered with the PTL held
}

/// `mm/memory.c:vmf_pte_changed()`: against `orig_pte` if it was valid, else against none.
pub fn vmf_pte_changed(vmf: &Vmf, s: &State, table: usize) -> bool {
    let pte = s.tables[table].ptes[pte_slot(vmf.page)];
    if vmf.flags & FAULT_FLAG_ORIG_PTE_VALID != 0 {
        return pte != vmf.orig_pte;
    }
    pte.kind != PteKind::None
}

/// `mm/memory.c:do_anonymous_page()` (v6.6): the zero page on a read, else a new folio.
pub async fn do_anonymous_page(k: &Kernel, vmf: &mut Vmf) -> KResult<u32> {
    let (mm, page) = (vmf.mm, vmf.page);
    pte_alloc(k, mm, page).await?;
    let flags = vmf.vm_flags(&mut k.st())?;
    let protnone = flags & VM_ACCESS_FLAGS == 0;
    if vmf.flags & FAULT_FLAG_WRITE == 0 {
        let Some(table) = pte_offset_map_lock(k, mm, page).await? else {
            return Ok(0);
        };
        {
            let mut s = k.st();
            if vmf_pte_changed(vmf, &s, table) {
                pte_unmap_unlock(&mut s, table);
                return Ok(0);
            }
            let uffd = vmf.vm_flags(&mut s)? & VM_UFFD_MISSING != 0;
            if !uffd {
                let zero = zero_pte(protnone);
                set_pte_at(&mut s, mm, table, page, zero, "do_anonymous_page")?;
            }
            pte_unmap_unlock(&mut s, table);
            if !uffd {
                return Ok(0);
            }
        }
        return handle_userfault(k, vmf).await;
    }
    let vma = vmf.vma(&mut k.st())?;
    anon_vma_prepare(k, mm, vma).await?;
    might_sleep(&mut k.st(), "vma_alloc_zeroed_movable_folio");
    k.yield_now("do_anonymous_page:vma_alloc_zeroed_movable_folio")
        .await;
    let (folio, entry) = {
        let mut s = k.st();
        let folio = s.alloc_folio(0, false, "do_anonymous_page");
        let writable = vmf.vm_flags(&mut s)? & VM_WRITE != 0;
        (folio, mk_pte(folio, writable, true, writable, protnone))
    };
    let Some(table) = pte_offset_map_lock(k, mm, page).await? else {
        folio_put(&mut k.st(), folio, "do_anonymous_page")?;
        return Ok(0);
    };
    {
        let mut s = k.st();
        let changed = vmf_pte_changed(vmf, &s, table);
        if changed || vmf.vm_flags(&mut s)? & VM_UFFD_MISSING != 0 {
            pte_unmap_unlock(&mut s, table);
            folio_put(&mut s, folio, "do_anonymous_page")?;
            if changed {
                return Ok(0);
            }
        } else {
            page_add_anon_rmap(&mut s, folio, true, "do_anonymous_page")?; // page_add_new_anon_rmap()
            s.folios[folio as usize].lru = true; // folio_add_lru_vma()
            folio_ref_to_map(&mut s, folio);
            set_pte_at(&mut s, mm, table, page, entry, "do_anonymous_page")?;
            pte_unmap_unlock(&mut s, table);
            return Ok(0);
        }
    }
    handle_userfault(k, vmf).await // userfaultfd_missing(): the new folio was put first
}
