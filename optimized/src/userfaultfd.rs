//! userfaultfd, missing mode (fs/userfaultfd.c, mm/userfaultfd.c, v6.6; research §6).
//!
//! One context per mm, no `UFFD_FEATURE_EVENT_*` (MODEL.md §1). `handle_userfault` runs
//! under whichever fault lock the fault holds (29a22b9e08d7: userfaults under the VMA lock):
//! it queues the fault, re-checks the PTE locklessly, releases the fault lock and sleeps
//! (interruptibly) until `UFFDIO_COPY`/`UFFDIO_WAKE`/unregister wakes it or a fatal signal
//! arrives, then returns RETRY. `UFFDIO_COPY` (`mfill_atomic`, under `mmap_read_lock` in 6.6)
//! installs the page only if the PTE is still none under the PTL (else -EEXIST). Registration
//! write-locks every VMA it changes (`vma_start_write` before `userfaultfd_set_vm_flags`).
//!
//! | rule              | when                                                              |
//! |-------------------|-------------------------------------------------------------------|
//! | `uffd.fault-lock` | `handle_userfault` entered without the fault lock (`assert_fault_locked`, I5) |

use crate::folio::{folio_put, folio_ref_to_map, page_add_anon_rmap};
use crate::mmap_lock::{mmap_read_lock, mmap_read_unlock, mmap_write_lock, mmap_write_unlock};
use crate::objects::{
    mk_pte, Kernel, MmId, Page, State, UffdWait, VmaId, WaitOn, VM_ACCESS_FLAGS, VM_UFFD_MISSING,
    VM_WRITE,
};
use crate::pgtable::{pte_alloc, pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use crate::primitives::{might_sleep, KResult};
use crate::vma::{anon_vma_prepare, find_vma, split_vma, vm_flags_reset, vma_lookup, vma_prev_of};
use crate::vma_lock::vma_start_write;
use crate::vma_merge::{vma_merge, MergeArgs};
use crate::vmf::{
    assert_fault_locked, release_fault_lock, Vmf, FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_RETRY_NOWAIT,
    VM_FAULT_RETRY, VM_FAULT_SIGBUS,
};

pub const EINVAL: i32 = -22;
pub const ENOENT: i32 = -2;
pub const EEXIST: i32 = -17;

/// `fs/userfaultfd.c:handle_userfault()` (v6.6), reason `VM_UFFD_MISSING`. Entered with FL held
/// and the PTL not held; returns RETRY with FL released, or SIGBUS with FL held.
pub async fn handle_userfault(k: &Kernel, vmf: &mut Vmf) -> KResult<u32> {
    let (ctx, tid) = {
        let mut s = k.st();
        assert_fault_locked(&mut s, vmf, "uffd.fault-lock", "handle_userfault");
        let vma = vmf.vma(&mut s)?;
        let Some(ctx) = s.vmas[vma].uffd_ctx else {
            return Ok(VM_FAULT_SIGBUS);
        };
        if vmf.flags & FAULT_FLAG_ALLOW_RETRY == 0 {
            return Ok(VM_FAULT_SIGBUS);
        }
        if vmf.flags & FAULT_FLAG_RETRY_NOWAIT != 0 {
            return Ok(VM_FAULT_RETRY);
        }
        let tid = s.tid;
        s.cur[tid].uffd_waken = false;
        let wait = UffdWait {
            tid,
            page: vmf.page,
            read: false,
        };
        // Visible to read() of the uffd from now on.
        s.mm_mut(ctx).uffd.waiters.push(wait);
        (ctx, tid)
    };
    k.yield_now("handle_userfault:userfaultfd_must_wait").await;
    let must_wait = {
        let mut s = k.st();
        // userfaultfd_must_wait(): a lockless walk, under the fault lock.
        let pte = s.pte_lookup(vmf.mm, vmf.page);
        let must_wait = pte.is_none_or(|p| p.is_none());
        release_fault_lock(&mut s, vmf)?; // vmf->vma is not touched after this point
        if must_wait {
            let pollers = std::mem::take(&mut s.uffd_poll);
            s.wakes.extend(pollers); // wake_up_poll(&ctx->fd_wqh, EPOLLIN)
        }
        must_wait
    };
    if must_wait {
        loop {
            {
                let mut s = k.st();
                if s.cur[tid].uffd_waken || s.cur[tid].killed {
                    break;
                }
                might_sleep(&mut s, "handle_userfault");
                s.cur[tid].killable = true; // TASK_INTERRUPTIBLE
            }
            let page = vmf.page;
            k.block(WaitOn::Uffd(ctx, page), "handle_userfault:schedule")
                .await;
            k.st().cur[tid].killable = false;
        }
    }
    k.st().mm_mut(ctx).uffd.waiters.retain(|w| w.tid != tid);
    Ok(VM_FAULT_RETRY)
}

/// `fs/userfaultfd.c:wake_userfault()`: wake (and dequeue) the waiters in `[start, end)`.
pub fn wake_userfault(s: &mut State, ctx: MmId, start: Page, end: Page) {
    let waiters = std::mem::take(&mut s.mm_mut(ctx).uffd.waiters);
    let (woken, kept): (Vec<UffdWait>, Vec<UffdWait>) = waiters
        .into_iter()
        .partition(|w| start <= w.page && w.page < end);
    s.mm_mut(ctx).uffd.waiters = kept;
    for w in woken {
        s.cur[w.tid].uffd_waken = true;
        s.wake(w.tid);
    }
}

// ---------------------------------------------------------------------------------------------
// UFFDIO_REGISTER / UFFDIO_UNREGISTER

fn next_in_range(s: &mut State, mm: MmId, start: Page, end: Page) -> Option<VmaId> {
    find_vma(s, mm, start).filter(|&v| s.vmas[v].vm_start < end)
}

/// `fs/userfaultfd.c:userfaultfd_register()` (v6.6), missing mode.
pub async fn userfaultfd_register(k: &Kernel, mm: MmId, start: Page, npages: Page) -> KResult<i32> {
    register(k, mm, start, start + npages, true).await
}

/// `fs/userfaultfd.c:userfaultfd_unregister()` (v6.6): waiters in the range are woken.
pub async fn userfaultfd_unregister(
    k: &Kernel,
    mm: MmId,
    start: Page,
    npages: Page,
) -> KResult<i32> {
    register(k, mm, start, start + npages, false).await
}

async fn register(k: &Kernel, mm: MmId, mut start: Page, end: Page, on: bool) -> KResult<i32> {
    mmap_write_lock(k, mm).await?;
    let (mut vma, mut prev) = {
        let mut s = k.st();
        let Some(vma) = next_in_range(&mut s, mm, start, end) else {
            mmap_write_unlock(&mut s, mm);
            return Ok(EINVAL);
        };
        let prev = if s.vmas[vma].vm_start < start {
            Some(vma)
        } else {
            vma_prev_of(&mut s, mm, start)
        };
        (Some(vma), prev)
    };
    while let Some(mut v) = vma {
        let done = {
            let s = k.st();
            let x = &s.vmas[v];
            if on {
                x.uffd_ctx == Some(mm) && x.vm_flags & VM_UFFD_MISSING != 0
            } else {
                x.uffd_ctx.is_none()
            }
        };
        if !done {
            v = register_one(k, mm, prev, v, start, end, on).await?;
        }
        prev = Some(v);
        let mut s = k.st();
        start = s.vmas[v].vm_end;
        vma = next_in_range(&mut s, mm, start, end);
    }
    mmap_write_unlock(&mut k.st(), mm);
    Ok(0)
}

/// Merge or split so that exactly `[start, min(end, vm_end))` changes; set the flags.
async fn register_one(
    k: &Kernel,
    mm: MmId,
    prev: Option<VmaId>,
    mut vma: VmaId,
    start: Page,
    end: Page,
    on: bool,
) -> KResult<VmaId> {
    crate::vma::mm_assert_write_locked(k, mm, "userfaultfd_register");
    let (args, vm_start) = {
        let mut s = k.st();
        let v = &s.vmas[vma];
        let (vm_start, vm_end, flags, anon_vma) = (v.vm_start, v.vm_end, v.vm_flags, v.anon_vma);
        let (lo, hi) = (start.max(vm_start), end.min(vm_end));
        let (flags, ctx) = if on {
            (flags | VM_UFFD_MISSING, Some(mm))
        } else {
            if let (true, Some(c)) = (flags & VM_UFFD_MISSING != 0, s.vmas[vma].uffd_ctx) {
                wake_userfault(&mut s, c, lo, hi);
            }
            (flags & !VM_UFFD_MISSING, None)
        };
        let args = MergeArgs {
            prev,
            addr: lo,
            end: hi,
            flags,
            anon_vma,
            ctx,
        };
        (args, vm_start)
    };
    if let Some(merged) = vma_merge(k, mm, args).await? {
        vma = merged;
    } else {
        if vm_start < args.addr {
            split_vma(k, mm, vma, args.addr, true).await?;
        }
        if k.st().vmas[vma].vm_end > end {
            split_vma(k, mm, vma, end, false).await?;
        }
    }
    // In the vma_merge() successful mprotect-like case 8: the next vma was merged into the
    // current one and the current one has not been updated yet.
    vma_start_write(k, vma).await?;
    let mut s = k.st();
    vm_flags_reset(&mut s, vma, args.flags); // userfaultfd_set_vm_flags()
    s.vmas[vma].uffd_ctx = args.ctx;
    Ok(vma)
}

// ---------------------------------------------------------------------------------------------
// UFFDIO_COPY, UFFDIO_WAKE

/// `fs/userfaultfd.c:userfaultfd_copy()` -> `mm/userfaultfd.c:mfill_atomic()` (v6.6), one page:
/// 0, -EEXIST (PTE not none) or -ENOENT (no registered VMA). Wakes the page's waiters on 0.
pub async fn userfaultfd_copy(k: &Kernel, mm: MmId, page: Page, value: u32) -> KResult<i32> {
    mmap_read_lock(k, mm).await?;
    let vma = {
        let mut s = k.st();
        let vma = vma_lookup(&s, mm, page).filter(|&v| s.vmas[v].uffd_ctx.is_some());
        let Some(vma) = vma else {
            mmap_read_unlock(&mut s, mm);
            return Ok(ENOENT);
        };
        vma
    };
    anon_vma_prepare(k, mm, vma).await?;
    pte_alloc(k, mm, page).await?;
    let ret = mfill_atomic_pte_copy(k, mm, vma, page, value).await?;
    let mut s = k.st();
    mmap_read_unlock(&mut s, mm);
    if ret == 0 {
        wake_userfault(&mut s, mm, page, page + 1);
    }
    Ok(ret)
}

/// `mm/userfaultfd.c:mfill_atomic_pte_copy()` + `mfill_atomic_install_pte()`.
async fn mfill_atomic_pte_copy(
    k: &Kernel,
    mm: MmId,
    vma: VmaId,
    page: Page,
    value: u32,
) -> KResult<i32> {
    might_sleep(&mut k.st(), "vma_alloc_folio");
    k.yield_now("mfill_atomic_pte_copy:vma_alloc_folio").await;
    let folio = k.st().alloc_folio(value, false, "mfill_atomic_pte_copy"); // copy_from_user()
    let table = pte_offset_map_lock(k, mm, page).await?;
    let mut s = k.st();
    let none = match table {
        Some(t) => ptep_get(&mut s, t, page)?.is_none(),
        None => false,
    };
    let (Some(table), true) = (table, none) else {
        // !pte_none_mostly()
        if let Some(t) = table {
            pte_unmap_unlock(&mut s, t);
        }
        folio_put(&mut s, folio, "mfill_atomic_pte_copy")?;
        return Ok(EEXIST);
    };
    let flags = s.vmas[vma].vm_flags;
    let entry = mk_pte(
        folio,
        flags & VM_WRITE != 0,
        true,
        true,
        flags & VM_ACCESS_FLAGS == 0,
    );
    page_add_anon_rmap(&mut s, folio, true, "mfill_atomic_install_pte")?;
    s.folios[folio as usize].lru = true; // folio_add_lru_vma()
    folio_ref_to_map(&mut s, folio);
    set_pte_at(&mut s, mm, table, page, entry, "mfill_atomic_install_pte")?;
    pte_unmap_unlock(&mut s, table);
    Ok(0)
}

/// `UFFDIO_WAKE` for one page.
pub fn userfaultfd_wake(s: &mut State, mm: MmId, page: Page) {
    wake_userfault(s, mm, page, page + 1);
}

/// The oldest fault the monitor has not read: by mm id, then queue order.
fn next_pending_fault(s: &mut State) -> Option<(MmId, Page)> {
    for mm in s.mms.iter_mut().flatten() {
        if let Some(w) = mm.uffd.waiters.iter_mut().find(|w| !w.read) {
            w.read = true;
            return Some((mm.id, w.page));
        }
    }
    None
}

/// One `UFFDIO_COPY` the monitor issued: (mm, page, value, invoke, response, result); no
/// response while it is pending.
pub type MonitorRecord = (MmId, Page, u32, u64, Option<u64>, i32);

/// The userfaultfd monitor daemon: answers every pending fault with `UFFDIO_COPY`.
pub async fn uffd_monitor(k: &Kernel) -> KResult<()> {
    loop {
        let pending = {
            let mut s = k.st();
            let p = next_pending_fault(&mut s);
            if p.is_none() {
                might_sleep(&mut s, "uffd_monitor");
                let tid = s.tid;
                s.uffd_poll.push(tid);
            }
            p
        };
        let Some((mm, page)) = pending else {
            k.block(WaitOn::UffdPoll, "uffd_monitor:poll").await;
            continue;
        };
        let value = 0xF000 | (u32::try_from(mm).unwrap_or(0) << 8) | page;
        let invoke = k.sched.borrow().step;
        let index = {
            let mut s = k.st();
            s.monitor_records.push((mm, page, value, invoke, None, 0)); // pending
            s.monitor_records.len() - 1
        };
        let res = userfaultfd_copy(k, mm, page, value).await?;
        if res == EEXIST {
            userfaultfd_wake(&mut k.st(), mm, page);
        }
        let response = {
            let mut sched = k.sched.borrow_mut();
            sched.last_progress = sched.step;
            sched.step
        };
        k.st().monitor_records[index] = (mm, page, value, invoke, Some(response), res);
        k.yield_now("uffd_monitor:reply").await;
    }
}
