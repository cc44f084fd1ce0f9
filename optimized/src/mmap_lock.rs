//! `mm->mmap_lock` and its `include/linux/mmap_lock.h` API (v6.6, `CONFIG_PER_VMA_LOCK=y`).
//!
//! The rwsem is [`crate::rwsem::RwSem`]. With the per-VMA lock, `mmap_write_unlock` and
//! `mmap_write_downgrade` end every VMA write lock of the mm at once (`vma_end_write_all`:
//! `mm_lock_seq++`); `mmap_write_lock` does not touch `mm_lock_seq`, so VMA readers keep
//! running until the writer `vma_start_write`s their VMA.
//!
//! | rule                   | when                                                              |
//! |------------------------|-------------------------------------------------------------------|
//! | `lock.release-unheld`  | `mmap_read_unlock` / `mmap_write_unlock` / `mmap_write_downgrade` by a task that does not hold the lock in that mode |
//! | `lock.recursive`       | any acquisition by a task that already holds `mmap_lock`          |
//! | `lock.sleep-under-ptl` | queueing on `mmap_lock` while holding a spinlock                  |
//! | `lock.order-vma-mmap`  | a blocking acquisition of `mmap_lock` while holding a VMA read lock (I8) |
//!
//! `mmap_assert_locked` / `mmap_assert_write_locked` check that the *current task* holds the
//! lock (lockdep's `lockdep_assert_held`); callers say which rule a failure breaks.

use crate::objects::{Kernel, MmId, State};
use crate::primitives::{holds, holds_vma_read_lock, violate, KResult, LockId, Mode};
use crate::rwsem::{down, downgrade_write, trylock, up_read, up_write};
use crate::vma_lock::vma_end_write_all;

/// I8: a thread holding a VMA read lock never blocks on `mmap_lock`.
#[inline]
fn check_vma_mmap_order(s: &mut State, mm: MmId, primitive: &'static str) {
    if let Some(v) = holds_vma_read_lock(s) {
        violate(
            s,
            "lock.order-vma-mmap",
            primitive,
            format!("mm{mm}.mmap_lock taken holding vma#{v}.vm_lock (read)"),
        );
    }
}

/// `mmap_read_lock()`: may sleep, not killable.
pub async fn mmap_read_lock(k: &Kernel, mm: MmId) -> KResult<()> {
    check_vma_mmap_order(&mut k.st(), mm, "mmap_read_lock");
    let lock = LockId::Mmap(mm);
    down(
        k,
        lock,
        false,
        false,
        "mmap_read_lock",
        "mmap_read_lock:wait",
    )
    .await?;
    Ok(())
}

/// `mmap_read_lock_killable()`: 0, or -EINTR on a fatal signal while queued.
pub async fn mmap_read_lock_killable(k: &Kernel, mm: MmId) -> KResult<i32> {
    check_vma_mmap_order(&mut k.st(), mm, "mmap_read_lock_killable");
    let (lock, site) = (LockId::Mmap(mm), "mmap_read_lock_killable:wait");
    down(k, lock, false, true, "mmap_read_lock_killable", site).await
}

pub fn mmap_read_trylock(s: &mut State, mm: MmId) -> bool {
    trylock(s, LockId::Mmap(mm), false, "mmap_read_trylock")
}

pub fn mmap_read_unlock(s: &mut State, mm: MmId) {
    up_read(s, LockId::Mmap(mm), "mmap_read_unlock");
}

pub async fn mmap_write_lock(k: &Kernel, mm: MmId) -> KResult<()> {
    check_vma_mmap_order(&mut k.st(), mm, "mmap_write_lock");
    let lock = LockId::Mmap(mm);
    down(
        k,
        lock,
        true,
        false,
        "mmap_write_lock",
        "mmap_write_lock:wait",
    )
    .await?;
    Ok(())
}

pub async fn mmap_write_lock_killable(k: &Kernel, mm: MmId) -> KResult<i32> {
    check_vma_mmap_order(&mut k.st(), mm, "mmap_write_lock_killable");
    let (lock, site) = (LockId::Mmap(mm), "mmap_write_lock_killable:wait");
    down(k, lock, true, true, "mmap_write_lock_killable", site).await
}

/// `mmap_write_unlock()`: `vma_end_write_all()`, then `up_write()`.
pub fn mmap_write_unlock(s: &mut State, mm: MmId) {
    vma_end_write_all(s, mm);
    up_write(s, LockId::Mmap(mm), "mmap_write_unlock");
}

/// `mmap_write_downgrade()`: `vma_end_write_all()`, then `downgrade_write()`.
pub fn mmap_write_downgrade(s: &mut State, mm: MmId) {
    vma_end_write_all(s, mm);
    downgrade_write(s, LockId::Mmap(mm), "mmap_write_downgrade");
}

/// Whether the current task holds `mmap_lock` (either mode).
pub fn mmap_locked(s: &State, mm: MmId) -> bool {
    holds(s, LockId::Mmap(mm), None)
}

/// `mmap_assert_locked()` for the current task; a failure is recorded under `rule`.
pub fn mmap_assert_locked(s: &mut State, mm: MmId, rule: &'static str, function: &str) -> bool {
    if holds(s, LockId::Mmap(mm), None) {
        return true;
    }
    violate(s, rule, function, format!("mm{mm}.mmap_lock not held"));
    false
}

/// `mmap_assert_write_locked()` for the current task.
#[inline]
pub fn mmap_assert_write_locked(
    s: &mut State,
    mm: MmId,
    rule: &'static str,
    function: &str,
) -> bool {
    if holds(s, LockId::Mmap(mm), Some(Mode::Write)) {
        return true;
    }
    violate(
        s,
        rule,
        function,
        format!("mm{mm}.mmap_lock not write-held"),
    );
    false
}
