//! The lock rules of the contract layer (MODEL.md §4.2), one group per rule: each test drives
//! the kernel functions into the situation a historical bug creates (a missing or doubled
//! unlock, a lock taken in the wrong order, a retry with the fault lock still held, a sleep
//! under a PTL ...) and checks the exact `(rule, function)` pairs the contract layer reports;
//! where it helps, a clean counterpart shows the same path staying quiet.
//!
//! Task bodies call the kernel functions directly on the rig's machine. The interleaving is
//! fixed by the serial policy (the lowest runnable task runs) and `wait_until` hand-offs: a
//! task sleeps a tick at a time until the state it waits for is there, so a test does not
//! depend on how many steps another task's path takes. A historical bug the engine carries
//! as a mutant (Z19, Zdevpriv) runs with that mutant; `lock.held-at-return`, checked when a
//! user operation returns, needs the whole engine.

use std::cell::Cell;
use std::rc::Rc;

use _native::case::{Case, OpKind, Schedule};
use _native::device::dmirror_migrate_to_device;
use _native::fault::user_access;
use _native::folio::{
    folio_get, folio_isolate_lru, folio_lock, folio_lock_killable, folio_put, folio_putback_lru,
    folio_trylock, folio_unlock, folio_wait_locked,
};
use _native::memory::handle_mm_fault;
use _native::mmap::sys_munmap;
use _native::mmap_lock::{
    mmap_read_lock, mmap_read_lock_killable, mmap_read_trylock, mmap_read_unlock,
    mmap_write_downgrade, mmap_write_lock, mmap_write_unlock,
};
use _native::mutant::Mutant;
use _native::objects::{swp_entry_to_pte, FolioId, Kernel, Page, PteKind, State};
use _native::pgtable::{pte_alloc, pte_offset_map_lock, pte_unmap_unlock, set_pte_at};
use _native::primitives::{
    holds, schedule_timeout_uninterruptible, spin_lock, spin_unlock, Abort, LockId, Mode,
};
use _native::record::STATUS_OK;
use _native::rmap::{remove_migration_ptes, try_to_migrate};
use _native::run::run;
use _native::sched::RunOutcome;
use _native::swap::{add_to_swap_cache, folio_alloc_swap, swap_duplicate};
use _native::userfaultfd::handle_userfault;
use _native::vma_lock::{vma_end_read, vma_start_read, vma_start_write};
use _native::vmf::{
    release_fault_lock, Vmf, FAULT_FLAG_DEFAULT, FAULT_FLAG_RETRY_NOWAIT, FAULT_FLAG_TRIED,
    FAULT_FLAG_USER, FAULT_FLAG_VMA_LOCK, FAULT_FLAG_WRITE, VM_FAULT_RETRY, VM_FAULT_SIGBUS,
    VM_FAULT_SIGSEGV,
};

use crate::engine::op;
use crate::rig::{note, pairs, Rig, MM};

/// The flags of a user read fault on the `mmap_lock` path (`do_user_addr_fault`).
const USER_FAULT: u32 = FAULT_FLAG_DEFAULT | FAULT_FLAG_USER;
/// The same fault on the per-VMA lock path.
const VMA_FAULT: u32 = USER_FAULT | FAULT_FLAG_VMA_LOCK;

/// A rig whose kernel runs `mutant` (set before any task holds the kernel).
fn rig_with(ntasks: usize, mutant: Mutant) -> Rig {
    let mut rig = Rig::new(ntasks);
    Rc::get_mut(&mut rig.k).expect("no task started yet").mutant = mutant;
    rig.k.st.borrow_mut().mutant = mutant;
    rig
}

/// Sleep a tick at a time until `cond` holds of the kernel state.
async fn wait_until(k: &Kernel, cond: impl Fn(&State) -> bool) {
    while !cond(&k.st()) {
        k.sleep_tick("test:wait").await;
    }
}

/// Whether the current task holds `lock` in `mode` (lockdep's view).
fn holding(k: &Kernel, lock: LockId, mode: Mode) -> bool {
    holds(&k.st(), lock, Some(mode))
}

/// The folio a present (or migration) PTE of `page` maps.
fn folio_at(k: &Kernel, page: Page) -> FolioId {
    k.st()
        .pte_lookup(MM, page)
        .and_then(|p| p.folio)
        .expect("a PTE mapping a folio")
}

fn pte_kind(s: &State, page: Page) -> Option<PteKind> {
    s.pte_lookup(MM, page).map(|p| p.kind)
}

/// Every violation as `(rule, task, message)`, for rules whose pairs are all alike.
fn details(rig: &Rig) -> Vec<(&'static str, usize, String)> {
    let s = rig.k.st.borrow();
    let v = &s.contract.violations;
    v.iter()
        .map(|x| (x.rule, x.task, x.message.clone()))
        .collect()
}

fn serial_idle(rig: &mut Rig) {
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
}

// ---------------------------------------------------------------------------------------------
// lock.release-unheld

/// An error path that unlocks `mmap_lock` a second time: lockdep finds the task no longer
/// holds it, and the (anonymous) reader count goes below zero.
#[test]
fn a_double_mmap_read_unlock_is_release_unheld() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        mmap_read_lock(&k, MM).await.unwrap();
        mmap_read_unlock(&mut k.st(), MM);
        mmap_read_unlock(&mut k.st(), MM);
    });
    serial_idle(&mut rig);
    assert_eq!(
        rig.violations(),
        pairs(&[
            // lockdep: the task does not hold mm0.mmap_lock
            ("lock.release-unheld", "mmap_read_unlock"),
            // the rwsem: no reader left to drop
            ("lock.release-unheld", "mmap_read_unlock"),
        ])
    );
}

/// Z18 (before 4089eef0e6ac): the arch code's `vma_end_read()` after a RETRY whose callee
/// already released the VMA lock.
#[test]
fn a_double_vma_end_read_is_release_unheld() {
    let mut rig = Rig::new(1);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, _| async move {
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        vma_end_read(&mut k.st(), v).unwrap(); // the callee, on RETRY
        vma_end_read(&mut k.st(), v).unwrap(); // the arch code again
    });
    serial_idle(&mut rig);
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("lock.release-unheld", "vma_end_read"), // lockdep
            ("lock.release-unheld", "vma_end_read"), // reader count below zero
        ])
    );
}

/// Z17 ("powerpc/mm: fix `mmap_lock` bad unlock"): a task drops `mmap_lock` it never took while
/// another task reads under it. The count is anonymous, as the kernel's: the release takes
/// the other reader's slot, which finds the count empty when it unlocks in its turn.
#[test]
fn an_unlock_of_another_tasks_read_lock_is_release_unheld() {
    let mut rig = Rig::new(2);
    rig.start(0, |k, log| async move {
        mmap_read_lock(&k, MM).await.unwrap();
        wait_until(&k, |s| s.mm(MM).mmap_lock.readers.is_empty()).await;
        let mine = holding(&k, LockId::Mmap(MM), Mode::Read);
        note(&log, format!("t0 holds per lockdep: {mine}, readers: 0"));
        mmap_read_unlock(&mut k.st(), MM);
    });
    rig.start(1, |k, _| async move {
        mmap_read_unlock(&mut k.st(), MM); // bad_access() -> __bad_area()
    });
    serial_idle(&mut rig);
    assert_eq!(
        *rig.log.borrow(),
        ["t0 holds per lockdep: true, readers: 0"]
    );
    let found: Vec<_> = details(&rig).into_iter().map(|(_, t, m)| (t, m)).collect();
    assert_eq!(
        found,
        [
            (1, "mm0.mmap_lock released (r) but not held".to_owned()),
            (0, "mm0.mmap_lock reader count below zero".to_owned()),
        ]
    );
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("lock.release-unheld", "mmap_read_unlock"),
            ("lock.release-unheld", "mmap_read_unlock"),
        ])
    );
}

/// Write-side and spinlock releases of locks the task does not hold: `mmap_write_unlock` and
/// `mmap_write_downgrade` (whose `vma_end_write_all` asserts the write lock first), and
/// `pte_unmap_unlock` of a PTL nobody took.
#[test]
fn write_and_spinlock_releases_of_unheld_locks_are_release_unheld() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        mmap_write_unlock(&mut k.st(), MM);
        mmap_write_downgrade(&mut k.st(), MM);
        pte_alloc(&k, MM, 0).await.unwrap();
        let table = k.st().mm(MM).pmd[0].expect("a table");
        pte_unmap_unlock(&mut k.st(), table);
    });
    serial_idle(&mut rig);
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("lock.release-unheld", "vma_end_write_all"),
            ("lock.release-unheld", "mmap_write_unlock"),
            ("lock.release-unheld", "vma_end_write_all"),
            ("lock.release-unheld", "mmap_write_downgrade"),
            ("lock.release-unheld", "spin_unlock"),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// lock.recursive

/// A read lock taken twice (granted: the rwsem is free for readers) is reported where it is
/// taken, `mmap_lock` as the VMA lock; a write lock asked for under one's own read lock can
/// never be granted, so it is reported before the task queues behind itself for good.
#[test]
fn rwsem_acquisitions_while_held_are_recursive() {
    let mut rig = Rig::new(2);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, _| async move {
        mmap_read_lock(&k, MM).await.unwrap();
        mmap_read_lock(&k, MM).await.unwrap();
        mmap_read_unlock(&mut k.st(), MM);
        mmap_read_unlock(&mut k.st(), MM);
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        vma_end_read(&mut k.st(), v).unwrap();
        vma_end_read(&mut k.st(), v).unwrap();
    });
    rig.start(1, |k, log| async move {
        mmap_read_lock(&k, MM).await.unwrap();
        mmap_write_lock(&k, MM).await.unwrap();
        note(&log, "t1 upgraded");
    });
    serial_idle(&mut rig);
    assert!(rig.log.borrow().is_empty(), "t1 waits behind itself");
    assert_eq!(rig.k.sched.borrow().unfinished(), [1]);
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("lock.recursive", "mmap_read_lock"),
            ("lock.recursive", "vma_start_read"),
            ("lock.recursive", "mmap_write_lock"),
        ])
    );
}

/// A PTL taken again by its holder would spin forever: reported, and the run stops.
#[test]
fn a_ptl_taken_twice_is_recursive_and_stops_the_run() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, log| async move {
        pte_alloc(&k, MM, 0).await.unwrap();
        let table = pte_offset_map_lock(&k, MM, 0).await.unwrap();
        assert!(table.is_some());
        let again = pte_offset_map_lock(&k, MM, 0).await;
        note(&log, format!("{again:?}"));
        assert_eq!(again, Err(Abort::Stop));
    });
    serial_idle(&mut rig);
    assert_eq!(*rig.log.borrow(), ["Err(Stop)"]);
    assert_eq!(rig.violations(), pairs(&[("lock.recursive", "spin_lock")]));
}

// ---------------------------------------------------------------------------------------------
// lock.sleep-under-ptl

/// Sleeping with a spinlock held: a folio lock, an rwsem and a timed sleep, each once under a
/// spinlock (reported, `might_sleep` at the head of the call, contended or not) and once after
/// its release (quiet).
#[test]
fn sleeping_under_a_ptl_or_page_table_lock_is_reported() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        pte_alloc(&k, MM, 0).await.unwrap();
        let f = k.st().alloc_folio(0, false, "test");
        let ptl = pte_offset_map_lock(&k, MM, 0).await.unwrap().unwrap();
        folio_lock(&k, f).await.unwrap();
        folio_unlock(&mut k.st(), f).unwrap();
        pte_unmap_unlock(&mut k.st(), ptl);
        folio_lock(&k, f).await.unwrap();
        folio_unlock(&mut k.st(), f).unwrap();

        spin_lock(&k, LockId::PageTableLock(MM)).await.unwrap();
        mmap_read_lock(&k, MM).await.unwrap();
        mmap_read_unlock(&mut k.st(), MM);
        spin_unlock(&mut k.st(), LockId::PageTableLock(MM));
        mmap_read_lock(&k, MM).await.unwrap();
        mmap_read_unlock(&mut k.st(), MM);

        let site = "do_swap_page:swapcache_prepare";
        let ptl = pte_offset_map_lock(&k, MM, 0).await.unwrap().unwrap();
        schedule_timeout_uninterruptible(&k, site).await;
        pte_unmap_unlock(&mut k.st(), ptl);
        schedule_timeout_uninterruptible(&k, site).await;
        folio_put(&mut k.st(), f, "test").unwrap();
    });
    serial_idle(&mut rig);
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("lock.sleep-under-ptl", "folio_lock"),
            ("lock.sleep-under-ptl", "mmap_read_lock"),
            ("lock.sleep-under-ptl", "do_swap_page"),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// lock.order-vma-folio

#[derive(Debug, Clone, Copy)]
enum FolioWait {
    Lock,
    LockKillable,
    WaitLocked,
}

/// t1 waits for folio `f` (`wait`), under a VMA read lock if `vma_locked`; t0 holds the folio
/// lock until t1 waits, if `contended`. The violations found.
fn folio_wait(wait: FolioWait, vma_locked: bool, contended: bool) -> Vec<(&'static str, String)> {
    let mut rig = Rig::new(2);
    let v = rig.vma(0, 4, true);
    let f = rig.k.st.borrow_mut().alloc_folio(0, false, "test");
    rig.start(0, move |k, _| async move {
        if contended {
            assert!(folio_trylock(&mut k.st(), f).unwrap());
            wait_until(&k, |s| !s.folios[f as usize].waiters.is_empty()).await;
            folio_unlock(&mut k.st(), f).unwrap();
        }
    });
    rig.start(1, move |k, log| async move {
        if vma_locked {
            assert!(vma_start_read(&mut k.st(), v).unwrap());
        }
        match wait {
            FolioWait::Lock => folio_lock(&k, f).await.unwrap(),
            FolioWait::LockKillable => assert_eq!(folio_lock_killable(&k, f).await, Ok(0)),
            FolioWait::WaitLocked => assert_eq!(folio_wait_locked(&k, f, false).await, Ok(0)),
        }
        let locked = k.st().folios[f as usize].locked;
        if locked {
            folio_unlock(&mut k.st(), f).unwrap();
        }
        if vma_locked {
            vma_end_read(&mut k.st(), v).unwrap();
        }
        note(&log, "t1 done");
    });
    serial_idle(&mut rig);
    assert_eq!(*rig.log.borrow(), ["t1 done"]);
    rig.violations()
}

/// I3: a task holding a VMA read lock must not sleep on a folio lock (the holder may be
/// waiting for `mmap_lock`, whose writer waits in `vma_start_write` for that reader).
/// Zasync-swap (before d065bd810b6d): `lock_page()` on a folio under I/O, under the VMA lock.
#[test]
fn blocking_on_a_folio_lock_under_a_vma_read_lock_is_reported() {
    assert_eq!(
        folio_wait(FolioWait::Lock, true, true),
        pairs(&[("lock.order-vma-folio", "folio_lock")])
    );
    assert_eq!(
        folio_wait(FolioWait::LockKillable, true, true),
        pairs(&[("lock.order-vma-folio", "folio_lock_killable")])
    );
    assert_eq!(
        folio_wait(FolioWait::WaitLocked, true, true),
        pairs(&[("lock.order-vma-folio", "folio_wait_locked")])
    );
}

/// Only blocking counts: an uncontended `folio_lock` under the VMA lock is fine, and so is a
/// contended one without it.
#[test]
fn a_folio_lock_that_does_not_block_or_holds_no_vma_lock_is_quiet() {
    for wait in [
        FolioWait::Lock,
        FolioWait::LockKillable,
        FolioWait::WaitLocked,
    ] {
        assert_eq!(folio_wait(wait, true, false), [], "{wait:?} uncontended");
        assert_eq!(
            folio_wait(wait, false, true),
            [],
            "{wait:?} without VMA lock"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// lock.order-vma-mmap

/// I8: a VMA reader that blocks on `mmap_lock` deadlocks against a writer that holds
/// `mmap_lock` and waits in `vma_start_write` for that very reader (what the arch fallback to
/// `lock_mmap` would do if a RETRY left the VMA lock held).
#[test]
fn mmap_lock_under_a_vma_read_lock_is_reported_and_deadlocks() {
    let mut rig = Rig::new(2);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        wait_until(&k, |s| !s.vmas[v].vm_lock.waiters.is_empty()).await;
        mmap_read_lock(&k, MM).await.unwrap();
        note(&log, "t0 got mmap_lock");
    });
    rig.start(1, move |k, log| async move {
        mmap_write_lock(&k, MM).await.unwrap();
        vma_start_write(&k, v).await.unwrap();
        note(&log, "t1 write-locked the VMA");
    });
    serial_idle(&mut rig);
    assert!(rig.log.borrow().is_empty());
    assert_eq!(rig.k.sched.borrow().unfinished(), [0, 1]);
    assert_eq!(
        rig.violations(),
        pairs(&[("lock.order-vma-mmap", "mmap_read_lock")])
    );
}

/// Every blocking acquisition is checked, contended or not; `mmap_read_trylock` (which
/// `lock_mm_and_find_vma` tries first) never blocks and is not.
#[test]
fn every_blocking_mmap_lock_under_a_vma_read_lock_is_reported() {
    let mut rig = Rig::new(1);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, _| async move {
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        assert!(mmap_read_trylock(&mut k.st(), MM));
        mmap_read_unlock(&mut k.st(), MM);
        mmap_write_lock(&k, MM).await.unwrap();
        mmap_write_unlock(&mut k.st(), MM);
        assert_eq!(mmap_read_lock_killable(&k, MM).await, Ok(0));
        mmap_read_unlock(&mut k.st(), MM);
        vma_end_read(&mut k.st(), v).unwrap();
    });
    serial_idle(&mut rig);
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("lock.order-vma-mmap", "mmap_write_lock"),
            ("lock.order-vma-mmap", "mmap_read_lock_killable"),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// lock.retry-nowait-vma

/// I2: `FAULT_FLAG_RETRY_NOWAIT` means "return RETRY with the lock still held", which the VMA
/// lock's hand-off cannot honour: `sanitize_fault_flags` refuses it with SIGSEGV before the
/// fault is handled. Under `mmap_lock` the flag is fine.
#[test]
fn retry_nowait_under_the_vma_lock_is_refused_with_sigsegv() {
    let mut rig = Rig::new(1);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        mmap_read_lock(&k, MM).await.unwrap();
        let ret = handle_mm_fault(&k, MM, v, 1, USER_FAULT | FAULT_FLAG_RETRY_NOWAIT).await;
        mmap_read_unlock(&mut k.st(), MM);
        note(&log, format!("mmap_lock: {ret:?}"));

        assert!(vma_start_read(&mut k.st(), v).unwrap());
        let flags = VMA_FAULT | FAULT_FLAG_RETRY_NOWAIT | FAULT_FLAG_WRITE;
        let ret = handle_mm_fault(&k, MM, v, 2, flags).await.unwrap();
        let sigsegv = ret == VM_FAULT_SIGSEGV;
        let held = holding(&k, LockId::Vm(v), Mode::Read);
        note(
            &log,
            format!("VMA lock: SIGSEGV: {sigsegv}, still held: {held}"),
        );
        vma_end_read(&mut k.st(), v).unwrap();
        let untouched = pte_kind(&k.st(), 2) == Some(PteKind::None);
        note(&log, format!("page 2 untouched: {untouched}"));
    });
    serial_idle(&mut rig);
    assert_eq!(
        *rig.log.borrow(),
        [
            "mmap_lock: Ok(0)",
            "VMA lock: SIGSEGV: true, still held: true",
            "page 2 untouched: true",
        ]
    );
    assert_eq!(
        rig.violations(),
        pairs(&[("lock.retry-nowait-vma", "sanitize_fault_flags")])
    );
}

// ---------------------------------------------------------------------------------------------
// lock.handoff

/// I1, on entry: `handle_mm_fault` called without the fault lock its flags name (a caller
/// that lost it on an earlier path). The fault itself goes through (the zero page).
#[test]
fn handle_mm_fault_entered_without_the_fault_lock_is_a_handoff_violation() {
    let mut rig = Rig::new(1);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        let ret = handle_mm_fault(&k, MM, v, 0, VMA_FAULT).await;
        vma_end_read(&mut k.st(), v).unwrap();
        note(&log, format!("with the VMA lock: {ret:?}"));
        let ret = handle_mm_fault(&k, MM, v, 1, VMA_FAULT).await;
        note(&log, format!("without: {ret:?}"));
    });
    serial_idle(&mut rig);
    assert_eq!(
        *rig.log.borrow(),
        ["with the VMA lock: Ok(0)", "without: Ok(0)"]
    );
    assert_eq!(pte_kind(&rig.k.st.borrow(), 1), Some(PteKind::Zero));
    assert_eq!(
        rig.violations(),
        pairs(&[("lock.handoff", "handle_mm_fault")])
    );
}

/// A swap fault on page 0 (`flags`, under the fault lock they name) whose swap-cache folio t0
/// holds locked (a swap-in whose read is in flight) until the fault waits for it or returns;
/// with `kill`, t0 first sends the waiting task a fatal signal and waits until it has given
/// up. The log: the fault's result and whether the fault lock is still held.
fn swap_fault_on_a_locked_folio(mutant: Mutant, flags: u32, kill: bool) -> Rig {
    let mut rig = rig_with(2, mutant);
    let v = rig.vma(0, 4, true);
    let returned = Rc::new(Cell::new(false));
    let fault_returned = Rc::clone(&returned);
    rig.start(0, move |k, _| async move {
        let f = {
            let mut s = k.st();
            let f = s.alloc_folio(0x2a, false, "read_swap_cache_async");
            assert!(folio_trylock(&mut s, f).unwrap());
            let slot = folio_alloc_swap(&mut s.swap);
            swap_duplicate(&mut s.swap, slot);
            add_to_swap_cache(&mut s, f, slot).unwrap();
            f
        };
        pte_alloc(&k, MM, 0).await.unwrap();
        let ptl = pte_offset_map_lock(&k, MM, 0).await.unwrap().unwrap();
        {
            let mut s = k.st();
            let entry = swp_entry_to_pte(s.folios[f as usize].swapcache, true);
            set_pte_at(&mut s, MM, ptl, 0, entry, "try_to_unmap_one").unwrap();
            pte_unmap_unlock(&mut s, ptl);
        }
        while k.st().folios[f as usize].waiters.is_empty() && !returned.get() {
            k.sleep_tick("test:wait").await;
        }
        if kill {
            {
                let mut s = k.st();
                s.cur[1].killed = true; // SIGKILL: wakes a killable sleeper
                s.wake(1);
            }
            wait_until(&k, |s| s.folios[f as usize].waiters.is_empty()).await;
        }
        let mut s = k.st();
        folio_unlock(&mut s, f).unwrap(); // the read completes
        folio_put(&mut s, f, "read_swap_cache_async").unwrap();
    });
    rig.start(1, move |k, log| async move {
        let fl = if flags & FAULT_FLAG_VMA_LOCK != 0 {
            assert!(vma_start_read(&mut k.st(), v).unwrap());
            LockId::Vm(v)
        } else {
            mmap_read_lock(&k, MM).await.unwrap();
            LockId::Mmap(MM)
        };
        let ret = handle_mm_fault(&k, MM, v, 0, flags).await.unwrap();
        fault_returned.set(true);
        let retry = ret == VM_FAULT_RETRY;
        let held = holding(&k, fl, Mode::Read);
        note(&log, format!("RETRY: {retry}, fault lock held: {held}"));
    });
    serial_idle(&mut rig);
    rig
}

/// Z19 (before fdc724d6aa44): `__folio_lock_or_retry` drops the fault lock with
/// `mmap_read_unlock()` whichever lock the fault holds. A swap fault under the VMA lock finds
/// its folio locked, "drops" the lock and waits; `handle_mm_fault` returns RETRY with the VMA
/// lock still held.
#[test]
fn a_retry_with_the_vma_lock_still_held_is_a_handoff_violation() {
    let rig = swap_fault_on_a_locked_folio(Mutant::Z19FolioLockMmapUnlock, VMA_FAULT, false);
    assert_eq!(*rig.log.borrow(), ["RETRY: true, fault lock held: true"]);
    assert_eq!(
        rig.violations(),
        pairs(&[
            // the mismatched drop: mmap_lock is not held (lockdep, then the reader count)
            ("lock.release-unheld", "mmap_read_unlock"),
            ("lock.release-unheld", "mmap_read_unlock"),
            // the wait for the folio with the VMA lock in fact still held (I3)
            ("lock.order-vma-folio", "folio_wait_locked"),
            ("lock.handoff", "handle_mm_fault"),
        ])
    );
}

#[test]
fn a_retry_that_released_the_vma_lock_is_quiet() {
    let rig = swap_fault_on_a_locked_folio(Mutant::None, VMA_FAULT, false);
    assert_eq!(*rig.log.borrow(), ["RETRY: true, fault lock held: false"]);
    assert_eq!(rig.violations(), []);
}

/// `FAULT_FLAG_RETRY_NOWAIT` promises the caller (GUP's `FOLL_NOWAIT`) a RETRY with the fault
/// lock still held, and `__folio_lock_or_retry` keeps that promise on the first try only. On a
/// later try (`FAULT_FLAG_TRIED`) a fatal signal in `folio_lock_killable` makes it drop the
/// lock and return RETRY, which such a caller would unlock a second time.
#[test]
fn a_nowait_retry_without_the_fault_lock_is_a_handoff_violation() {
    let first = USER_FAULT | FAULT_FLAG_RETRY_NOWAIT;
    let rig = swap_fault_on_a_locked_folio(Mutant::None, first, false);
    assert_eq!(*rig.log.borrow(), ["RETRY: true, fault lock held: true"]);
    assert_eq!(rig.violations(), []);

    let later = first | FAULT_FLAG_TRIED;
    let rig = swap_fault_on_a_locked_folio(Mutant::None, later, true);
    assert_eq!(*rig.log.borrow(), ["RETRY: true, fault lock held: false"]);
    assert_eq!(
        rig.violations(),
        pairs(&[("lock.handoff", "handle_mm_fault")])
    );
}

// ---------------------------------------------------------------------------------------------
// lock.held-at-return (the whole engine: checked when a user operation returns)

/// Page 0 swapped out on an asynchronous device and read back twice: the second read finds
/// the folio in the swap cache, locked under I/O, so its fault under the VMA lock takes the
/// `folio_lock_or_retry` path (as `engine.rs` does for Z18).
fn async_swap_in_case() -> Case {
    let pageout = op(OpKind::MadvisePageout, 0, 1, 0, 0);
    let read = op(OpKind::Read, 0, 0, 0, 0);
    let setup = vec![
        op(OpKind::Mmap, 0, 1, 3, 0),
        op(OpKind::Write, 0, 0, 0, 0x2a),
        pageout,
        read,
        pageout,
        read,
    ];
    Case {
        setup,
        nr_pages: 4,
        swap_async: true,
        schedule: Schedule::serial(),
        ..Case::new(vec![Vec::new()])
    }
}

/// Z19 through the whole engine: after the RETRY the arch code goes to `lock_mmap` (whose
/// `mmap_read_trylock` succeeds), the fault completes, and the `read` returns to user space
/// still holding the VMA lock.
#[test]
fn a_user_operation_returning_with_a_lock_held_is_reported() {
    let case = async_swap_in_case();
    let clean = run(&case, Mutant::None, false).expect("engine ok");
    assert_eq!(clean.violations, []);
    let r = run(&case, Mutant::Z19FolioLockMmapUnlock, false).expect("engine ok");
    assert_eq!(r.status, STATUS_OK);
    let results: Vec<i64> = r.ops.iter().map(|o| o.result).collect();
    assert_eq!(results, [0, 0, 0, 0x2a, 0, 0x2a]);
    let found: Vec<_> = r
        .violations
        .iter()
        .map(|v| (v.rule, v.function.clone()))
        .collect();
    assert_eq!(
        found,
        pairs(&[
            // as in a_retry_with_the_vma_lock_still_held_is_a_handoff_violation
            ("lock.release-unheld", "mmap_read_unlock"),
            ("lock.release-unheld", "mmap_read_unlock"),
            ("lock.order-vma-folio", "folio_wait_locked"),
            ("lock.handoff", "handle_mm_fault"),
            ("lock.held-at-return", "read"),
            // at the end of the run: the task's held lock, and the VMA's rwsem itself
            ("lock.held-at-quiescence", "quiescence"),
            ("lock.held-at-quiescence", "quiescence"),
        ])
    );
    let leak = r
        .violations
        .iter()
        .find(|v| v.rule == "lock.held-at-return");
    assert_eq!(
        leak.map(|v| v.message.as_str()),
        Some("still holding vma#0.vm_lock:r")
    );
}

// ---------------------------------------------------------------------------------------------
// lock.held-at-quiescence

/// A missing unlock on each kind of lock, by three tasks: `mmap_lock`, a VMA read lock and a
/// PTL. Each is reported twice at quiescence: in the task's held list, and as the lock itself
/// still held (charged to the task running the checks).
#[test]
fn locks_left_held_at_the_end_are_reported_at_quiescence() {
    let mut rig = Rig::new(3);
    let v = rig.vma(0, 4, true);
    rig.start(0, |k, _| async move {
        mmap_read_lock(&k, MM).await.unwrap();
    });
    rig.start(1, move |k, _| async move {
        assert!(vma_start_read(&mut k.st(), v).unwrap());
    });
    rig.start(2, |k, _| async move {
        pte_alloc(&k, MM, 0).await.unwrap();
        pte_offset_map_lock(&k, MM, 0).await.unwrap().unwrap();
    });
    serial_idle(&mut rig);
    assert_eq!(rig.violations(), []);
    rig.quiesce();
    let me = rig.k.st.borrow().tid;
    let held = |t: usize, what: &str| ("lock.held-at-quiescence", t, what.to_owned());
    assert_eq!(
        details(&rig),
        [
            held(0, "mm0.mmap_lock:r"),
            held(1, "vma#0.vm_lock:r"),
            held(2, "mm0.pt0.ptl:spin"),
            held(me, "mm0.mmap_lock"),
            held(me, "mm0.pt0.ptl"),
            held(me, "vma#0.vm_lock"),
        ]
    );
}

#[test]
fn a_run_that_released_everything_is_quiet_at_quiescence() {
    let mut rig = Rig::new(3);
    let v = rig.vma(0, 4, true);
    rig.start(0, |k, _| async move {
        mmap_read_lock(&k, MM).await.unwrap();
        mmap_read_unlock(&mut k.st(), MM);
    });
    rig.start(1, move |k, _| async move {
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        vma_end_read(&mut k.st(), v).unwrap();
    });
    rig.start(2, |k, _| async move {
        pte_alloc(&k, MM, 0).await.unwrap();
        let ptl = pte_offset_map_lock(&k, MM, 0).await.unwrap().unwrap();
        pte_unmap_unlock(&mut k.st(), ptl);
    });
    serial_idle(&mut rig);
    rig.quiesce();
    assert_eq!(rig.violations(), []);
}

// ---------------------------------------------------------------------------------------------
// uffd.fault-lock

/// I5: `handle_userfault` asserts the fault lock (`assert_fault_locked`). For the VMA lock
/// that is `vma_assert_locked`, which any holder satisfies (no owner check); for `mmap_lock`
/// it is lockdep's `lockdep_assert_held`, which wants the current task to hold it.
#[test]
fn handle_userfault_without_the_fault_lock_is_reported() {
    let mut rig = Rig::new(2);
    let v = rig.vma(0, 4, true);
    let done = Rc::new(Cell::new(false));
    let t1_done = Rc::clone(&done);
    rig.start(0, move |k, log| async move {
        for (fl, flags) in [("VMA lock", VMA_FAULT), ("mmap_lock", USER_FAULT)] {
            let mut vmf = Vmf::new(MM, v, 0, flags);
            let sigbus = handle_userfault(&k, &mut vmf).await == Ok(VM_FAULT_SIGBUS);
            note(&log, format!("{fl} not held: SIGBUS {sigbus}"));
        }
        // t1 holds both locks now
        wait_until(&k, |s| s.vmas[v].vm_lock.is_locked()).await;
        for (fl, flags) in [("VMA lock", VMA_FAULT), ("mmap_lock", USER_FAULT)] {
            let mut vmf = Vmf::new(MM, v, 0, flags);
            let sigbus = handle_userfault(&k, &mut vmf).await == Ok(VM_FAULT_SIGBUS);
            note(&log, format!("{fl} held by t1: SIGBUS {sigbus}"));
        }
        done.set(true);
    });
    rig.start(1, move |k, _| async move {
        mmap_read_lock(&k, MM).await.unwrap();
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        while !t1_done.get() {
            k.sleep_tick("test:wait").await;
        }
        vma_end_read(&mut k.st(), v).unwrap();
        mmap_read_unlock(&mut k.st(), MM);
    });
    serial_idle(&mut rig);
    // Not registered with userfaultfd: SIGBUS once past the assertion.
    assert_eq!(
        *rig.log.borrow(),
        [
            "VMA lock not held: SIGBUS true",
            "mmap_lock not held: SIGBUS true",
            "VMA lock held by t1: SIGBUS true",
            "mmap_lock held by t1: SIGBUS true",
        ]
    );
    let found: Vec<_> = details(&rig).into_iter().map(|(_, _, m)| m).collect();
    assert_eq!(
        found,
        [
            "vma#0.vm_lock not held",
            "mm0.mmap_lock not held",
            "mm0.mmap_lock not held",
        ]
    );
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("uffd.fault-lock", "handle_userfault"),
            ("uffd.fault-lock", "handle_userfault"),
            ("uffd.fault-lock", "handle_userfault"),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// devpriv.mmap-lock

/// Page 0 written, migrated to the device, then read-faulted under the VMA lock; then read
/// by a user access. The log: the fault's result and the data read.
fn device_private_fault(mutant: Mutant) -> Rig {
    let mut rig = rig_with(1, mutant);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        assert_eq!(user_access(&k, MM, 0, true, 0x5).await, Ok(0));
        assert_eq!(dmirror_migrate_to_device(&k, MM, 0).await, Ok(0));
        assert_eq!(pte_kind(&k.st(), 0), Some(PteKind::DevicePrivate));
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        let ret = handle_mm_fault(&k, MM, v, 0, VMA_FAULT).await.unwrap();
        if ret & VM_FAULT_RETRY == 0 {
            vma_end_read(&mut k.st(), v).unwrap();
        }
        note(&log, format!("fault RETRY: {}", ret == VM_FAULT_RETRY));
        let data = user_access(&k, MM, 0, false, 0).await;
        note(&log, format!("read {data:?}"));
    });
    serial_idle(&mut rig);
    rig
}

/// Zdevpriv (seed 000, the series' v1 before 1235ccd05b6d): `do_swap_page` handles a
/// device-private entry under the VMA lock, so the driver's `migrate_to_ram` runs without the
/// `mmap_lock` it asserts. Fixed, the fault returns RETRY and redoes it under `mmap_lock`.
#[test]
fn migrate_to_ram_without_mmap_lock_is_reported() {
    let rig = device_private_fault(Mutant::ZdevprivUnderVmaLock);
    assert_eq!(*rig.log.borrow(), ["fault RETRY: false", "read Ok(5)"]);
    assert_eq!(
        rig.violations(),
        pairs(&[("devpriv.mmap-lock", "dmirror_devmem_fault")])
    );
    let clean = device_private_fault(Mutant::None);
    assert_eq!(*clean.log.borrow(), ["fault RETRY: true", "read Ok(5)"]);
    assert_eq!(clean.violations(), []);
}

// ---------------------------------------------------------------------------------------------
// migration.waiter-holds-ref

/// t0 migrates page 0's folio by hand (isolate, lock, migration entries; back once a fault
/// waits on it); t1 writes page 0, pins the folio if `pinned` (a `get_user_pages` reference it
/// keeps), then faults on the migration entry under the VMA lock.
fn fault_on_a_migration_entry(pinned: bool) -> Rig {
    let mut rig = Rig::new(2);
    let v = rig.vma(0, 4, true);
    rig.start(0, |k, log| async move {
        // t1's store is done (its access retried after the fault), and its pin taken
        wait_until(&k, |s| {
            let folio = s.pte_lookup(MM, 0).and_then(|p| p.folio);
            folio.is_some_and(|f| s.folios[f as usize].data == 0x2a)
        })
        .await;
        let f = folio_at(&k, 0);
        assert_eq!(k.st().folios[f as usize].refcount, 1 + i32::from(pinned));
        {
            let mut s = k.st();
            assert!(folio_isolate_lru(&mut s, f, "migrate_pages").unwrap());
            assert!(folio_trylock(&mut s, f).unwrap());
        }
        try_to_migrate(&k, f).await.unwrap();
        wait_until(&k, |s| !s.folios[f as usize].waiters.is_empty()).await;
        let refcount = k.st().folios[f as usize].refcount;
        note(&log, format!("refcount with the waiter asleep: {refcount}"));
        remove_migration_ptes(&k, f, f).await.unwrap();
        let mut s = k.st();
        folio_unlock(&mut s, f).unwrap();
        folio_putback_lru(&mut s, f, "migrate_pages").unwrap();
    });
    rig.start(1, move |k, log| async move {
        assert_eq!(user_access(&k, MM, 0, true, 0x2a).await, Ok(0));
        let f = folio_at(&k, 0);
        if pinned {
            folio_get(&mut k.st(), f, "get_user_pages").unwrap();
        }
        wait_until(&k, |s| pte_kind(s, 0) == Some(PteKind::Migration)).await;
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        let ret = handle_mm_fault(&k, MM, v, 0, VMA_FAULT).await;
        vma_end_read(&mut k.st(), v).unwrap();
        note(&log, format!("fault {ret:?}"));
        if pinned {
            folio_put(&mut k.st(), f, "get_user_pages").unwrap();
        }
    });
    serial_idle(&mut rig);
    rig
}

/// I13a (ffa65753c431): a fault waiting on a migration entry must not pin the folio, or the
/// migrator's refcount check fails for as long as it sleeps. Here the waiter brings a
/// reference of its own to the wait.
#[test]
fn a_migration_waiter_holding_a_reference_is_reported() {
    let rig = fault_on_a_migration_entry(true);
    assert_eq!(
        *rig.log.borrow(),
        ["refcount with the waiter asleep: 2", "fault Ok(0)"]
    );
    assert_eq!(
        rig.violations(),
        pairs(&[(
            "migration.waiter-holds-ref",
            "migration_entry_wait_on_locked"
        )])
    );
}

#[test]
fn a_migration_waiter_without_a_reference_is_quiet() {
    let rig = fault_on_a_migration_entry(false);
    assert_eq!(
        *rig.log.borrow(),
        ["refcount with the waiter asleep: 1", "fault Ok(0)"]
    );
    assert_eq!(rig.violations(), []);
    rig.quiesce();
    assert_eq!(rig.violations(), []);
}

// ---------------------------------------------------------------------------------------------
// vma.use-after-unlock

/// I4: once a handler has dropped the fault lock (`release_fault_lock`, as
/// `folio_lock_or_retry` does before it waits), the VMA may be unmapped (and freed after a
/// grace period): reading `vmf->vma->vm_flags` then is a use after unlock. Here t1 munmaps
/// the VMA in between; the read before the release is quiet.
#[test]
fn a_vma_read_through_the_vmf_after_the_fault_lock_is_dropped_is_reported() {
    let mut rig = Rig::new(2);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        let mut vmf = Vmf::new(MM, v, 0, VMA_FAULT);
        let before = vmf.vm_flags(&mut k.st()).unwrap();
        release_fault_lock(&mut k.st(), &mut vmf).unwrap();
        wait_until(&k, |s| s.vmas[v].detached).await;
        let after = vmf.vm_flags(&mut k.st()).unwrap();
        note(&log, format!("flags {before:#x} -> {after:#x}"));
    });
    rig.start(1, |k, log| async move {
        let ret = sys_munmap(&k, MM, 0, 4).await;
        note(&log, format!("munmap {ret:?}"));
    });
    serial_idle(&mut rig);
    assert_eq!(*rig.log.borrow(), ["munmap Ok(0)", "flags 0x3 -> 0x3"]);
    assert_eq!(
        rig.violations(),
        pairs(&[("vma.use-after-unlock", "vmf->vma")])
    );
}
