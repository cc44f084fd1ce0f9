//! The contract layer's memory-object rules can fail (MODEL.md §4.2): folios, PTEs and page
//! tables, swap slots, VMAs and fork. An oracle nobody has seen fire may be one that cannot.
//!
//! Each test runs the real kernel paths on the test machine into the state a historical kind
//! of bug leaves behind (a missing unlock or put, a rmap taken twice, a walker that kept a
//! table across munmap, a freed VMA still read-locked ...), then checks which rule the
//! contract layer reports and which kernel function it names. The lock and fault-protocol
//! rules are the `rules_lock` group's.

use _native::fault::user_access;
use _native::folio::{
    folio_get, folio_trylock, folio_unlock, page_add_anon_rmap, page_remove_rmap,
};
use _native::fork::do_fork;
use _native::memory::handle_mm_fault;
use _native::mmap::{sys_munmap, vm_mmap_pgoff};
use _native::mmap_lock::{mmap_read_lock, mmap_read_unlock, mmap_write_lock, mmap_write_unlock};
use _native::objects::{mk_pte, FolioId, Kernel, Page, State, TableId, PTRS_PER_TABLE};
use _native::pgtable::{pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use _native::rcu::{rcu_daemon, vm_area_free};
use _native::sched::RunOutcome;
use _native::swap::{
    folio_alloc_swap, folio_free_swap, swap_duplicate, swap_free, swapcache_clear,
};
use _native::vma::{anon_vma_prepare, vma_iter_remove};
use _native::vma_lock::{vma_end_read, vma_mark_detached, vma_start_read, vma_start_write};

use crate::rig::{note, pairs, Rig, MM};

/// The table mapping `page` of mm 0.
fn table_of(s: &State, page: Page) -> TableId {
    s.mm(MM).pmd[page as usize / PTRS_PER_TABLE].expect("page table")
}

/// The folio a present PTE of mm 0 maps at `page`.
fn folio_at(s: &State, page: Page) -> FolioId {
    let pte = s.tables[table_of(s, page)].ptes[page as usize % PTRS_PER_TABLE];
    pte.folio.expect("a present PTE")
}

/// Scheduler choices for two runnable tasks: t0, t1, t0, t1 ...
fn alternate() -> Vec<u8> {
    (0..400).map(|i| u8::from(i % 2 == 1)).collect()
}

/// `mmap(0, npages, PROT_READ | PROT_WRITE)` and a store to page 0 (a fault that allocates a
/// folio and maps it): the folio.
async fn populate(k: &Kernel, npages: Page) -> FolioId {
    vm_mmap_pgoff(k, MM, 0, npages, 3).await.unwrap();
    assert_eq!(user_access(k, MM, 0, true, 0x11).await.unwrap(), 0);
    folio_at(&k.st(), 0)
}

/// The unbroken paths the tests below start from leave nothing to report.
#[test]
fn the_paths_the_tests_start_from_are_clean() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let f = populate(&k, 4).await;
        assert!(folio_trylock(&mut k.st(), f).unwrap());
        folio_unlock(&mut k.st(), f).unwrap();
        do_fork(&k, MM).await.unwrap();
        assert_eq!(sys_munmap(&k, MM, 0, 4).await.unwrap(), 0);
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    rig.quiesce();
    assert_eq!(rig.violations(), []);
}

// ---------------------------------------------------------------------------------------------
// Folios (I11, I13, KASAN)

#[test]
fn a_folio_left_locked_is_caught_at_quiescence() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let f = populate(&k, 4).await;
        // A path that returns without its folio_unlock().
        assert!(folio_trylock(&mut k.st(), f).unwrap());
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    rig.quiesce();
    assert_eq!(
        rig.violations(),
        pairs(&[("folio.locked-at-quiescence", "quiescence")])
    );
}

#[test]
fn a_folio_freed_while_locked_is_caught_where_it_is_freed() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let f = populate(&k, 4).await;
        assert!(folio_trylock(&mut k.st(), f).unwrap());
        // munmap drops the last reference (tlb_finish_mmu() frees the batch) of a folio
        // someone forgot to unlock.
        sys_munmap(&k, MM, 0, 4).await.unwrap();
        assert!(k.st().folios[f as usize].freed);
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[("folio.locked-at-quiescence", "tlb_finish_mmu")])
    );
}

#[test]
fn a_mapcount_off_by_one_is_caught_at_quiescence_and_below_zero() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let f = populate(&k, 4).await;
        // A retried fault that adds the rmap a second time for the one PTE.
        page_add_anon_rmap(&mut k.st(), f, true, "do_anonymous_page").unwrap();
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    rig.quiesce();
    assert_eq!(rig.violations(), pairs(&[("folio.mapcount", "quiescence")]));

    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let f = populate(&k, 4).await;
        // A zap that removes the rmap twice.
        let mut s = k.st();
        page_remove_rmap(&mut s, f, "zap_pte_range").unwrap();
        page_remove_rmap(&mut s, f, "zap_pte_range").unwrap();
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[("folio.mapcount", "zap_pte_range")])
    );
}

#[test]
fn a_leaked_folio_reference_is_caught_at_quiescence() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let f = populate(&k, 4).await;
        // A lookup that takes a reference and never puts it.
        folio_get(&mut k.st(), f, "follow_page").unwrap();
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    rig.quiesce();
    assert_eq!(rig.violations(), pairs(&[("folio.refcount", "quiescence")]));
}

#[test]
fn unlocking_a_folio_another_task_locked_or_nobody_did_is_caught() {
    let mut rig = Rig::new(2);
    rig.start(0, |k, log| async move {
        let f = populate(&k, 4).await;
        assert!(folio_trylock(&mut k.st(), f).unwrap());
        note(&log, format!("{f}"));
        k.yield_now("test:holding").await;
        folio_unlock(&mut k.st(), f).unwrap();
        // ... and once more: the folio is no longer locked.
        folio_unlock(&mut k.st(), f).unwrap();
    });
    rig.start(1, |k, log| async move {
        let f: FolioId = loop {
            let locked = log.borrow().first().map(|f| f.parse().unwrap());
            if let Some(f) = locked {
                break f;
            }
            k.yield_now("test:poll").await;
        };
        // Another task's folio_unlock().
        folio_unlock(&mut k.st(), f).unwrap();
        let locked = k.st().folios[f as usize].locked;
        note(&log, format!("locked after t1: {locked}"));
    });
    // Alternate: t1 polls after each step of t0 and unlocks while t0 holds the lock.
    assert_eq!(rig.run_explicit(&alternate()), RunOutcome::Idle);
    assert_eq!(rig.log.borrow()[1], "locked after t1: true");
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("folio.unlock-unheld", "folio_unlock"),
            ("folio.unlock-unheld", "folio_unlock"),
        ])
    );
}

#[test]
fn a_freed_folio_touched_again_is_caught_and_stops_the_path() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, log| async move {
        let f = populate(&k, 4).await;
        sys_munmap(&k, MM, 0, 4).await.unwrap();
        // A lookup that kept the folio pointer across the munmap.
        let res = folio_get(&mut k.st(), f, "follow_page");
        note(&log, format!("{res:?}").split('(').next().unwrap_or(""));
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(*rig.log.borrow(), ["Err"]);
    assert_eq!(
        rig.violations(),
        pairs(&[("folio.use-after-free", "follow_page")])
    );
}

#[test]
fn swap_cache_work_on_an_unlocked_folio_is_caught() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let f = populate(&k, 4).await;
        // folio_free_swap() without the folio lock its caller must hold.
        assert!(!folio_free_swap(&mut k.st(), f).unwrap());
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[("folio.not-locked", "folio_free_swap")])
    );
}

// ---------------------------------------------------------------------------------------------
// PTEs and page tables (I10, I12, KASAN)

#[test]
fn a_pte_installed_outside_every_vma_is_caught() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        // Pages 0-1 mapped; 2-3 share their page table but no VMA covers them.
        let f = populate(&k, 2).await;
        let t = pte_offset_map_lock(&k, MM, 3).await.unwrap().unwrap();
        let mut s = k.st();
        // A fault that installs its PTE at the wrong address.
        set_pte_at(
            &mut s,
            MM,
            t,
            3,
            mk_pte(f, false, true, false, false),
            "do_anonymous_page",
        )
        .unwrap();
        pte_unmap_unlock(&mut s, t);
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[("pte.outside-vma", "do_anonymous_page")])
    );
}

#[test]
fn a_pte_left_behind_a_shrunk_vma_is_caught_at_quiescence() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        populate(&k, 4).await;
        user_access(&k, MM, 3, true, 0x33).await.unwrap();
        mmap_write_lock(&k, MM).await.unwrap();
        let v = k.st().mm(MM).vmas[0];
        vma_start_write(&k, v).await.unwrap();
        // A shrink that forgets to zap the range it gives up.
        k.st().vmas[v].vm_end = 2;
        mmap_write_unlock(&mut k.st(), MM);
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    rig.quiesce();
    assert_eq!(
        rig.violations(),
        pairs(&[("pte.outside-vma", "quiescence")])
    );
}

#[test]
fn a_page_table_used_after_munmap_freed_it_is_caught() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, log| async move {
        populate(&k, 4).await;
        let t = table_of(&k.st(), 0);
        sys_munmap(&k, MM, 0, 4).await.unwrap();
        assert!(
            k.st().tables[t].freed,
            "munmap of the whole range frees the table"
        );
        // A walker that kept the table across the munmap.
        let res = ptep_get(&mut k.st(), t, 0);
        note(&log, format!("{}", res.is_err()));
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(*rig.log.borrow(), ["true"]);
    assert_eq!(
        rig.violations(),
        pairs(&[("pte.table-use-after-free", "ptep_get")])
    );
}

#[test]
fn a_writable_pte_on_a_folio_fork_shared_is_caught() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let f = populate(&k, 4).await;
        do_fork(&k, MM).await.unwrap(); // parent and child now share f, read-only
        assert!(!k.st().folios[f as usize].anon_exclusive);
        let t = pte_offset_map_lock(&k, MM, 0).await.unwrap().unwrap();
        let mut s = k.st();
        // A write fault that reuses the shared folio instead of copying it.
        set_pte_at(
            &mut s,
            MM,
            t,
            0,
            mk_pte(f, true, true, true, false),
            "do_wp_page",
        )
        .unwrap();
        pte_unmap_unlock(&mut s, t);
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[("pte.writable-shared", "do_wp_page")])
    );
}

#[test]
fn a_pte_written_without_its_ptl_is_caught() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let f = populate(&k, 4).await;
        let mut s = k.st();
        let t = table_of(&s, 0);
        // A PTE update that skips pte_offset_map_lock().
        set_pte_at(
            &mut s,
            MM,
            t,
            0,
            mk_pte(f, false, true, false, false),
            "change_pte_range",
        )
        .unwrap();
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[("pte.unlocked-write", "change_pte_range")])
    );
}

// ---------------------------------------------------------------------------------------------
// Swap slots (I11)

#[test]
fn swap_counts_below_zero_or_off_at_quiescence_are_caught() {
    let mut rig = Rig::new(1);
    rig.start(0, |k, _| async move {
        let mut s = k.st();
        let slot = folio_alloc_swap(&mut s.swap);
        swapcache_clear(&mut s.swap, slot); // allocated and released: count 0, no cache
                                            // A zap that frees the swap entry of a PTE already zapped.
        swap_free(&mut s, slot);
        // A fork that takes swap_duplicate() and then fails to copy the swap PTE: the count
        // names a PTE that does not exist.
        let slot = folio_alloc_swap(&mut s.swap);
        swapcache_clear(&mut s.swap, slot);
        swap_duplicate(&mut s.swap, slot);
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    rig.quiesce();
    assert_eq!(
        rig.violations(),
        pairs(&[("swap.count", "swap_free"), ("swap.count", "quiescence")])
    );
}

// ---------------------------------------------------------------------------------------------
// VMAs and fork (I6, I14, I15, I16)

#[test]
fn anon_vma_prepare_under_the_vma_lock_alone_is_caught() {
    let mut rig = Rig::new(1);
    let v = rig.vma(0, 4, false);
    rig.start(0, move |k, _| async move {
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        // A first write fault handled under the VMA lock, as lock_vma_under_rcu() refuses.
        anon_vma_prepare(&k, MM, v).await.unwrap();
        vma_end_read(&mut k.st(), v).unwrap();
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("vma.anon_vma-under-vma-lock", "anon_vma_prepare"),
            // ... and find_mergeable_anon_vma() then walks the tree with neither lock.
            ("vma.tree-unlocked", "vma_next"),
            ("vma.tree-unlocked", "vma_prev"),
        ])
    );
}

#[test]
fn a_fault_on_a_vma_that_does_not_cover_the_address_is_caught() {
    let mut rig = Rig::new(1);
    let v = rig.vma(0, 2, true);
    rig.vma(2, 4, true);
    rig.start(0, move |k, log| async move {
        mmap_read_lock(&k, MM).await.unwrap();
        // A lookup that trusted a VMA found for another address.
        let ret = handle_mm_fault(&k, MM, v, 3, 0).await.unwrap();
        note(&log, format!("{ret}"));
        mmap_read_unlock(&mut k.st(), MM);
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[("vma.detached-used", "handle_mm_fault")])
    );
}

#[test]
fn a_vma_freed_while_read_locked_is_caught_by_the_rcu_callback() {
    let mut rig = Rig::new(3);
    let v = rig.vma(0, 4, true);
    rig.start(0, move |k, log| async move {
        assert!(vma_start_read(&mut k.st(), v).unwrap());
        k.yield_now("test:holding").await;
        let res = vma_end_read(&mut k.st(), v);
        note(&log, format!("end_read failed: {}", res.is_err()));
    });
    rig.start(1, move |k, _| async move {
        mmap_write_lock(&k, MM).await.unwrap();
        {
            // munmap before 73046fd00b06: out of the tree and freed without vma_start_write(),
            // which would have waited for the reader.
            let mut s = k.st();
            vma_iter_remove(&mut s, MM, v);
            vm_area_free(&mut s, v);
        }
        mmap_write_unlock(&mut k.st(), MM);
    });
    rig.start(2, |k, _| async move {
        k.st().rcu_daemon = Some(2);
        rcu_daemon(&k).await.unwrap();
    });
    // the daemon parks; t0 read-locks; t1 frees; the daemon runs the callback; t0 unlocks
    assert_eq!(rig.run_explicit(&[2, 0, 1, 1, 1, 2, 0]), RunOutcome::Idle);
    assert_eq!(*rig.log.borrow(), ["end_read failed: true"]);
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("vma.freed-locked", "vm_area_free_rcu_cb"),
            ("vma.use-after-free", "vma_end_read"),
        ])
    );
}

/// Both halves of I6: `vma_start_write` asserts `mmap_lock` write-held, and a VMA change
/// (here `vma_mark_detached`) asserts the VMA write-locked (`vma_assert_write_locked`).
#[test]
fn vma_changes_without_their_write_locks_are_caught() {
    let mut rig = Rig::new(1);
    let v = rig.vma(0, 2, true);
    let w = rig.vma(2, 4, true);
    rig.start(0, move |k, _| async move {
        mmap_read_lock(&k, MM).await.unwrap();
        // A VMA change prepared under mmap_lock read.
        vma_start_write(&k, v).await.unwrap();
        mmap_read_unlock(&mut k.st(), MM);
        mmap_write_lock(&k, MM).await.unwrap();
        // munmap before 73046fd00b06: w detached without vma_start_write().
        vma_mark_detached(&mut k.st(), w, true);
        mmap_write_unlock(&mut k.st(), MM);
    });
    assert_eq!(rig.run_serial(), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("vma.write-unlocked", "vma_start_write"),
            ("vma.write-unlocked", "vma_mark_detached"),
        ])
    );
}

#[test]
fn a_fault_on_a_vma_fork_is_copying_is_caught() {
    let mut rig = Rig::new(2);
    rig.start(0, |k, _| async move {
        populate(&k, 4).await;
        do_fork(&k, MM).await.unwrap();
    });
    rig.start(1, |k, log| async move {
        loop {
            let visited = k.st().mm(MM).fork_visited.first().copied();
            if let Some(v) = visited {
                // A fault that skipped the VMA lock dup_mmap() write-locked.
                let ret = handle_mm_fault(&k, MM, v, 0, 0).await.unwrap();
                note(&log, format!("{ret}"));
                return;
            }
            k.yield_now("test:poll").await;
        }
    });
    // Alternate: t1 polls after each step of t0 and faults as soon as dup_mmap has visited.
    assert_eq!(rig.run_explicit(&alternate()), RunOutcome::Idle);
    assert_eq!(
        rig.violations(),
        pairs(&[
            ("fork.exclusion", "handle_mm_fault"),
            // ... and it holds no fault lock at all, which the hand-off rule sees on entry.
            ("lock.handoff", "handle_mm_fault"),
        ])
    );
}
