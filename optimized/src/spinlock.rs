//! Spinlocks: the split PTLs and `mm->page_table_lock` (MODEL.md §4.1), in the contract
//! layer of `primitives`.
//!
//! A task may reach an `[I]` yield point while holding one (another CPU interleaves), but never
//! a sleeping one (`lock.sleep-under-ptl`, checked by `might_sleep`). A task that finds one
//! held *spins*: it is not runnable until the holder releases it, then every spinner retries.
//!
//! | rule                  | when                                                        |
//! |-----------------------|-------------------------------------------------------------|
//! | `lock.recursive`      | [`spin_lock`] of a lock the task holds; stops the run       |
//! | `lock.release-unheld` | [`spin_unlock`] of a lock the task does not hold            |

use crate::inline::TaskList;
use crate::objects::{Kernel, State, WaitOn};
use crate::primitives::{
    event, lock_acquired, lock_name, lock_released, violate, violate_fatal, KResult, LockId, Mode,
};
use crate::sched::TaskId;

/// A spinlock (PTL, `page_table_lock`); spinners are not runnable until it is free.
#[derive(Debug, Clone, Default)]
pub struct SpinLock {
    pub owner: Option<TaskId>,
    pub spinners: TaskList,
}

fn spinlock_mut(s: &mut State, lock: LockId) -> &mut SpinLock {
    match lock {
        LockId::Ptl(t) => &mut s.tables[t].ptl,
        LockId::PageTableLock(mm) => &mut s.mm_mut(mm).page_table_lock,
        LockId::Mmap(_) | LockId::Vm(_) => unreachable!("not a spinlock"),
    }
}

fn spin_wait_on(lock: LockId) -> WaitOn {
    match lock {
        LockId::Ptl(t) => WaitOn::Ptl(t),
        LockId::PageTableLock(mm) | LockId::Mmap(mm) => WaitOn::PageTableLock(mm),
        LockId::Vm(v) => WaitOn::VmLock(v),
    }
}

/// `spin_lock()`: spins (not runnable) while another task holds `lock`.
pub async fn spin_lock(k: &Kernel, lock: LockId) -> KResult<()> {
    loop {
        {
            let mut s = k.st();
            let tid = s.tid;
            let sl = spinlock_mut(&mut s, lock);
            match sl.owner {
                None => {
                    sl.owner = Some(tid);
                    lock_acquired(&mut s, lock, Mode::Spin, "spin_lock");
                    return Ok(());
                }
                Some(o) if o == tid => {
                    let name = lock_name(&s, lock);
                    return violate_fatal(
                        &mut s,
                        "lock.recursive",
                        "spin_lock",
                        format!("{name} taken twice"),
                    );
                }
                Some(_) => sl.spinners.push(tid),
            }
            event(&mut s, "wait", "spin_lock", lock, Mode::Spin);
        }
        k.block(spin_wait_on(lock), "spin_lock:spin").await;
    }
}

pub fn spin_unlock(s: &mut State, lock: LockId) {
    let tid = s.tid;
    if spinlock_mut(s, lock).owner != Some(tid) {
        let name = lock_name(s, lock);
        violate(
            s,
            "lock.release-unheld",
            "spin_unlock",
            format!("{name} not held by the task"),
        );
        return;
    }
    lock_released(s, lock, Mode::Spin, "spin_unlock");
    let sl = spinlock_mut(s, lock);
    sl.owner = None;
    if !sl.spinners.is_empty() {
        let spinners = sl.spinners.take();
        s.wakes.extend(spinners);
    }
}
