//! The per-VMA lock primitives on their own (research §2): the sequence trick, the trylock
//! that fails under a queued writer, `lock_vma_under_rcu`'s MISS and ABORT, RCU freeing.
//!
//! Each test builds a tiny machine (one mm, hand-made VMAs), spawns tasks whose bodies call
//! the primitives directly, and fixes the interleaving with explicit scheduler choices.

use _native::mmap_lock::{mmap_read_lock, mmap_read_unlock};
use _native::mmap_lock::{mmap_write_downgrade, mmap_write_lock, mmap_write_unlock};
use _native::objects::VmaLockEvent;
use _native::rcu::{rcu_daemon, rcu_read_lock, rcu_read_unlock, vm_area_free};
use _native::sched::{Policy, RunOutcome};
use _native::vma::{find_vma, split_vma, vma_iter_remove, vma_iter_store, vma_lookup, vma_next};
use _native::vma_lock::{
    is_vma_write_locked, lock_vma_under_rcu, vma_end_read, vma_mark_detached, vma_start_read,
    vma_start_write,
};

use crate::rig::{note, Rig, MM};

#[test]
fn write_locks_end_for_all_vmas_at_mmap_write_unlock() {
    let mut rig = Rig::new(2);
    let (v1, v2, v3) = (
        rig.vma(0, 2, true),
        rig.vma(2, 4, true),
        rig.vma(4, 6, true),
    );
    rig.start(0, |k, log| async move {
        mmap_write_lock(&k, MM).await.unwrap();
        vma_start_write(&k, v1).await.unwrap();
        vma_start_write(&k, v2).await.unwrap();
        let both = is_vma_write_locked(&k.st(), v1) && is_vma_write_locked(&k.st(), v2);
        note(&log, format!("writer locked both: {both}"));
        k.yield_now("test:holding").await;
        let seq = k.st().mm(MM).mm_lock_seq;
        mmap_write_unlock(&mut k.st(), MM);
        let after = k.st().mm(MM).mm_lock_seq;
        note(&log, format!("mm_lock_seq {seq} -> {after}"));
    });
    rig.start(1, move |k, log| async move {
        for (name, v) in [("v1", v1), ("v2", v2), ("v3", v3)] {
            let ok = vma_start_read(&mut k.st(), v).unwrap();
            note(&log, format!("under ML.w {name}: {ok}"));
            if ok {
                vma_end_read(&mut k.st(), v).unwrap();
            }
        }
        k.yield_now("test:wait").await;
        for (name, v) in [("v1", v1), ("v2", v2)] {
            let ok = vma_start_read(&mut k.st(), v).unwrap();
            note(&log, format!("after unlock {name}: {ok}"));
            vma_end_read(&mut k.st(), v).unwrap();
        }
    });
    // writer locks, reader tries, writer unlocks, reader tries again
    let log = rig.run(&[0, 1, 0, 1]);
    assert_eq!(
        log,
        [
            "writer locked both: true",
            "under ML.w v1: false",
            "under ML.w v2: false",
            "under ML.w v3: true",
            "mm_lock_seq 0 -> 1",
            "after unlock v1: true",
            "after unlock v2: true",
        ]
    );
}

#[test]
fn write_locks_end_at_mmap_write_downgrade() {
    let mut rig = Rig::new(2);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        mmap_write_lock(&k, MM).await.unwrap();
        vma_start_write(&k, v).await.unwrap();
        k.yield_now("test:holding").await;
        mmap_write_downgrade(&mut k.st(), MM);
        note(&log, "downgraded");
        k.yield_now("test:read-held").await;
        mmap_read_unlock(&mut k.st(), MM);
    });
    rig.start(1, move |k, log| async move {
        let ok = vma_start_read(&mut k.st(), v).unwrap();
        note(&log, format!("write-locked: {ok}"));
        k.yield_now("test:wait").await;
        let ok = vma_start_read(&mut k.st(), v).unwrap();
        note(&log, format!("after downgrade, ML.r still held: {ok}"));
        vma_end_read(&mut k.st(), v).unwrap();
    });
    let log = rig.run(&[0, 1, 0, 1]);
    assert_eq!(
        log,
        [
            "write-locked: false",
            "downgraded",
            "after downgrade, ML.r still held: true"
        ]
    );
}

#[test]
fn vma_start_read_fails_under_a_queued_writer() {
    let mut rig = Rig::new(3);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        let ok = vma_start_read(&mut k.st(), v).unwrap();
        note(&log, format!("t0 read-locks: {ok}"));
        k.yield_now("test:holding").await;
        vma_end_read(&mut k.st(), v).unwrap();
        note(&log, "t0 unlocks");
    });
    rig.start(1, move |k, log| async move {
        mmap_write_lock(&k, MM).await.unwrap();
        note(&log, "t1 queues in vma_start_write");
        vma_start_write(&k, v).await.unwrap();
        note(
            &log,
            format!("t1 write-locked: {}", is_vma_write_locked(&k.st(), v)),
        );
        mmap_write_unlock(&mut k.st(), MM);
    });
    rig.start(2, move |k, log| async move {
        let waiters = k.st().vmas[v].vm_lock.waiters.len();
        let ok = vma_start_read(&mut k.st(), v).unwrap();
        note(&log, format!("t2 with {waiters} queued writer: {ok}"));
    });
    // t0 read-locks; t1 queues; t2 tries (runnable: t0, t2); then t0 lets t1 in
    let log = rig.run(&[0, 1, 1]);
    assert_eq!(
        log,
        [
            "t0 read-locks: true",
            "t1 queues in vma_start_write",
            "t2 with 1 queued writer: false",
            "t0 unlocks",
            "t1 write-locked: true",
        ]
    );
}

#[test]
fn a_detached_vma_forces_a_rewalk() {
    let mut rig = Rig::new(3);
    let old = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        let got = lock_vma_under_rcu(&k, MM, 2).await.unwrap();
        note(&log, format!("fault got old: {}", got == Some(old)));
        if let Some(v) = got {
            vma_end_read(&mut k.st(), v).unwrap();
        }
    });
    rig.start(1, move |k, log| async move {
        // munmap + mmap of the same range, all under one write lock
        mmap_write_lock(&k, MM).await.unwrap();
        vma_start_write(&k, old).await.unwrap();
        let new = {
            let mut s = k.st();
            vma_mark_detached(&mut s, old, true);
            vma_iter_remove(&mut s, MM, old);
            vm_area_free(&mut s, old);
            let new = s.alloc_vma(MM, 0, 4, 3);
            s.vmas[new].anon_vma = Some(2);
            new
        };
        vma_start_write(&k, new).await.unwrap();
        vma_iter_store(&mut k.st(), MM, new);
        mmap_write_unlock(&mut k.st(), MM);
        note(&log, "replaced");
    });
    rig.start(2, |k, _| async move {
        k.st().rcu_daemon = Some(2);
        rcu_daemon(&k).await.unwrap();
    });
    // the RCU daemon parks; the fault walks; the writer replaces the VMA; the fault resumes
    let log = rig.run(&[2, 0, 1, 0, 0]);
    assert_eq!(log, ["replaced", "fault got old: false"]);
    assert_eq!(rig.counter(VmaLockEvent::Miss), 1);
    assert_eq!(rig.counter(VmaLockEvent::Abort), 0);
    assert!(
        rig.k.st.borrow().vmas[old].freed,
        "freed after the grace period"
    );
}

#[test]
fn a_vma_shrunk_by_a_split_fails_the_range_check() {
    let mut rig = Rig::new(2);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        let got = lock_vma_under_rcu(&k, MM, 3).await.unwrap();
        note(&log, format!("fault got a vma: {}", got.is_some()));
    });
    rig.start(1, move |k, log| async move {
        mmap_write_lock(&k, MM).await.unwrap();
        let new = split_vma(&k, MM, v, 2, false).await.unwrap();
        let r = k.vma_range(v);
        note(
            &log,
            format!("split: vma {r:?}, new {:?}", k.vma_range(new)),
        );
        mmap_write_unlock(&mut k.st(), MM);
    });
    // the fault finds v covering page 3, the split shrinks v to [0, 2), the fault resumes
    let log = rig.run(&[0, 1, 0]);
    assert_eq!(
        log,
        ["split: vma (0, 2), new (2, 4)", "fault got a vma: false"]
    );
    assert_eq!(rig.counter(VmaLockEvent::Abort), 1);
    assert_eq!(rig.counter(VmaLockEvent::Miss), 0);
    assert!(rig.k.st.borrow().vmas[v].vm_lock.readers.is_empty());
}

#[test]
fn an_anonymous_vma_without_anon_vma_is_refused() {
    let mut rig = Rig::new(1);
    let v = rig.vma(0, 4, false);
    rig.start(0, move |k, log| async move {
        let got = lock_vma_under_rcu(&k, MM, 1).await.unwrap();
        note(&log, format!("{got:?}"));
        note(
            &log,
            format!("unlocked: {}", !k.st().vmas[v].vm_lock.is_locked()),
        );
    });
    assert_eq!(rig.run(&[]), ["None", "unlocked: true"]);
    assert_eq!(rig.counter(VmaLockEvent::Abort), 1);
}

#[test]
fn rcu_waits_for_readers_before_freeing() {
    let mut rig = Rig::new(3);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        // A lookup parked inside its RCU read section (after mas_walk).
        let got = lock_vma_under_rcu(&k, MM, 1).await.unwrap();
        note(&log, format!("lookup: {got:?}"));
    });
    rig.start(1, move |k, log| async move {
        mmap_write_lock(&k, MM).await.unwrap();
        vma_start_write(&k, v).await.unwrap();
        {
            let mut s = k.st();
            vma_mark_detached(&mut s, v, true);
            vma_iter_remove(&mut s, MM, v);
            vm_area_free(&mut s, v);
        }
        mmap_write_unlock(&mut k.st(), MM);
        k.yield_now("test:after-free").await;
        note(
            &log,
            format!("freed while the reader walks: {}", k.st().vmas[v].freed),
        );
    });
    rig.start(2, |k, _| async move {
        k.st().rcu_daemon = Some(2);
        rcu_daemon(&k).await.unwrap();
    });
    // daemon parks; lookup walks; writer frees (daemon woken, cannot run the callback);
    // writer checks; lookup finishes (miss, then no VMA: abort)
    let log = rig.run(&[2, 0, 1, 2, 1, 0]);
    assert_eq!(log, ["freed while the reader walks: false", "lookup: None"]);
    assert!(rig.k.st.borrow().vmas[v].freed);
    assert_eq!(rig.counter(VmaLockEvent::Miss), 1);
}

/// `find_vma` asserts `mmap_lock` (RCU is not enough); an iterator step (`vma_next`) needs
/// `mmap_lock` or an RCU read section; `vma_lookup` (`mtree_load`, which takes RCU itself)
/// needs neither. Every failure is `vma.tree-unlocked`.
#[test]
fn tree_walks_need_the_lock_their_kernel_function_asserts() {
    let mut rig = Rig::new(1);
    let v = rig.vma(0, 4, true);
    let w = rig.vma(4, 6, true);
    rig.start(0, move |k, log| async move {
        note(
            &log,
            format!("unlocked find_vma: {:?}", find_vma(&mut k.st(), MM, 1)),
        );
        note(
            &log,
            format!("unlocked vma_lookup: {:?}", vma_lookup(&k.st(), MM, 1)),
        );
        rcu_read_lock(&mut k.st());
        note(
            &log,
            format!("rcu vma_next: {:?}", vma_next(&mut k.st(), MM, v)),
        );
        note(
            &log,
            format!("rcu find_vma: {:?}", find_vma(&mut k.st(), MM, 5)),
        );
        rcu_read_unlock(&mut k.st());
        note(
            &log,
            format!("unlocked vma_next: {:?}", vma_next(&mut k.st(), MM, v)),
        );
        mmap_read_lock(&k, MM).await.unwrap();
        note(
            &log,
            format!("mmap_lock find_vma: {:?}", find_vma(&mut k.st(), MM, 6)),
        );
        note(
            &log,
            format!("mmap_lock vma_next: {:?}", vma_next(&mut k.st(), MM, v)),
        );
        mmap_read_unlock(&mut k.st(), MM);
    });
    rig.k.sched.borrow_mut().policy = Policy::Serial;
    assert_eq!(rig.ex.run(&rig.k.sched), RunOutcome::Idle);
    assert_eq!(
        *rig.log.borrow(),
        [
            format!("unlocked find_vma: Some({v})"),
            format!("unlocked vma_lookup: Some({v})"),
            format!("rcu vma_next: Some({w})"),
            format!("rcu find_vma: Some({w})"),
            format!("unlocked vma_next: Some({w})"),
            "mmap_lock find_vma: None".to_string(),
            format!("mmap_lock vma_next: Some({w})"),
        ]
    );
    let s = rig.k.st.borrow();
    let found: Vec<_> = s
        .contract
        .violations
        .iter()
        .map(|x| (x.rule, x.function.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("vma.tree-unlocked", "find_vma"),
            ("vma.tree-unlocked", "find_vma"),
            ("vma.tree-unlocked", "vma_next"),
        ]
    );
}
