//! `madvise(MADV_DONTNEED)` and the VMA walk madvise shares with PAGEOUT (mm/madvise.c, v6.6).
//!
//! madvise takes `mmap_lock` for read and write-locks no VMA (`madvise_need_mmap_write()` is
//! 0 for these advices, research §7.4): it zaps under the PTL while VMA-lock and `mmap_lock`
//! faults run on the same VMA, so every fault re-validates its PTE under the PTL.

use crate::mmap::{tlb_finish_mmu, zap_pte_range, ENOMEM};
use crate::mmap_lock::{mmap_read_lock, mmap_read_unlock};
use crate::objects::{Kernel, MmId, Page, State, VmaId};
use crate::primitives::KResult;
use crate::vma::find_vma;

/// `mm/madvise.c:madvise_walk_vmas()`: the (vma, start, end) pieces of `[start, end)`, in
/// address order. Caller holds `mmap_lock` (read), so the VMAs cannot change.
pub fn madvise_walk(s: &mut State, mm: MmId, start: Page, end: Page) -> Vec<(VmaId, Page, Page)> {
    let mut out = Vec::new();
    let mut vma = find_vma(s, mm, start);
    while let Some(v) = vma.filter(|&v| s.vmas[v].vm_start < end) {
        let lo = start.max(s.vmas[v].vm_start);
        let hi = end.min(s.vmas[v].vm_end);
        out.push((v, lo, hi));
        if hi >= end {
            break;
        }
        vma = find_vma(s, mm, hi);
    }
    out
}

pub fn madvise_has_hole(pieces: &[(VmaId, Page, Page)], start: Page, end: Page) -> bool {
    let covered: Page = pieces.iter().map(|&(_, lo, hi)| hi - lo).sum();
    covered < end - start
}

/// `madvise(MADV_DONTNEED)`: zap each VMA piece under `mmap_lock` read; -ENOMEM if the range
/// has a hole (the mapped parts are still zapped).
pub async fn do_madvise_dontneed(k: &Kernel, mm: MmId, start: Page, npages: Page) -> KResult<i32> {
    let end = start + npages;
    mmap_read_lock(k, mm).await?;
    let pieces = madvise_walk(&mut k.st(), mm, start, end);
    for &(_, lo, hi) in &pieces {
        zap_pte_range(k, mm, lo, hi).await?; // zap_page_range_single()
        tlb_finish_mmu(&mut k.st())?;
    }
    mmap_read_unlock(&mut k.st(), mm);
    Ok(if madvise_has_hole(&pieces, start, end) {
        ENOMEM
    } else {
        0
    })
}
