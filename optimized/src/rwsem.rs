//! The rwsem behind `mmap_lock` and every VMA's `vm_lock` (MODEL.md §4.1), shared by
//! `mmap_lock` and `vma_lock`.
//!
//! | operation             | behaviour                                                          |
//! |-----------------------|--------------------------------------------------------------------|
//! | `down_read_trylock`   | succeeds iff no writer holds it **and no waiter is queued**        |
//! | `down_read`           | granted at once iff no writer and no waiter; else queued at the tail |
//! | `down_write_trylock`  | succeeds iff nobody holds it and no waiter is queued               |
//! | `down_write`          | granted at once iff nobody holds it and no waiter; else queued     |
//! | `up_read` / `up_write`| when the released side is free, the lock is handed to the head of the queue: a writer alone (once no reader is left), or the run of readers at the head |
//! | `downgrade_write`     | the writer becomes a reader; the run of readers at the head is admitted |
//! | `*_killable`          | a fatal signal while queued: leave the queue (the next waiters are re-examined) and return -EINTR |
//!
//! The reader count is anonymous, as the kernel's is: an `up_read` by a task that does not
//! hold the lock is reported (`lock.release-unheld`) and still drops one reader, so its
//! effects (a writer admitted while a reader still runs) stay observable.

use crate::inline::{PackedVec, TaskList};
use crate::objects::{Kernel, State, WaitOn};
use crate::primitives::{
    event, holds, lock_acquired, lock_acquired_by, lock_name, lock_released, might_sleep, violate,
    KResult, LockId, Mode,
};
use crate::sched::TaskId;

pub const EINTR: i32 = -4;

/// A writer-preferring FIFO rwsem (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RwSem {
    pub readers: TaskList,
    pub writer: Option<TaskId>,
    /// (task, wants write), FIFO.
    pub waiters: PackedVec<(TaskId, bool), 16>,
}

impl RwSem {
    /// `rwsem_is_locked()`: held by anyone, in any mode.
    pub fn is_locked(&self) -> bool {
        self.writer.is_some() || !self.readers.is_empty()
    }

    pub fn holder_tids(&self) -> Vec<TaskId> {
        if let Some(w) = self.writer {
            return vec![w];
        }
        let mut r: Vec<TaskId> = self.readers.iter().collect();
        r.sort_unstable();
        r.dedup();
        r
    }
}

pub fn sem_mut(s: &mut State, lock: LockId) -> &mut RwSem {
    match lock {
        LockId::Mmap(mm) => &mut s.mm_mut(mm).mmap_lock,
        LockId::Vm(v) => &mut s.vmas[v].vm_lock,
        LockId::Ptl(_) | LockId::PageTableLock(_) => unreachable!("not an rwsem"),
    }
}

fn wait_on(lock: LockId) -> WaitOn {
    match lock {
        LockId::Vm(v) => WaitOn::VmLock(v),
        LockId::Mmap(mm) | LockId::PageTableLock(mm) => WaitOn::MmapLock(mm),
        LockId::Ptl(t) => WaitOn::Ptl(t),
    }
}

fn grant(s: &mut State, lock: LockId, tid: TaskId, write: bool) {
    let sem = sem_mut(s, lock);
    if write {
        sem.writer = Some(tid);
        lock_acquired_by(s, tid, lock, Mode::Write, "down_write");
    } else {
        sem.readers.push(tid);
        lock_acquired_by(s, tid, lock, Mode::Read, "down_read");
    }
    s.cur[tid].granted = true;
    s.wake(tid);
}

/// Hand the lock to the head of the queue if it can be granted.
fn wake_waiters(s: &mut State, lock: LockId) {
    loop {
        let sem = sem_mut(s, lock);
        let Some((tid, write)) = sem.waiters.first() else {
            return;
        };
        if sem.writer.is_some() || (write && !sem.readers.is_empty()) {
            return;
        }
        sem.waiters.pop_front();
        grant(s, lock, tid, write);
        if write {
            return;
        }
    }
}

/// `down_read` / `down_write` (optionally killable): 0, or -EINTR on a fatal signal.
pub async fn down(
    k: &Kernel,
    lock: LockId,
    write: bool,
    killable: bool,
    primitive: &'static str,
    site: &'static str,
) -> KResult<i32> {
    let mode = if write { Mode::Write } else { Mode::Read };
    {
        let mut s = k.st();
        // rwsem.c: down_read() and friends begin with might_sleep(), contended or not.
        might_sleep(&mut s, primitive);
        let tid = s.tid;
        let sem = sem_mut(&mut s, lock);
        let free =
            sem.writer.is_none() && sem.waiters.is_empty() && (!write || sem.readers.is_empty());
        if free {
            if write {
                sem.writer = Some(tid);
            } else {
                sem.readers.push(tid);
            }
            lock_acquired(&mut s, lock, mode, primitive); // reports a recursive acquisition
            return Ok(0);
        }
        if holds(&s, lock, None) {
            // Blocked behind itself: it will never be granted, so say it now.
            let name = lock_name(&s, lock);
            let msg = format!("{name} acquired ({}) while held", mode.name());
            violate(&mut s, "lock.recursive", primitive, msg);
        }
        sem_mut(&mut s, lock).waiters.push((tid, write));
        s.cur[tid].granted = false;
        event(&mut s, "wait", primitive, lock, mode);
    }
    loop {
        {
            let mut s = k.st();
            let tid = s.tid;
            if s.cur[tid].granted {
                s.cur[tid].granted = false;
                return Ok(0);
            }
            if killable && s.cur[tid].killed {
                sem_mut(&mut s, lock).waiters.retain(|(t, _)| t != tid);
                wake_waiters(&mut s, lock);
                return Ok(EINTR);
            }
            s.cur[tid].killable = killable;
        }
        k.block(wait_on(lock), site).await;
        k.st().me().killable = false;
    }
}

/// `down_read_trylock` / `down_write_trylock`.
pub fn trylock(s: &mut State, lock: LockId, write: bool, primitive: &'static str) -> bool {
    let mode = if write { Mode::Write } else { Mode::Read };
    let tid = s.tid;
    let sem = sem_mut(s, lock);
    if sem.writer.is_some() || !sem.waiters.is_empty() || (write && !sem.readers.is_empty()) {
        event(s, "trylock_fail", primitive, lock, mode);
        return false;
    }
    if write {
        sem.writer = Some(tid);
    } else {
        sem.readers.push(tid);
    }
    lock_acquired(s, lock, mode, primitive);
    true
}

/// `up_read()`; see the module docs for an unbalanced release.
pub fn up_read(s: &mut State, lock: LockId, primitive: &'static str) {
    let balanced = lock_released(s, lock, Mode::Read, primitive);
    let tid = s.tid;
    let sem = sem_mut(s, lock);
    let mine = if balanced {
        sem.readers.iter().position(|t| t == tid)
    } else {
        None
    };
    let Some(i) = mine.or_else(|| (!sem.readers.is_empty()).then_some(0)) else {
        let name = lock_name(s, lock);
        let msg = format!("{name} reader count below zero");
        violate(s, "lock.release-unheld", primitive, msg);
        return;
    };
    sem.readers.remove(i);
    if sem_mut(s, lock).readers.is_empty() {
        wake_waiters(s, lock);
    }
}

/// Whether the current task holds `lock` for write; a violation (`lock.release-unheld`) if not.
#[inline]
fn write_held(s: &mut State, lock: LockId, primitive: &'static str) -> bool {
    let tid = s.tid;
    if sem_mut(s, lock).writer == Some(tid) {
        return true;
    }
    let name = lock_name(s, lock);
    let msg = format!("{name} not write-held by task");
    violate(s, "lock.release-unheld", primitive, msg);
    false
}

pub fn up_write(s: &mut State, lock: LockId, primitive: &'static str) {
    if !write_held(s, lock, primitive) {
        return;
    }
    lock_released(s, lock, Mode::Write, primitive);
    sem_mut(s, lock).writer = None;
    wake_waiters(s, lock);
}

pub fn downgrade_write(s: &mut State, lock: LockId, primitive: &'static str) {
    if !write_held(s, lock, primitive) {
        return;
    }
    let tid = s.tid;
    lock_released(s, lock, Mode::Write, primitive);
    let sem = sem_mut(s, lock);
    sem.writer = None;
    sem.readers.push(tid);
    lock_acquired(s, lock, Mode::Read, primitive);
    event(s, "downgrade", primitive, lock, Mode::Read);
    while let Some((t, false)) = sem_mut(s, lock).waiters.first() {
        sem_mut(s, lock).waiters.pop_front();
        grant(s, lock, t, false);
    }
}
