//! The per-VMA lock (`include/linux/mm.h:647-796`, `mm/memory.c:lock_vma_under_rcu()`, v6.6;
//! research §2).
//!
//! **The sequence trick.** VMA `v` is *write-locked* iff the current task holds
//! `mm.mmap_lock` for write and `v.vm_lock_seq == mm.mm_lock_seq`. There is no per-VMA write
//! unlock: `mmap_write_unlock()` / `mmap_write_downgrade()` call [`vma_end_write_all`], which
//! increments `mm_lock_seq` and so releases every VMA write lock of the mm at once.
//!
//! | operation                | lock rule                                                     |
//! |--------------------------|---------------------------------------------------------------|
//! | [`vma_start_read`]       | never sleeps; fails if `v` is write-locked, or a writer holds or waits for `vm_lock`; never succeeds falsely |
//! | [`vma_end_read`]         | `up_read(vm_lock)`, may admit a waiting writer                |
//! | [`vma_start_write`]      | caller holds `mmap_lock` for write; waits (`down_write`) for every current reader of `v`, stamps `vm_lock_seq` |
//! | [`vma_end_write_all`]    | only from `mmap_write_unlock` / `mmap_write_downgrade`        |
//! | [`vma_mark_detached`]    | caller has write-locked `v`                                   |
//! | [`lock_vma_under_rcu`]   | no lock held; returns `v` read-locked, or None (fallback)     |
//!
//! | rule                  | when                                                           |
//! |-----------------------|----------------------------------------------------------------|
//! | `vma.write-unlocked`  | [`vma_assert_write_locked`] fails (a VMA changed or detached without `vma_start_write`) |
//! | `vma.use-after-free`  | a VMA lock operation on a freed VMA; stops the run             |
//! | `lock.release-unheld` | `vma_end_read` by a task not holding the read lock (`rwsem`)   |

use crate::mmap_lock::mmap_assert_write_locked;
use crate::mutant::Mutant;
use crate::objects::{Kernel, MmId, Page, State, VmaId, VmaLockEvent};
use crate::primitives::{holds, violate, KResult, LockId, Mode};
use crate::rcu::{rcu_read_lock, rcu_read_unlock};
use crate::rwsem::{down, trylock, up_read, up_write};
use crate::vma::{check_tree_read, check_vma};

/// `__is_vma_write_locked()`: the current task holds `mmap_lock` for write and `vma`'s
/// sequence equals the mm's.
#[inline(always)]
pub fn is_vma_write_locked(s: &State, vma: VmaId) -> bool {
    let v = &s.vmas[vma];
    holds(s, LockId::Mmap(v.mm), Some(Mode::Write)) && v.vm_lock_seq == s.mm(v.mm).mm_lock_seq
}

/// `vma_start_read()`: a trylock that fails spuriously rather than ever succeeding falsely.
pub fn vma_start_read(s: &mut State, vma: VmaId) -> KResult<bool> {
    check_vma(s, vma, "vma_start_read")?;
    let mm = s.vmas[vma].mm;
    // Check before locking. A race might cause false locked result.
    if s.vmas[vma].vm_lock_seq == s.mm(mm).mm_lock_seq {
        return Ok(false);
    }
    if !trylock(s, LockId::Vm(vma), false, "vma_start_read") {
        return Ok(false);
    }
    // Overflow might produce false locked result.
    if s.vmas[vma].vm_lock_seq == s.mm(mm).mm_lock_seq {
        up_read(s, LockId::Vm(vma), "vma_start_read");
        return Ok(false);
    }
    Ok(true)
}

/// `vma_end_read()`: `rcu_read_lock(); up_read(&vma->vm_lock->lock); rcu_read_unlock()`.
pub fn vma_end_read(s: &mut State, vma: VmaId) -> KResult<()> {
    check_vma(s, vma, "vma_end_read")?;
    rcu_read_lock(s);
    up_read(s, LockId::Vm(vma), "vma_end_read");
    rcu_read_unlock(s);
    Ok(())
}

/// `vma_start_write()`: caller holds `mmap_lock` for write. Waits for every in-flight
/// reader of `vma`; from then until `vma_end_write_all`, `vma_start_read(vma)` fails.
pub async fn vma_start_write(k: &Kernel, vma: VmaId) -> KResult<()> {
    let mm = {
        let mut s = k.st();
        check_vma(&mut s, vma, "vma_start_write")?;
        let mm = s.vmas[vma].mm;
        mmap_assert_write_locked(&mut s, mm, "vma.write-unlocked", "vma_start_write");
        if is_vma_write_locked(&s, vma) {
            return Ok(());
        }
        mm
    };
    let lock = LockId::Vm(vma);
    down(
        k,
        lock,
        true,
        false,
        "vma_start_write",
        "vma_start_write:wait",
    )
    .await?;
    let mut s = k.st();
    let seq = s.mm(mm).mm_lock_seq;
    s.vmas[vma].vm_lock_seq = seq;
    up_write(&mut s, lock, "vma_start_write");
    Ok(())
}

/// `vma_end_write_all()`: only from `mmap_write_unlock` / `mmap_write_downgrade`.
pub fn vma_end_write_all(s: &mut State, mm: MmId) {
    mmap_assert_write_locked(s, mm, "lock.release-unheld", "vma_end_write_all");
    s.mm_mut(mm).mm_lock_seq += 1;
}

/// `vma_assert_write_locked()`: `VM_BUG_ON_VMA(!__is_vma_write_locked(vma))`.
pub fn vma_assert_write_locked(s: &mut State, vma: VmaId, function: &str) -> bool {
    if is_vma_write_locked(s, vma) {
        return true;
    }
    violate(
        s,
        "vma.write-unlocked",
        function,
        format!("vma#{vma} changed without vma_start_write"),
    );
    false
}

/// Whether `vma_assert_locked()` would pass: any holder of `vm_lock` in any mode, or
/// write-locked (I5). Callers report the failure under their own rule.
pub fn vma_locked(s: &State, vma: VmaId) -> bool {
    s.vmas[vma].vm_lock.is_locked() || is_vma_write_locked(s, vma)
}

/// `vma_mark_detached()`: caller has write-locked `vma` when detaching it.
pub fn vma_mark_detached(s: &mut State, vma: VmaId, detached: bool) {
    if detached {
        vma_assert_write_locked(s, vma, "vma_mark_detached");
    }
    s.vmas[vma].detached = detached;
}

/// `mas_walk()`: the VMA of the tree that contains `addr`.
fn mas_walk(s: &mut State, mm: MmId, addr: Page) -> Option<VmaId> {
    check_tree_read(s, mm, "mas_walk");
    s.mm(mm)
        .vmas
        .iter()
        .copied()
        .find(|&v| s.vmas[v].covers(addr))
}

/// `mm/memory.c:lock_vma_under_rcu()` (v6.6): the VMA covering `addr`, read-locked, or None
/// (the caller falls back to `mmap_lock`). Never sleeps.
pub async fn lock_vma_under_rcu(k: &Kernel, mm: MmId, addr: Page) -> KResult<Option<VmaId>> {
    rcu_read_lock(&mut k.st());
    loop {
        let found = mas_walk(&mut k.st(), mm, addr);
        let Some(vma) = found else {
            return Ok(lock_vma_inval(&mut k.st()));
        };
        // [I] The VMA may be write-locked, shrunk or detached before we lock it.
        k.yield_now("lock_vma_under_rcu:mas_walk").await;
        let mut s = k.st();
        if !vma_start_read(&mut s, vma)? {
            return Ok(lock_vma_inval(&mut s));
        }
        let v = &s.vmas[vma];
        // Zrange: without the re-check 50ee32537206 places after vma_start_read(), the only
        // range check is the one mas_walk() made before the VMA was locked.
        let recheck = s.mutant != Mutant::ZrangeNoRecheck;
        // find_mergeable_anon_vma uses adjacent vmas which are not locked.
        // Check since vm_start/vm_end might change before we lock the VMA.
        if v.anon_vma.is_none() || (recheck && !v.covers(addr)) {
            vma_end_read(&mut s, vma)?;
            return Ok(lock_vma_inval(&mut s));
        }
        // Check if the VMA got isolated after we found it.
        if s.vmas[vma].detached {
            vma_end_read(&mut s, vma)?;
            s.count_vma_lock_event(VmaLockEvent::Miss);
            continue;
        }
        rcu_read_unlock(&mut s);
        return Ok(Some(vma));
    }
}

/// `inval:` of `lock_vma_under_rcu`.
fn lock_vma_inval(s: &mut State) -> Option<VmaId> {
    rcu_read_unlock(s);
    s.count_vma_lock_event(VmaLockEvent::Abort);
    None
}
