//! fork: `dup_mmap` and `copy_page_range` (kernel/fork.c, mm/memory.c, v6.6; research §7.3,
//! MODEL.md §8), and `exit_mmap` for a child torn down because the parent was killed.
//!
//! `dup_mmap` holds the parent's `mmap_lock` for write and, before copying each parent VMA,
//! write-locks it (`vma_start_write`, fb49c455323f): from then until `mmap_write_unlock`, no
//! VMA-lock fault runs on it (I16); parent VMAs the loop has not reached yet still take
//! VMA-lock faults. Page tables are copied only for VMAs with an `anon_vma`, under both PTLs,
//! with an `[I]` point per entry, with the COW conventions of MODEL.md §8.

use crate::folio::{folio_get_ref, page_add_anon_rmap};
use crate::mmap::{free_pgtables, table_ranges, tlb_finish_mmu, zap_pte_range, NO_CEILING};
use crate::mmap_lock::{mmap_write_lock, mmap_write_lock_killable, mmap_write_unlock};
use crate::objects::{Kernel, MmId, Page, Pte, PteKind, State, TableId, VmaId, VM_UFFD_MISSING};
use crate::pgtable::{pte_alloc, pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use crate::primitives::{might_sleep, model_error, spin_lock, spin_unlock, KResult, LockId};
use crate::swap::swap_duplicate;
use crate::vma::{vm_area_dup, vma_iter_store};
use crate::vma_lock::vma_start_write;

pub const EAGAIN: i32 = -11;
pub const EINTR: i32 = -4;

/// `fork()` as far as memory goes: the child's mm id, -EAGAIN (no free id) or -EINTR.
pub async fn do_fork(k: &Kernel, oldmm: MmId) -> KResult<i64> {
    let cid = {
        let mut s = k.st();
        let Some(cid) = s.mms.iter().position(Option::is_none) else {
            return Ok(i64::from(EAGAIN));
        };
        s.new_mm(cid); // dup_mm(): reserved, not yet visible
        cid
    };
    let rc = dup_mmap(k, cid, oldmm).await?;
    if rc != 0 || k.st().me().killed {
        // copy_process() gives up on a fatal signal: mmput(child)
        exit_mmap(k, cid).await?;
        k.st().remove_mm(cid);
        return Ok(i64::from(rc));
    }
    k.st().mm_mut(cid).visible = true;
    Ok(i64::try_from(cid).unwrap_or(i64::from(EAGAIN)))
}

/// `kernel/fork.c:dup_mmap()` (v6.6).
async fn dup_mmap(k: &Kernel, mm: MmId, oldmm: MmId) -> KResult<i32> {
    if mmap_write_lock_killable(k, oldmm).await? != 0 {
        return Ok(EINTR);
    }
    mmap_write_lock(k, mm).await?; // mmap_write_lock_nested(): nobody else sees mm
    let parents = k.st().mm(oldmm).vmas.clone();
    let mut retval = 0;
    for mpnt in parents {
        vma_start_write(k, mpnt).await?;
        if k.st().me().killed {
            retval = EINTR; // Don't duplicate many vmas if we've been oom-killed
            break;
        }
        {
            let mut s = k.st();
            s.mm_mut(oldmm).fork_visited.push(mpnt);
            might_sleep(&mut s, "vm_area_dup");
        }
        k.yield_now("dup_mmap:vm_area_dup").await;
        // dup_userfaultfd() clears VM_UFFD_MISSING through vm_flags_reset(), which asserts the
        // child's lock.
        crate::vma::mm_assert_write_locked(k, mm, "dup_userfaultfd");
        let has_anon = {
            let mut s = k.st();
            let tmp = vm_area_dup(&mut s, mpnt, mm);
            let (anon, chain) = (s.vmas[mpnt].anon_vma, s.vmas[mpnt].anon_vma_chain_len);
            let t = &mut s.vmas[tmp];
            t.vm_flags &= !VM_UFFD_MISSING; // without UFFD_FEATURE_EVENT_FORK
            t.uffd_ctx = None;
            if anon.is_some() {
                // anon_vma_fork(): a new anon_vma linked under the parent's
                let a = s.alloc_anon_vma();
                s.vmas[tmp].anon_vma = Some(a);
                s.vmas[tmp].anon_vma_chain_len = chain + 1;
            }
            vma_iter_store(&mut s, mm, tmp);
            anon.is_some()
        };
        if has_anon {
            copy_page_range(k, mm, oldmm, mpnt).await?;
        }
    }
    // loop_out:
    let mut s = k.st();
    mmap_write_unlock(&mut s, mm);
    s.mm_mut(oldmm).fork_visited.clear();
    mmap_write_unlock(&mut s, oldmm); // flush_tlb_mm(oldmm) first: no TLB in the model
    Ok(retval)
}

/// `mm/memory.c:copy_page_range()` (v6.6): `copy_pte_range()` for each table of the VMA;
/// asserts the source mm write-locked (the child's is asserted by `vm_flags_reset`).
async fn copy_page_range(k: &Kernel, dst_mm: MmId, src_mm: MmId, src_vma: VmaId) -> KResult<()> {
    crate::vma::mm_assert_write_locked(k, src_mm, "copy_page_range");
    let (start, end) = k.vma_range(src_vma);
    for (t, first, stop) in table_ranges(start, end) {
        if k.st().mm(src_mm).pmd[t].is_none() {
            continue;
        }
        pte_alloc(k, dst_mm, first).await?;
        let dst = pte_offset_map_lock(k, dst_mm, first).await?;
        let src = k.st().mm(src_mm).pmd[t];
        let (Some(dst), Some(src)) = (dst, src) else {
            return model_error("copy_pte_range: a table vanished under mmap_lock");
        };
        spin_lock(k, LockId::Ptl(src)).await?; // spin_lock_nested(src_ptl)
        for page in first..stop {
            if ptep_get(&mut k.st(), src, page)?.is_none() {
                continue;
            }
            k.yield_now("copy_pte_range:pte").await;
            copy_one_pte(&mut k.st(), dst_mm, dst, src_mm, src, page)?;
        }
        let mut s = k.st();
        spin_unlock(&mut s, LockId::Ptl(src));
        pte_unmap_unlock(&mut s, dst);
    }
    Ok(())
}

/// `copy_present_pte` / `copy_nonpresent_pte` for a COW mapping. Both PTLs held.
fn copy_one_pte(
    s: &mut State,
    dst_mm: MmId,
    dst: TableId,
    src_mm: MmId,
    src: TableId,
    page: Page,
) -> KResult<()> {
    let mut pte = ptep_get(s, src, page)?;
    let parent = pte;
    let child = match (pte.kind, pte.folio) {
        (PteKind::Present, Some(f)) => {
            folio_get_ref(s, f, "copy_present_pte")?;
            s.folios[f as usize].anon_exclusive = false; // page_try_dup_anon_rmap()
            page_add_anon_rmap(s, f, false, "copy_present_pte")?;
            pte.writable = false; // ptep_set_wrprotect()
            Pte {
                young: false,
                ..pte
            }
        }
        (PteKind::Zero, _) => Pte {
            young: false,
            ..pte
        },
        (PteKind::Swap, _) => {
            swap_duplicate(&mut s.swap, pte.slot);
            pte.exclusive = false; // Mark the swap entry as shared.
            pte
        }
        (PteKind::Migration, _) => {
            pte.writable = false;
            pte.exclusive = false;
            pte
        }
        (PteKind::DevicePrivate, Some(f)) => {
            folio_get_ref(s, f, "copy_nonpresent_pte")?;
            s.folios[f as usize].anon_exclusive = false;
            page_add_anon_rmap(s, f, false, "copy_nonpresent_pte")?;
            pte.writable = false;
            pte
        }
        _ => pte,
    };
    if pte != parent {
        let function = if parent.kind == PteKind::Present {
            "copy_present_pte"
        } else {
            "copy_nonpresent_pte"
        };
        set_pte_at(s, src_mm, src, page, pte, function)?;
    }
    set_pte_at(s, dst_mm, dst, page, child, "copy_pte_range")
}

/// `kernel/fork.c:mmput()` -> `mm/mmap.c:exit_mmap()` for a child nobody else can see: its VMAs
/// are freed at once (`remove_vma(vma, unreachable=true)`: `__vm_area_free`, no RCU).
async fn exit_mmap(k: &Kernel, mm: MmId) -> KResult<()> {
    mmap_write_lock(k, mm).await?;
    let vmas = k.st().mm(mm).vmas.clone();
    for &v in &vmas {
        let (start, end) = k.vma_range(v);
        zap_pte_range(k, mm, start, end).await?;
    }
    let mut s = k.st();
    let m = s.mm_mut(mm);
    m.detached.extend(vmas.iter().copied());
    m.vmas.clear();
    free_pgtables(&mut s, mm, &vmas, 0, NO_CEILING);
    tlb_finish_mmu(&mut s)?;
    for &v in &vmas {
        s.vmas[v].freed = true;
    }
    mmap_write_unlock(&mut s, mm);
    Ok(())
}
