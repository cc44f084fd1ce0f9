//! The page-fault entry with `CONFIG_PER_VMA_LOCK=y`: the user access loop and x86
//! `do_user_addr_fault()` (research §1, 6.6 column): exactly one `lock_vma_under_rcu()`
//! attempt, then the `lock_mm_and_find_vma()` loop (in `lock_mm`). `handle_mm_fault` and the
//! PTE-level handlers are in `memory`.
//!
//! Contract (I1): on return from `handle_mm_fault` with RETRY or COMPLETED the callee has
//! released the fault lock; otherwise the caller releases it. On the VMA path every RETRY goes
//! to the `mmap_lock` path (unless a fatal signal is pending), which never carries
//! `FAULT_FLAG_TRIED` on its first attempt (the 6.6 quirk, research §1 fact 3).

use crate::folio::check_folio;
use crate::lock_mm::lock_mm_and_find_vma;
use crate::memory::handle_mm_fault;
use crate::mmap_lock::mmap_read_unlock;
use crate::mutant::Mutant;
use crate::objects::{Kernel, MmId, Page, Pte, VmaLockEvent, VM_ACCESS_FLAGS, VM_WRITE};
use crate::pgtable::{pte_hw_access, pte_slot, table_index};
use crate::primitives::{model_error, KResult};
use crate::record::{RES_KILLED, RES_SIGBUS, RES_SIGSEGV};
use crate::vma_lock::{lock_vma_under_rcu, vma_end_read};
use crate::vmf::{
    FAULT_FLAG_DEFAULT, FAULT_FLAG_TRIED, FAULT_FLAG_USER, FAULT_FLAG_VMA_LOCK, FAULT_FLAG_WRITE,
    VM_FAULT_COMPLETED, VM_FAULT_ERROR, VM_FAULT_HWPOISON, VM_FAULT_OOM, VM_FAULT_RETRY,
    VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV,
};

// arch/x86/include/asm/trap_pf.h
pub const X86_PF_PROT: u32 = 1 << 0;
pub const X86_PF_WRITE: u32 = 1 << 1;
pub const X86_PF_USER: u32 = 1 << 2;

/// What one access attempt found: done with a result, or a fault with its error code.
enum Access {
    Done(i64),
    Fault(u32),
}

/// The access itself, in one step: `Done` if the PTE allows it (MODEL.md §7).
fn try_access(k: &Kernel, mm: MmId, page: Page, write: bool, value: u32) -> KResult<Access> {
    let mut s = k.st();
    let table = s.mm(mm).pmd[table_index(page)];
    let Some(table) = table else {
        return Ok(Access::Fault(
            X86_PF_USER | if write { X86_PF_WRITE } else { 0 },
        ));
    };
    let pte = s.tables[table].ptes[pte_slot(page)];
    let usable = pte.is_present() && !pte.protnone;
    if usable && !write {
        if !pte.young {
            pte_hw_access(&mut s, table, page, Pte { young: true, ..pte });
        }
        let Some(f) = pte.folio else {
            return Ok(Access::Done(0));
        };
        check_folio(&mut s, f, "user_access")?;
        return Ok(Access::Done(i64::from(s.folios[f as usize].data)));
    }
    if usable && pte.writable {
        if let Some(f) = pte.folio {
            check_folio(&mut s, f, "user_access")?;
            s.folios[f as usize].data = value;
            if !(pte.young && pte.dirty) {
                let new = Pte {
                    young: true,
                    dirty: true,
                    ..pte
                };
                pte_hw_access(&mut s, table, page, new);
            }
            return Ok(Access::Done(0));
        }
    }
    let mut error_code = X86_PF_USER | if write { X86_PF_WRITE } else { 0 };
    if usable {
        error_code |= X86_PF_PROT;
    }
    Ok(Access::Fault(error_code))
}

/// One load or store: `loop { if the PTE allows it: access; else fault }` (MODEL.md §7).
/// Returns the data read (0 for a store), `RES_SIGSEGV`/`RES_SIGBUS` or `RES_KILLED`.
pub async fn user_access(
    k: &Kernel,
    mm: MmId,
    page: Page,
    write: bool,
    value: u32,
) -> KResult<i64> {
    let mut refault = false;
    loop {
        if k.st().me().killed {
            return Ok(RES_KILLED);
        }
        if refault {
            refault_spin(k).await;
        } else {
            k.yield_now("user_access:insn").await;
        }
        let error_code = match try_access(k, mm, page, write, value)? {
            Access::Done(r) => return Ok(r),
            Access::Fault(e) => e,
        };
        let ret = do_user_addr_fault(k, mm, page, error_code).await?;
        if ret != 0 {
            return Ok(ret);
        }
        refault = true;
    }
}

/// Return to user space and re-execute the access after a fault that returned 0. Other CPUs
/// make progress meanwhile, so the re-execution is a timed sleep: a fault that backed off
/// and retries by re-faulting cannot starve the task it waits for.
async fn refault_spin(k: &Kernel) {
    k.sleep_tick("user_access:refault").await;
}

/// `arch/x86/mm/fault.c:access_error()` (v6.6), without pkeys and shadow stacks.
pub const fn access_error(error_code: u32, vm_flags: u32) -> bool {
    if error_code & X86_PF_WRITE != 0 {
        return vm_flags & VM_WRITE == 0;
    }
    if error_code & X86_PF_PROT != 0 {
        return true;
    }
    vm_flags & VM_ACCESS_FLAGS == 0
}

/// `arch/x86/mm/fault.c:do_user_addr_fault()` (v6.6). Called with no lock held; returns with
/// none held. Returns 0 (re-execute the access), `RES_SIGSEGV` or `RES_SIGBUS`.
pub async fn do_user_addr_fault(k: &Kernel, mm: MmId, page: Page, error_code: u32) -> KResult<i64> {
    let mut flags = FAULT_FLAG_DEFAULT | FAULT_FLAG_USER;
    if error_code & X86_PF_WRITE != 0 {
        flags |= FAULT_FLAG_WRITE;
    }
    if let Some(fault) = vma_lock_attempt(k, mm, page, error_code, flags).await? {
        return fault_done(fault);
    }
    // lock_mmap:
    loop {
        let Some(vma) = lock_mm_and_find_vma(k, mm, page).await? else {
            return Ok(RES_SIGSEGV); // bad_area_nosemaphore()
        };
        {
            let mut s = k.st();
            if access_error(error_code, s.vmas[vma].vm_flags) {
                mmap_read_unlock(&mut s, mm); // bad_area_access_error()
                return Ok(RES_SIGSEGV);
            }
        }
        let fault = handle_mm_fault(k, mm, vma, page, flags).await?;
        let mut s = k.st();
        if fault & VM_FAULT_RETRY != 0 && s.me().killed {
            return Ok(0); // fault_signal_pending(): "core mm code has unlocked the mm"
        }
        if fault & VM_FAULT_COMPLETED != 0 {
            return Ok(0);
        }
        if fault & VM_FAULT_RETRY != 0 {
            flags |= FAULT_FLAG_TRIED;
            continue;
        }
        mmap_read_unlock(&mut s, mm);
        return fault_done(fault);
    }
}

/// The single per-VMA-lock attempt. `Some(fault)` when it settled the fault (`goto done`),
/// `Some(0)` when a fatal signal is pending after RETRY, None to go to `lock_mmap:`.
async fn vma_lock_attempt(
    k: &Kernel,
    mm: MmId,
    page: Page,
    error_code: u32,
    flags: u32,
) -> KResult<Option<u32>> {
    let Some(vma) = lock_vma_under_rcu(k, mm, page).await? else {
        return Ok(None);
    };
    {
        let mut s = k.st();
        if access_error(error_code, s.vmas[vma].vm_flags) {
            if s.mutant == Mutant::Z17AccessErrorMmapUnlock {
                // Z17: powerpc's ___do_page_fault() in the 6.4 series before "powerpc/mm: fix
                // mmap_lock bad unlock" (lore 20230306135520.4222-1-ldufour): `rc =
                // bad_access(regs, address); vma_end_read(vma); return rc;`, and bad_access()
                // -> __bad_area() does mmap_read_unlock(current->mm).
                mmap_read_unlock(&mut s, mm);
                vma_end_read(&mut s, vma)?;
                return Ok(Some(VM_FAULT_SIGSEGV));
            }
            vma_end_read(&mut s, vma)?;
            return Ok(None);
        }
    }
    let fault = handle_mm_fault(k, mm, vma, page, flags | FAULT_FLAG_VMA_LOCK).await?;
    let mut s = k.st();
    let released_by_callee = fault & (VM_FAULT_RETRY | VM_FAULT_COMPLETED) != 0;
    // Z18: the arch code from before 4089eef0e6ac ("mm: drop per-VMA lock when returning
    // VM_FAULT_RETRY or VM_FAULT_COMPLETED"), which moved that release into the callee: an
    // unconditional vma_end_read(vma) after handle_mm_fault(), as riscv's first handler had.
    if !released_by_callee || s.mutant == Mutant::Z18DoubleVmaEndRead {
        vma_end_read(&mut s, vma)?;
    }
    if fault & VM_FAULT_RETRY == 0 {
        s.count_vma_lock_event(VmaLockEvent::Success);
        return Ok(Some(fault));
    }
    s.count_vma_lock_event(VmaLockEvent::Retry);
    // Quick path to respond to signals.
    if s.me().killed {
        return Ok(Some(0));
    }
    Ok(None)
}

/// `done:` of `do_user_addr_fault`: the signal a failed fault raises.
fn fault_done(fault: u32) -> KResult<i64> {
    if fault & VM_FAULT_ERROR == 0 {
        return Ok(0);
    }
    if fault & VM_FAULT_OOM != 0 {
        return model_error("VM_FAULT_OOM: the model never fails an allocation");
    }
    if fault & (VM_FAULT_SIGBUS | VM_FAULT_HWPOISON) != 0 {
        return Ok(RES_SIGBUS);
    }
    if fault & VM_FAULT_SIGSEGV != 0 {
        return Ok(RES_SIGSEGV);
    }
    model_error(format!(
        "do_user_addr_fault: unexpected fault result {fault:#x}"
    ))
}
