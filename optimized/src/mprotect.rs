//! mprotect (mm/mprotect.c, v6.6; research §7.2): under `mmap_lock` for write, each VMA in the
//! range is merged or split, write-locked (`vma_start_write`, after which no VMA-lock fault
//! runs on it until `mmap_write_unlock`), given its new flags (`vm_flags_reset` asserts the
//! write lock), and its PTEs changed under their PTLs. A VMA whose flags do not change is not
//! write-locked at all, so VMA-lock faults keep running on it.

use crate::mmap::{table_ranges, EINTR, ENOMEM};
use crate::mmap_lock::{mmap_write_lock_killable, mmap_write_unlock};
use crate::objects::{
    Kernel, MmId, Page, Pte, PteKind, VmaId, VM_ACCESS_FLAGS, VM_ACCOUNT, VM_WRITE,
};
use crate::pgtable::{pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use crate::primitives::KResult;
use crate::vma::{find_vma, split_vma, vm_flags_reset, vma_prev};
use crate::vma_lock::vma_start_write;
use crate::vma_merge::{vma_merge, MergeArgs};

/// `mm/mprotect.c:do_mprotect_pkey()` (v6.6): -ENOMEM at the first hole (the VMAs before it
/// are already changed).
pub async fn do_mprotect_pkey(
    k: &Kernel,
    mm: MmId,
    start: Page,
    npages: Page,
    prot: u32,
) -> KResult<i32> {
    let end = start + npages;
    if mmap_write_lock_killable(k, mm).await? != 0 {
        return Ok(EINTR);
    }
    let (vma, mut prev) = {
        let mut s = k.st();
        let vma = find_vma(&mut s, mm, start)
            .filter(|&v| s.vmas[v].vm_start < end && s.vmas[v].vm_start <= start);
        let Some(vma) = vma else {
            mmap_write_unlock(&mut s, mm);
            return Ok(ENOMEM);
        };
        let prev = if start > s.vmas[vma].vm_start {
            Some(vma)
        } else {
            vma_prev(&mut s, mm, vma)
        };
        (vma, prev)
    };
    let mut error = 0;
    let (mut nstart, mut tmp) = (start, k.st().vmas[vma].vm_start);
    let mut next = Some(vma);
    while let Some(n) = next.filter(|&n| k.st().vmas[n].vm_start < end) {
        let newflags = {
            let s = k.st();
            let v = &s.vmas[n];
            if v.vm_start != tmp {
                error = ENOMEM;
                break;
            }
            tmp = v.vm_end.min(end);
            (prot & VM_ACCESS_FLAGS) | (v.vm_flags & !VM_ACCESS_FLAGS)
        };
        let v = mprotect_fixup(k, mm, n, prev, nstart, tmp, newflags).await?;
        prev = Some(v);
        let mut s = k.st();
        tmp = s.vmas[v].vm_end; // vma_iter_end()
        nstart = tmp;
        next = find_vma(&mut s, mm, tmp);
    }
    if error == 0 && tmp < end {
        error = ENOMEM;
    }
    mmap_write_unlock(&mut k.st(), mm);
    Ok(error)
}

/// `mm/mprotect.c:mprotect_fixup()` (v6.6): merge or split, write-lock, set the flags, change
/// the PTEs.
async fn mprotect_fixup(
    k: &Kernel,
    mm: MmId,
    mut vma: VmaId,
    prev: Option<VmaId>,
    start: Page,
    end: Page,
    mut newflags: u32,
) -> KResult<VmaId> {
    crate::vma::mm_assert_write_locked(k, mm, "mprotect_fixup");
    let args = {
        let s = k.st();
        let v = &s.vmas[vma];
        if newflags == v.vm_flags {
            return Ok(vma);
        }
        if newflags & VM_WRITE != 0 && v.vm_flags & (VM_ACCOUNT | VM_WRITE) == 0 {
            newflags |= VM_ACCOUNT; // a private mapping made writable is charged
        }
        MergeArgs {
            prev,
            addr: start,
            end,
            flags: newflags,
            anon_vma: v.anon_vma,
            ctx: v.uffd_ctx,
        }
    };
    if let Some(merged) = vma_merge(k, mm, args).await? {
        vma = merged;
    } else {
        if start != k.st().vmas[vma].vm_start {
            split_vma(k, mm, vma, start, true).await?;
        }
        if end != k.st().vmas[vma].vm_end {
            split_vma(k, mm, vma, end, false).await?;
        }
    }
    // vm_flags and vm_page_prot are protected by the mmap_lock held in write mode.
    vma_start_write(k, vma).await?;
    vm_flags_reset(&mut k.st(), vma, newflags);
    change_protection(k, mm, vma, start, end).await?;
    Ok(vma)
}

/// The new value of one PTE under `flags` (`can_change_pte_writable()` for `VM_WRITE`).
fn change_pte(k: &Kernel, pte: Pte, flags: u32) -> Pte {
    let protnone = flags & VM_ACCESS_FLAGS == 0;
    match pte.kind {
        PteKind::Present | PteKind::Zero => {
            let exclusive = pte
                .folio
                .is_some_and(|f| k.st().folios[f as usize].anon_exclusive);
            let writable = flags & VM_WRITE != 0 && !protnone && exclusive;
            Pte {
                writable,
                protnone,
                ..pte
            }
        }
        PteKind::Migration if pte.writable => Pte {
            writable: false,
            exclusive: true,
            ..pte
        },
        PteKind::DevicePrivate if pte.writable => Pte {
            writable: false,
            ..pte
        },
        _ => pte,
    }
}

/// `mm/mprotect.c:change_pte_range()` (v6.6), with `MM_CP_TRY_CHANGE_WRITABLE` for `VM_WRITE`.
async fn change_protection(
    k: &Kernel,
    mm: MmId,
    vma: VmaId,
    start: Page,
    end: Page,
) -> KResult<()> {
    let flags = k.st().vmas[vma].vm_flags;
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
            k.yield_now("change_pte_range:pte").await;
            let pte = ptep_get(&mut k.st(), table, page)?;
            let new = change_pte(k, pte, flags);
            if new != pte {
                set_pte_at(&mut k.st(), mm, table, page, new, "change_pte_range")?;
            }
        }
        pte_unmap_unlock(&mut k.st(), table);
    }
    Ok(())
}
