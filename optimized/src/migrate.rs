//! Page migration: the `move_pages` operation, `migrate_pages` for one folio, and the fault
//! side's `migration_entry_wait` (mm/migrate.c, research §5, v6.6).
//!
//! The migrator takes neither `mmap_lock` (after isolating the folio) nor any VMA lock: it
//! works through the folio lock, rmap walks and the PTL. While migration entries exist the
//! source folio is locked and holds the migrator's isolation reference, so a waiter needs no
//! reference (I13a, ffa65753c431) and, under the VMA lock, keeps the fault lock while it
//! sleeps. The move succeeds only if the source's refcount is exactly the expected one (I13b);
//! every failed check is recorded as a [`MigrationFailure`] naming the extra holders.
//!
//! | rule                         | when                                                    |
//! |------------------------------|---------------------------------------------------------|
//! | `migration.waiter-holds-ref` | `migration_entry_wait_on_locked` by a task holding a reference to the folio (I13a) |
//!
//! `migrate_pages(MIGRATE_SYNC)` for one folio: one `MIGRATE_ASYNC` batch of 3 passes, then
//! one `MIGRATE_SYNC` batch of 7 passes, a yield point before every pass.

use crate::folio::{
    folio_assert_locked, folio_get, folio_get_ref, folio_isolate_lru, folio_lock, folio_put,
    folio_put_ref, folio_put_site, folio_putback_lru, folio_trylock, folio_unlock,
    folio_wait_writeback,
};
use crate::mmap_lock::{mmap_read_lock, mmap_read_unlock};
use crate::mutant::Mutant;
use crate::objects::{FolioId, Kernel, MmId, Page, PteKind, State, WaitOn};
use crate::pgtable::{pte_offset_map_lock, pte_unmap_unlock, ptep_get};
use crate::primitives::{folio_event, might_sleep, spin_unlock, violate, KResult, LockId};
use crate::rmap::{remove_migration_ptes, try_to_migrate};
use crate::sched::TaskId;
use crate::vma::vma_lookup;
use crate::vmf::Vmf;

pub const EAGAIN: i32 = -11;
pub const EBUSY: i32 = -16;
pub const EACCES: i32 = -13;
pub const EFAULT: i32 = -14;
pub const ENOENT: i32 = -2;

pub const MIGRATEPAGE_SUCCESS: i32 = 0;
pub const MIGRATEPAGE_UNMAP: i32 = 1;
pub const NR_MAX_MIGRATE_ASYNC_RETRY: u32 = 3;
pub const NR_MAX_MIGRATE_SYNC_RETRY: u32 = 7;

/// A failed refcount check (`fuzz.record.MigrationFailure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFailure {
    pub step: u64,
    pub task: TaskId,
    pub folio: String,
    pub expected: i32,
    pub actual: i32,
    /// (task, site where it took the reference, whether it sleeps waiting for this folio).
    pub holders: Vec<(TaskId, &'static str, bool)>,
}

/// `mm/migrate.c:migration_entry_wait()` (v6.6): FL held throughout, no folio reference; the
/// PTL is held only until the wait entry is queued.
pub async fn migration_entry_wait(k: &Kernel, vmf: &Vmf) -> KResult<()> {
    if k.mutant == Mutant::Z24MigrationWaitPageref {
        return migration_entry_wait_pageref(k, vmf).await;
    }
    let Some(table) = pte_offset_map_lock(k, vmf.mm, vmf.page).await? else {
        return Ok(());
    };
    let (folio, queued) = {
        let mut s = k.st();
        let pte = ptep_get(&mut s, table, vmf.page)?;
        let Some(folio) = pte.folio.filter(|_| pte.kind == PteKind::Migration) else {
            pte_unmap_unlock(&mut s, table);
            return Ok(());
        };
        // The folio is valid only while the PTL is held.
        let queued = migration_entry_queue(&mut s, folio);
        spin_unlock(&mut s, LockId::Ptl(table));
        (folio, queued)
    };
    migration_entry_wait_on_locked(k, folio, queued).await;
    Ok(())
}

/// Z24: `mm/migrate.c:__migration_entry_wait()` as it was before ffa65753c431 ("mm/migrate.c:
/// rework `migration_entry_wait()` to not take a pageref"): a reference taken under the PTL
/// (`get_page_unless_zero`), held until the task is queued on `PG_locked`.
async fn migration_entry_wait_pageref(k: &Kernel, vmf: &Vmf) -> KResult<()> {
    let Some(table) = pte_offset_map_lock(k, vmf.mm, vmf.page).await? else {
        return Ok(());
    };
    let folio = {
        let mut s = k.st();
        let pte = ptep_get(&mut s, table, vmf.page)?;
        let folio = pte.folio.filter(|_| pte.kind == PteKind::Migration);
        // Once page cache replacement of page migration started, page_count is zero; but we
        // must not call put_and_wait_on_page_locked() without a ref.
        let got = folio.filter(|&f| s.folios[f as usize].refcount > 0);
        if let Some(f) = got {
            folio_get(&mut s, f, "__migration_entry_wait")?; // get_page_unless_zero()
        }
        pte_unmap_unlock(&mut s, table);
        got
    };
    match folio {
        Some(f) => put_and_wait_on_page_locked(k, f).await,
        None => Ok(()),
    }
}

/// `mm/filemap.c:put_and_wait_on_page_locked()` (v5.15): `wait_on_page_bit_common(.., DROP)`
/// queues on `PG_locked` under the wait-queue lock, drops the caller's reference, then sleeps.
async fn put_and_wait_on_page_locked(k: &Kernel, f: FolioId) -> KResult<()> {
    // [I] The PTL is dropped and the reference still held: other CPUs run on.
    k.yield_now("put_and_wait_on_page_locked:q_lock").await;
    let queued = {
        let mut s = k.st();
        let queued = migration_entry_queue(&mut s, f);
        let site = "__migration_entry_wait";
        folio_put_site(&mut s, f, "put_and_wait_on_page_locked", site)?;
        queued
    };
    while queued && !k.st().me().woken {
        might_sleep(&mut k.st(), "put_and_wait_on_page_locked");
        let site = "put_and_wait_on_page_locked:io_schedule";
        k.block(WaitOn::Folio(f), site).await;
    }
    Ok(())
}

/// The under-PTL half of `migration_entry_wait_on_locked`: queue a non-exclusive waiter if
/// `PG_locked` is set.
pub fn migration_entry_queue(s: &mut State, f: FolioId) -> bool {
    if !s.folios[f as usize].locked {
        return false;
    }
    let tid = s.tid;
    s.cur[tid].woken = false;
    s.folios[f as usize].waiters.push(tid);
    folio_event(s, "wait", "migration_entry_wait", f, "x");
    true
}

/// `mm/filemap.c:migration_entry_wait_on_locked()` (v6.6), after the PTL is dropped. The caller
/// queued under the PTL (`queued` is false if the folio was already unlocked) and holds no
/// reference: the waiter must not pin the folio (I13a).
pub async fn migration_entry_wait_on_locked(k: &Kernel, f: FolioId, queued: bool) {
    {
        let mut s = k.st();
        let tid = s.tid;
        if s.folios[f as usize].refs.iter().any(|&(t, _)| t == tid) {
            let msg = format!("sleeping on folio#{f} while holding a reference to it");
            violate(
                &mut s,
                "migration.waiter-holds-ref",
                "migration_entry_wait_on_locked",
                msg,
            );
        }
    }
    if !queued {
        return;
    }
    loop {
        {
            let mut s = k.st();
            if s.me().woken {
                return;
            }
            might_sleep(&mut s, "migration_entry_wait_on_locked");
        }
        let site = "migration_entry_wait_on_locked:io_schedule";
        k.block(WaitOn::Folio(f), site).await;
    }
}

/// The result of `add_page_for_migration`: an isolated folio or an error.
enum Added {
    Folio(FolioId),
    Err(i32),
}

/// `mm/migrate.c:do_pages_move()` for one page to another node: 0 migrated, 1 not migrated,
/// or -EFAULT/-ENOENT/-EACCES/-EBUSY from `add_page_for_migration`.
pub async fn do_pages_move(k: &Kernel, mm: MmId, page: Page) -> KResult<i32> {
    mmap_read_lock(k, mm).await?;
    let added = add_page_for_migration(k, mm, page).await?;
    mmap_read_unlock(&mut k.st(), mm);
    match added {
        Added::Err(e) => Ok(e),
        Added::Folio(f) => migrate_pages(k, f).await,
    }
}

/// `mm/migrate.c:add_page_for_migration()` (v6.6): look the page up
/// (`follow_page(FOLL_GET | FOLL_DUMP)`) and isolate it; caller holds `mmap_lock`.
async fn add_page_for_migration(k: &Kernel, mm: MmId, page: Page) -> KResult<Added> {
    if vma_lookup(&k.st(), mm, page).is_none() {
        return Ok(Added::Err(EFAULT));
    }
    let Some(table) = pte_offset_map_lock(k, mm, page).await? else {
        return Ok(Added::Err(EFAULT)); // no_page_table() with FOLL_DUMP, anonymous VMA
    };
    let mut s = k.st();
    let pte = ptep_get(&mut s, table, page)?;
    if matches!(pte.kind, PteKind::None | PteKind::Zero) {
        pte_unmap_unlock(&mut s, table);
        return Ok(Added::Err(EFAULT)); // FOLL_DUMP: a hole, or the zero page
    }
    let folio = pte.folio.filter(|_| pte.kind == PteKind::Present);
    if let Some(f) = folio {
        folio_get(&mut s, f, "follow_page")?;
    }
    pte_unmap_unlock(&mut s, table);
    let Some(f) = folio else {
        return Ok(Added::Err(ENOENT)); // a swap, migration or device-private entry
    };
    let added = if s.folios[f as usize].mapcount > 1 {
        Added::Err(EACCES)
    } else if !folio_isolate_lru(&mut s, f, "add_page_for_migration")? {
        Added::Err(EBUSY)
    } else {
        Added::Folio(f)
    };
    folio_put_site(&mut s, f, "add_page_for_migration", "follow_page")?;
    Ok(added)
}

/// `migrate_pages(MIGRATE_SYNC)` of one isolated folio: 0, or 1 if not migrated (the folio
/// is then put back on the LRU).
pub async fn migrate_pages(k: &Kernel, src: FolioId) -> KResult<i32> {
    let mut rc = migrate_pages_batch(k, src, false, NR_MAX_MIGRATE_ASYNC_RETRY).await?;
    if rc != MIGRATEPAGE_SUCCESS {
        rc = migrate_pages_batch(k, src, true, NR_MAX_MIGRATE_SYNC_RETRY).await?;
    }
    if rc != MIGRATEPAGE_SUCCESS {
        folio_putback_lru(&mut k.st(), src, "putback_movable_pages")?;
        return Ok(1);
    }
    Ok(0)
}

/// `mm/migrate.c:migrate_pages_batch()` for one folio; -EAGAIN/-EBUSY if not migrated.
async fn migrate_pages_batch(k: &Kernel, src: FolioId, sync: bool, nr_pass: u32) -> KResult<i32> {
    let mut rc = EAGAIN;
    let mut dst = None;
    for _ in 0..nr_pass {
        k.yield_now("migrate_pages_batch:pass").await;
        (rc, dst) = migrate_folio_unmap(k, src, sync).await?;
        if rc != EAGAIN {
            break;
        }
    }
    let Some(dst) = dst.filter(|_| rc == MIGRATEPAGE_UNMAP) else {
        return Ok(rc);
    };
    for _ in 0..nr_pass {
        k.yield_now("migrate_pages_batch:pass").await;
        rc = migrate_folio_move(k, src, dst).await?;
        if rc != EAGAIN {
            return Ok(rc);
        }
    }
    remove_migration_ptes(k, src, src).await?; // migrate_folio_undo_src()
    let mut s = k.st();
    folio_unlock(&mut s, src)?;
    folio_unlock(&mut s, dst)?; // migrate_folio_undo_dst()
    folio_put(&mut s, dst, "migrate_folio_undo_dst")?;
    Ok(rc)
}

/// `mm/migrate.c:migrate_folio_unmap()` (v6.6): lock `src`, replace its PTEs with migration
/// entries; UNMAP with both folios locked, or an error with neither.
async fn migrate_folio_unmap(
    k: &Kernel,
    src: FolioId,
    sync: bool,
) -> KResult<(i32, Option<FolioId>)> {
    {
        let mut s = k.st();
        if s.folios[src as usize].refcount == 1 {
            // Folio was freed from under us. So we are done.
            folio_put(&mut s, src, "migrate_folio_done")?;
            return Ok((MIGRATEPAGE_SUCCESS, None));
        }
        might_sleep(&mut s, "alloc_migration_target");
    }
    k.yield_now("migrate_folio_unmap:get_new_folio").await;
    let dst = k.st().alloc_folio(0, false, "alloc_migration_target");
    if !folio_trylock(&mut k.st(), src)? {
        if !sync {
            folio_put(&mut k.st(), dst, "migrate_folio_unmap")?;
            return Ok((EAGAIN, None));
        }
        folio_lock(k, src).await?;
    }
    if k.st().folios[src as usize].writeback {
        if !sync {
            let mut s = k.st();
            folio_unlock(&mut s, src)?;
            folio_put(&mut s, dst, "migrate_folio_unmap")?;
            return Ok((EBUSY, None));
        }
        folio_wait_writeback(k, src).await;
    }
    folio_trylock(&mut k.st(), dst)?;
    if k.st().folios[src as usize].mapcount != 0 {
        try_to_migrate(k, src).await?;
    }
    if k.st().folios[src as usize].mapcount == 0 {
        return Ok((MIGRATEPAGE_UNMAP, Some(dst)));
    }
    remove_migration_ptes(k, src, src).await?;
    let mut s = k.st();
    folio_unlock(&mut s, dst)?;
    folio_put(&mut s, dst, "migrate_folio_unmap")?;
    folio_unlock(&mut s, src)?;
    Ok((EAGAIN, None))
}

/// `mm/migrate.c:folio_expected_refs()`: 1, plus 1 for the swap cache's reference.
fn folio_expected_refs(swapcache: i32) -> i32 {
    1 + i32::from(swapcache >= 0)
}

/// `mm/migrate.c:migrate_folio_move()` (v6.6): the refcount check, copy, remap, unlock.
async fn migrate_folio_move(k: &Kernel, src: FolioId, dst: FolioId) -> KResult<i32> {
    {
        let mut s = k.st();
        // move_to_new_folio() wants both folios locked.
        folio_assert_locked(&mut s, src, "move_to_new_folio");
        folio_assert_locked(&mut s, dst, "move_to_new_folio");
        let sf = &s.folios[src as usize];
        let expected = folio_expected_refs(sf.swapcache);
        if sf.refcount != expected {
            // folio_migrate_mapping()
            record_migration_failure(k, &mut s, src, expected);
            return Ok(EAGAIN);
        }
        let slot = s.folios[src as usize].swapcache;
        if slot >= 0 {
            // The swap cache now points at dst.
            s.swap.cache[usize::try_from(slot).unwrap_or(0)] = Some(dst);
            s.folios[dst as usize].swapcache = slot;
            s.folios[src as usize].swapcache = -1;
            folio_get_ref(&mut s, dst, "folio_migrate_mapping")?;
            folio_put_ref(&mut s, src, "folio_migrate_mapping")?;
        }
        let (data, dirty, uptodate) = {
            let sf = &s.folios[src as usize];
            (sf.data, sf.dirty, sf.uptodate)
        };
        let d = &mut s.folios[dst as usize]; // folio_migrate_copy()
        (d.data, d.dirty, d.uptodate) = (data, dirty, uptodate);
        d.lru = true; // folio_add_lru()
    }
    remove_migration_ptes(k, src, dst).await?;
    let mut s = k.st();
    folio_unlock(&mut s, dst)?;
    folio_put(&mut s, dst, "migrate_folio_move")?;
    folio_unlock(&mut s, src)?;
    folio_put(&mut s, src, "migrate_folio_done")?; // the isolation reference: src is freed
    Ok(MIGRATEPAGE_SUCCESS)
}

/// Name every reference beyond the migrator's isolation reference.
fn record_migration_failure(
    k: &Kernel,
    s: &mut crate::objects::State,
    src: FolioId,
    expected: i32,
) {
    let sched = k.sched.borrow();
    let mine = (s.tid, "folio_isolate_lru");
    let mut skipped = false;
    let mut holders = Vec::new();
    for &(tid, site) in &s.folios[src as usize].refs {
        if (tid, site) == mine && !skipped {
            skipped = true;
            continue;
        }
        let asleep = sched
            .tasks
            .get(tid)
            .is_some_and(|t| t.wait == Some(WaitOn::Folio(src)));
        holders.push((tid, site, asleep));
    }
    let mf = MigrationFailure {
        step: s.step,
        task: s.tid,
        folio: format!("folio#{src}"),
        expected,
        actual: s.folios[src as usize].refcount,
        holders,
    };
    s.migration_failures.push(mf);
}
