//! The `mmap_lock` side of the fault entry: `lock_mm_and_find_vma()` (mm/memory.c, v6.6) with
//! stack growth (`expand_downwards()`, mm/mmap.c), used after the per-VMA attempt fails.
//!
//! Stack growth drops the read lock, takes `mmap_lock` for write, write-locks the stack VMA
//! (`vma_start_write`: "Lock the VMA before expanding to prevent concurrent page faults"),
//! moves `vm_start` under `page_table_lock`, and downgrades, which ends the VMA write lock.

use crate::mmap_lock::{
    mmap_read_lock_killable, mmap_read_trylock, mmap_read_unlock, mmap_write_downgrade,
    mmap_write_lock_killable, mmap_write_unlock,
};
use crate::objects::{
    Kernel, MmId, Page, VmaId, STACK_GUARD_GAP, VM_ACCESS_FLAGS, VM_GROWSDOWN, VM_UFFD_MISSING,
};
use crate::primitives::{spin_lock, spin_unlock, KResult, LockId};
use crate::vma::{anon_vma_prepare, find_vma, vma_prev, vma_set_range};
use crate::vma_lock::vma_start_write;

pub const ENOMEM: i32 = -12;

/// `mm/memory.c:lock_mm_and_find_vma()` (v6.6): the VMA with `mmap_lock` read-held, or None
/// with nothing held. Grows a `VM_GROWSDOWN` stack under the write lock.
pub async fn lock_mm_and_find_vma(k: &Kernel, mm: MmId, addr: Page) -> KResult<Option<VmaId>> {
    // get_mmap_lock_carefully(): a fatal signal while waiting gives NULL.
    let locked = mmap_read_trylock(&mut k.st(), mm);
    if !locked && mmap_read_lock_killable(k, mm).await? != 0 {
        return Ok(None);
    }
    {
        let mut s = k.st();
        let vma = find_vma(&mut s, mm, addr);
        match vma {
            Some(v) if s.vmas[v].vm_start <= addr => return Ok(Some(v)),
            Some(v) if s.vmas[v].vm_flags & VM_GROWSDOWN != 0 => {}
            _ => {
                mmap_read_unlock(&mut s, mm);
                return Ok(None);
            }
        }
        // mmap_upgrade_trylock() does not exist yet in v6.6: drop and re-take for write.
        mmap_read_unlock(&mut s, mm);
    }
    if mmap_write_lock_killable(k, mm).await? != 0 {
        return Ok(None);
    }
    let vma = {
        let mut s = k.st();
        let vma = find_vma(&mut s, mm, addr);
        let usable =
            vma.filter(|&v| s.vmas[v].vm_start <= addr || s.vmas[v].vm_flags & VM_GROWSDOWN != 0);
        let Some(v) = usable else {
            mmap_write_unlock(&mut s, mm);
            return Ok(None);
        };
        v
    };
    if k.st().vmas[vma].vm_start > addr && expand_downwards(k, mm, vma, addr).await? != 0 {
        mmap_write_unlock(&mut k.st(), mm);
        return Ok(None);
    }
    mmap_write_downgrade(&mut k.st(), mm);
    Ok(Some(vma))
}

/// `mm/mmap.c:expand_downwards()` (v6.6); caller holds `mmap_lock` for write.
pub async fn expand_downwards(k: &Kernel, mm: MmId, vma: VmaId, addr: Page) -> KResult<i32> {
    crate::vma::mm_assert_write_locked(k, mm, "expand_downwards");
    {
        let mut s = k.st();
        if let Some(prev) = vma_prev(&mut s, mm, vma) {
            let p = &s.vmas[prev];
            // Enforce stack_guard_gap.
            if p.vm_flags & VM_GROWSDOWN == 0
                && p.vm_flags & VM_ACCESS_FLAGS != 0
                && addr.wrapping_sub(p.vm_end) < STACK_GUARD_GAP
            {
                return Ok(ENOMEM);
            }
        }
    }
    // We must make sure the anon_vma is allocated.
    anon_vma_prepare(k, mm, vma).await?;
    // Lock the VMA before expanding to prevent concurrent page faults.
    vma_start_write(k, vma).await?;
    if addr < k.st().vmas[vma].vm_start {
        spin_lock(k, LockId::PageTableLock(mm)).await?;
        let mut s = k.st();
        let v = &s.vmas[vma];
        let (start, end, flags) = (v.vm_start, v.vm_end, v.vm_flags);
        let (step, tid) = (s.step, s.tid);
        let (prot, uffd) = (flags & VM_ACCESS_FLAGS, flags & VM_UFFD_MISSING != 0);
        s.growths.push((step, tid, mm, addr, start, prot, uffd));
        vma_set_range(&mut s, vma, addr, end, "expand_downwards");
        spin_unlock(&mut s, LockId::PageTableLock(mm));
    }
    Ok(0)
}
