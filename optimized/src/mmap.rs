//! Address-space writers: mmap (`MAP_FIXED` anonymous private) and munmap, and the zap /
//! `free_pgtables` / `mmu_gather` machinery they share with madvise and fork (mm/mmap.c,
//! mm/memory.c, v6.6; research §7.1). mprotect is in `mprotect`, DONTNEED in `madvise`.
//!
//! munmap holds `mmap_lock` for write while it splits, write-locks (`vma_start_write`: waits
//! for in-flight VMA-lock faults), detaches and unlinks the VMAs; it then downgrades (which
//! ends every VMA write lock) and zaps under the read lock, concurrently with faults on other
//! VMAs. Removed VMAs are freed through RCU. A new mmap VMA is write-locked before it enters
//! the tree. A zap clears each PTE under its PTL with one `[I]` point per entry; a present
//! page's reference goes to the task's `mmu_gather` and is put by `tlb_finish_mmu`.

use crate::folio::{folio_put, folio_put_ref, folio_ref_from_map, page_remove_rmap};
use crate::mmap_lock::{
    mmap_read_unlock, mmap_write_downgrade, mmap_write_lock_killable, mmap_write_unlock,
};
use crate::mutant::Mutant;
use crate::objects::{
    Kernel, MmId, Page, PteKind, State, TableId, VmaId, NR_TABLES, PTE_NONE, TABLE_PAGES,
    VM_ACCESS_FLAGS, VM_ACCOUNT, VM_GROWSDOWN, VM_WRITE,
};
use crate::pgtable::{free_pte_range, pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use crate::primitives::KResult;
use crate::rcu::vm_area_free;
use crate::swap::free_swap_and_cache;
use crate::vma::{find_vma, split_vma, vma_iter_remove, vma_iter_store, vma_prev_of};
use crate::vma_lock::{vma_mark_detached, vma_start_write};
use crate::vma_merge::{can_vma_merge, vma_expand};

pub const EINTR: i32 = -4;
pub const ENOMEM: i32 = -12;
pub const EINVAL: i32 = -22;
pub const NO_CEILING: Page = 1 << 30;

/// (table, first page, end page) for every table intersecting `[start, end)`.
pub fn table_ranges(start: Page, end: Page) -> impl Iterator<Item = (usize, Page, Page)> {
    let per = TABLE_PAGES;
    let mut page = start;
    std::iter::from_fn(move || {
        if page >= end {
            return None;
        }
        let t = page / per;
        let stop = end.min((t + 1) * per);
        let item = (t as usize, page, stop);
        page = stop;
        Some(item)
    })
}

// ---------------------------------------------------------------------------------------------
// Zap and the mmu_gather

/// `mm/memory.c:zap_pte_range()` (v6.6) over `[start, end)`: each PTE cleared under its PTL
/// (an `[I]` point before each), present pages' references into the `mmu_gather`.
pub async fn zap_pte_range(k: &Kernel, mm: MmId, start: Page, end: Page) -> KResult<()> {
    for (t, first, stop) in table_ranges(start, end) {
        if k.st().mm(mm).pmd[t].is_none() {
            continue;
        }
        let Some(table) = pte_offset_map_lock(k, mm, first).await? else {
            continue;
        };
        for page in first..stop {
            if ptep_get(&mut k.st(), table, page)?.is_none() {
                continue;
            }
            k.yield_now("zap_pte_range:pte").await;
            zap_one_pte(&mut k.st(), mm, table, page)?;
        }
        pte_unmap_unlock(&mut k.st(), table);
    }
    Ok(())
}

/// Clear one PTE (`ptep_get_and_clear_full`) and release what it held. PTL held.
fn zap_one_pte(s: &mut State, mm: MmId, table: TableId, page: Page) -> KResult<()> {
    let pte = ptep_get(s, table, page)?;
    set_pte_at(s, mm, table, page, PTE_NONE, "zap_pte_range")?;
    match (pte.kind, pte.folio) {
        (PteKind::Present, Some(f)) => {
            page_remove_rmap(s, f, "zap_pte_range")?;
            folio_ref_from_map(s, f, "zap_pte_range"); // __tlb_remove_page()
            s.me().tlb.push(f);
        }
        (PteKind::Swap, _) => free_swap_and_cache(s, pte.slot)?,
        (PteKind::DevicePrivate, Some(f)) => {
            page_remove_rmap(s, f, "zap_pte_range")?;
            folio_put_ref(s, f, "zap_pte_range")?;
        }
        // The zero page and migration entries: just cleared (the migrator will not find it).
        _ => {}
    }
    Ok(())
}

/// Put every page reference the zap gathered (after the TLB flush).
pub fn tlb_finish_mmu(s: &mut State) -> KResult<()> {
    let tlb = std::mem::take(&mut s.me().tlb);
    for f in tlb {
        folio_put(s, f, "tlb_finish_mmu")?;
    }
    Ok(())
}

/// `mm/memory.c:free_pgtables()` (v6.6): unlink the VMAs from their `anon_vmas` and free every
/// table that intersects them and lies wholly inside `[floor, ceiling)`.
pub fn free_pgtables(s: &mut State, mm: MmId, vmas: &[VmaId], floor: Page, ceiling: Page) {
    s.mm_mut(mm).detached.retain(|v| !vmas.contains(v)); // unlink_anon_vmas()
    let per = TABLE_PAGES;
    for t in 0..NR_TABLES {
        let lo = Page::try_from(t).unwrap_or(Page::MAX / 2) * per;
        let hi = lo + per;
        let used = vmas
            .iter()
            .any(|&v| s.vmas[v].vm_start < hi && lo < s.vmas[v].vm_end);
        if lo >= floor && hi <= ceiling && used {
            free_pte_range(s, mm, t);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// munmap

/// `mm/mmap.c:__vm_munmap()` (v6.6) with `unlock = true`.
pub async fn sys_munmap(k: &Kernel, mm: MmId, start: Page, npages: Page) -> KResult<i32> {
    let end = start + npages;
    if end > k.st().nr_pages {
        return Ok(EINVAL);
    }
    if mmap_write_lock_killable(k, mm).await? != 0 {
        return Ok(EINTR);
    }
    do_vmi_munmap(k, mm, start, end, true).await?;
    Ok(0)
}

/// `mm/mmap.c:do_vmi_munmap()` (v6.6). Called with `mmap_lock` write-held; with `unlock` it
/// returns with nothing held, else still write-held.
pub async fn do_vmi_munmap(
    k: &Kernel,
    mm: MmId,
    start: Page,
    end: Page,
    unlock: bool,
) -> KResult<()> {
    let vma = {
        let mut s = k.st();
        let vma = find_vma(&mut s, mm, start).filter(|&v| s.vmas[v].vm_start < end);
        if vma.is_none() && unlock {
            mmap_write_unlock(&mut s, mm);
        }
        vma
    };
    match vma {
        Some(v) => do_vmi_align_munmap(k, mm, v, start, end, unlock).await,
        None => Ok(()),
    }
}

/// Split at the edges, write-lock and detach the VMAs, clear them from the tree,
/// (downgrade,) zap, free page tables, free the VMAs through RCU.
async fn do_vmi_align_munmap(
    k: &Kernel,
    mm: MmId,
    vma: VmaId,
    start: Page,
    end: Page,
    unlock: bool,
) -> KResult<()> {
    crate::vma::mm_assert_write_locked(k, mm, "do_vmi_align_munmap");
    if start > k.st().vmas[vma].vm_start {
        split_vma(k, mm, vma, start, true).await?;
    }
    let mut detached = Vec::new();
    let mut next = Some(vma);
    while let Some(n) = next.filter(|&n| k.st().vmas[n].vm_start < end) {
        if k.st().vmas[n].vm_end > end {
            split_vma(k, mm, n, end, false).await?;
        }
        // Z09: the rule 73046fd00b06 ("mm: write-lock VMAs before removing them from VMA
        // tree") and 457f67be5910 ("mm: introduce vma detached flag") added to the series
        // before lock_vma_under_rcu (50ee32537206) landed: without it, this loop only moves
        // each VMA to the detach tree, and a fault holding its VMA lock runs on.
        let locked = k.st().mutant != Mutant::Z09DetachWithoutWriteLock;
        if locked {
            vma_start_write(k, n).await?;
        }
        let mut s = k.st();
        if locked {
            vma_mark_detached(&mut s, n, true);
        }
        detached.push(n);
        let end = s.vmas[n].vm_end;
        next = find_vma(&mut s, mm, end);
    }
    let (prev, next) = {
        let mut s = k.st();
        for &v in &detached {
            // vma_iter_clear_gfp(): point of no return
            vma_iter_remove(&mut s, mm, v);
            s.mm_mut(mm).detached.push(v);
        }
        if unlock {
            mmap_write_downgrade(&mut s, mm);
        }
        (vma_prev_of(&mut s, mm, start), find_vma(&mut s, mm, end))
    };
    unmap_region(k, mm, &detached, prev, next).await?;
    let mut s = k.st();
    for &v in &detached {
        vm_area_free(&mut s, v); // remove_mt() -> remove_vma() -> vm_area_free()
    }
    if unlock {
        mmap_read_unlock(&mut s, mm);
    }
    Ok(())
}

async fn unmap_region(
    k: &Kernel,
    mm: MmId,
    vmas: &[VmaId],
    prev: Option<VmaId>,
    next: Option<VmaId>,
) -> KResult<()> {
    for &v in vmas {
        let (start, end) = k.vma_range(v);
        zap_pte_range(k, mm, start, end).await?; // unmap_vmas()
    }
    let mut s = k.st();
    let floor = prev.map_or(0, |p| s.vmas[p].vm_end);
    let ceiling = next.map_or(NO_CEILING, |n| s.vmas[n].vm_start);
    free_pgtables(&mut s, mm, vmas, floor, ceiling);
    tlb_finish_mmu(&mut s)
}

// ---------------------------------------------------------------------------------------------
// mmap

/// `mmap(addr, n, prot, MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS[|MAP_GROWSDOWN])`.
pub async fn vm_mmap_pgoff(
    k: &Kernel,
    mm: MmId,
    addr: Page,
    npages: Page,
    prot: u32,
) -> KResult<i64> {
    let end = addr + npages;
    if end > k.st().nr_pages {
        return Ok(i64::from(ENOMEM));
    }
    let mut flags = prot & (VM_ACCESS_FLAGS | VM_GROWSDOWN);
    if flags & VM_WRITE != 0 {
        flags |= VM_ACCOUNT; // accountable_mapping()
    }
    if mmap_write_lock_killable(k, mm).await? != 0 {
        return Ok(i64::from(EINTR));
    }
    mmap_region(k, mm, addr, end, flags).await?;
    mmap_write_unlock(&mut k.st(), mm);
    Ok(i64::from(addr))
}

/// `mm/mmap.c:mmap_region()` (v6.6): unmap the range, then expand a neighbour or insert a new
/// VMA (write-locked before it enters the tree). Caller holds `mmap_lock` for write.
async fn mmap_region(k: &Kernel, mm: MmId, addr: Page, end: Page, flags: u32) -> KResult<()> {
    crate::vma::mm_assert_write_locked(k, mm, "mmap_region");
    do_vmi_munmap(k, mm, addr, end, false).await?;
    let (expand, next) = {
        let mut s = k.st();
        let next = find_vma(&mut s, mm, addr);
        let prev = vma_prev_of(&mut s, mm, addr);
        let (mut vma, mut merge_start, mut merge_end) = (None, addr, end);
        if let Some(n) = next {
            if s.vmas[n].vm_start == end && can_vma_merge(&s, n, flags, None, None) {
                (merge_end, vma) = (s.vmas[n].vm_end, Some(n));
            }
        }
        if let Some(p) = prev.filter(|&p| s.vmas[p].vm_end == addr) {
            let anon_vma = vma.and_then(|v| s.vmas[v].anon_vma);
            let ctx = vma.and_then(|v| s.vmas[v].uffd_ctx);
            if can_vma_merge(&s, p, flags, anon_vma, ctx) {
                (merge_start, vma) = (s.vmas[p].vm_start, Some(p));
            }
        }
        (vma.map(|v| (v, merge_start, merge_end)), next)
    };
    if let Some((vma, start, end)) = expand {
        return vma_expand(k, mm, vma, start, end, next).await;
    }
    let vma = k.st().alloc_vma(mm, addr, end, flags);
    // Lock the VMA since it is modified after insertion into VMA tree.
    vma_start_write(k, vma).await?;
    vma_iter_store(&mut k.st(), mm, vma);
    Ok(())
}
