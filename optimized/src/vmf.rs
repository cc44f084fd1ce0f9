//! `struct vm_fault`, the fault flags and results, the fault lock and the hand-off contract.
//!
//! The fault lock (FL) is the VMA's read lock when `FAULT_FLAG_VMA_LOCK` is set, else
//! `mmap_lock` for read. After `release_fault_lock()` the VMA may be unmapped and freed, so
//! any later dereference through [`Vmf::vma`] is a use after unlock (I4), and any use of a
//! freed VMA a use after free.
//!
//! | rule                     | when                                                        |
//! |--------------------------|-------------------------------------------------------------|
//! | `lock.handoff`           | [`handle_mm_fault_contract`]: RETRY/COMPLETED returned with FL still held, or any other result with FL released (I1) |
//! | `lock.retry-nowait-vma`  | `sanitize_fault_flags`: `VMA_LOCK` together with `RETRY_NOWAIT` (I2) |
//! | `vma.use-after-unlock`   | [`Vmf::vma`] after `release_fault_lock` (I4)                |
//! | `vma.use-after-free`     | [`Vmf::vma`] on a freed VMA; stops the run                  |

use crate::mmap_lock::{mmap_locked, mmap_read_unlock};
use crate::objects::{MmId, Page, Pte, State, TableId, VmaId, PTE_NONE};
use crate::primitives::{holds, violate, KResult, LockId, Mode};
use crate::vma::check_vma;
use crate::vma_lock::{vma_end_read, vma_locked};

// include/linux/mm_types.h: enum vm_fault_reason
pub const VM_FAULT_OOM: u32 = 0x00_0001;
pub const VM_FAULT_SIGBUS: u32 = 0x00_0002;
pub const VM_FAULT_MAJOR: u32 = 0x00_0004;
pub const VM_FAULT_HWPOISON: u32 = 0x00_0010;
pub const VM_FAULT_SIGSEGV: u32 = 0x00_0040;
pub const VM_FAULT_NOPAGE: u32 = 0x00_0100;
pub const VM_FAULT_RETRY: u32 = 0x00_0400;
pub const VM_FAULT_FALLBACK: u32 = 0x00_0800;
pub const VM_FAULT_COMPLETED: u32 = 0x00_4000;
pub const VM_FAULT_ERROR: u32 =
    VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON | VM_FAULT_FALLBACK;

// include/linux/mm_types.h: enum fault_flag
pub const FAULT_FLAG_WRITE: u32 = 1 << 0;
pub const FAULT_FLAG_ALLOW_RETRY: u32 = 1 << 2;
pub const FAULT_FLAG_RETRY_NOWAIT: u32 = 1 << 3;
pub const FAULT_FLAG_KILLABLE: u32 = 1 << 4;
pub const FAULT_FLAG_TRIED: u32 = 1 << 5;
pub const FAULT_FLAG_USER: u32 = 1 << 6;
pub const FAULT_FLAG_INTERRUPTIBLE: u32 = 1 << 9;
pub const FAULT_FLAG_ORIG_PTE_VALID: u32 = 1 << 11;
pub const FAULT_FLAG_VMA_LOCK: u32 = 1 << 12;
pub const FAULT_FLAG_DEFAULT: u32 =
    FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | FAULT_FLAG_INTERRUPTIBLE;

/// `struct vm_fault` for one `handle_mm_fault` call.
#[derive(Debug, Clone)]
pub struct Vmf {
    /// Cached: "If the fault handler drops the `mmap_lock`, vma may be freed".
    pub mm: MmId,
    vma: VmaId,
    pub page: Page,
    pub flags: u32,
    pub orig_pte: Pte,
    pub table: Option<TableId>,
    pub fl_held: bool,
}

impl Vmf {
    pub fn new(mm: MmId, vma: VmaId, page: Page, flags: u32) -> Self {
        Self {
            mm,
            vma,
            page,
            flags,
            orig_pte: PTE_NONE,
            table: None,
            fl_held: true,
        }
    }

    /// `vmf->vma`, checked: the fault lock must still be held (I4) and the VMA alive.
    #[inline]
    pub fn vma(&self, s: &mut State) -> KResult<VmaId> {
        if !self.fl_held {
            let msg = format!("vma#{} after FL released", self.vma);
            violate(s, "vma.use-after-unlock", "vmf->vma", msg);
        }
        check_vma(s, self.vma, "vmf->vma")?;
        Ok(self.vma)
    }

    /// `vmf->vma->vm_flags`, checked as [`Vmf::vma`].
    #[inline]
    pub fn vm_flags(&self, s: &mut State) -> KResult<u32> {
        let vma = self.vma(s)?;
        Ok(s.vmas[vma].vm_flags)
    }

    pub const fn vma_locked(&self) -> bool {
        self.flags & FAULT_FLAG_VMA_LOCK != 0
    }

    /// The fault lock, whichever kind.
    pub const fn fault_lock(&self) -> LockId {
        if self.vma_locked() {
            LockId::Vm(self.vma)
        } else {
            LockId::Mmap(self.mm)
        }
    }
}

pub const fn fault_flag_allow_retry_first(flags: u32) -> bool {
    flags & FAULT_FLAG_ALLOW_RETRY != 0 && flags & FAULT_FLAG_TRIED == 0
}

/// `include/linux/mm.h:release_fault_lock()` (v6.6): `vma_end_read` or `mmap_read_unlock`.
pub fn release_fault_lock(s: &mut State, vmf: &mut Vmf) -> KResult<()> {
    if vmf.vma_locked() {
        vma_end_read(s, vmf.vma)?;
    } else {
        mmap_read_unlock(s, vmf.mm);
    }
    vmf.fl_held = false;
    Ok(())
}

/// `include/linux/mm.h:assert_fault_locked()` (v6.6): `vma_assert_locked` (any holder of the
/// VMA's lock, in any mode, or write-locked by the current task: I5, no ownership check) or
/// `mmap_assert_locked`, whose `lockdep_assert_held()` wants the current task to hold it (I5
/// describes its `VM_BUG_ON` half; the model is a lockdep build).
pub fn assert_fault_locked(s: &mut State, vmf: &Vmf, rule: &'static str, function: &str) {
    let ok = if vmf.vma_locked() {
        vma_locked(s, vmf.vma)
    } else {
        mmap_locked(s, vmf.mm)
    };
    if !ok {
        let what = if vmf.vma_locked() {
            format!("vma#{}.vm_lock not held", vmf.vma)
        } else {
            format!("mm{}.mmap_lock not held", vmf.mm)
        };
        violate(s, rule, function, what);
    }
}

/// Whether the current task holds the fault lock `vmf` was entered with.
#[inline]
pub fn fault_lock_held(s: &State, vmf: &Vmf) -> bool {
    holds(s, vmf.fault_lock(), Some(Mode::Read))
}

/// The hand-off rule of `__handle_mm_fault`'s comment (I1).
pub fn handle_mm_fault_contract(s: &mut State, vmf: &Vmf, held_before: bool, ret: u32) {
    if !held_before {
        let msg = "entered without the fault lock".to_owned();
        violate(s, "lock.handoff", "handle_mm_fault", msg);
        return;
    }
    let held = fault_lock_held(s, vmf);
    let released = ret & (VM_FAULT_RETRY | VM_FAULT_COMPLETED) != 0
        && !(ret & VM_FAULT_RETRY != 0 && vmf.flags & FAULT_FLAG_RETRY_NOWAIT != 0);
    if released && held {
        let msg = format!("returned {ret:#x} with FL still held");
        violate(s, "lock.handoff", "handle_mm_fault", msg);
    } else if !released && !held {
        let msg = format!("returned {ret:#x} with FL released");
        violate(s, "lock.handoff", "handle_mm_fault", msg);
    }
}
