//! Folio references, mapcounts, `PG_locked`, writeback and LRU isolation (the folio half of
//! the contract layer).
//!
//! **References** (MODEL.md §3). A reference is either *structural* (a present or
//! device-private PTE, the swap cache) or *held by a task* (tagged `(tid, site)`: a new folio
//! before it is mapped, `do_wp_page`'s `folio_get`, a swap-cache lookup, `follow_page`,
//! isolation from the LRU, the `mmu_gather` batch). Transfers between the two kinds are
//! explicit ([`folio_ref_to_map`], [`folio_ref_from_map`]).
//!
//! | rule                         | when                                                    |
//! |------------------------------|---------------------------------------------------------|
//! | `folio.use-after-free`       | any operation below on a freed (poisoned) folio; stops the run |
//! | `folio.refcount`             | a put below zero                                        |
//! | `folio.mapcount`             | `page_remove_rmap` below zero                           |
//! | `folio.unlock-unheld`        | `folio_unlock` of a folio not locked, or locked by another task |
//! | `lock.sleep-under-ptl`       | `folio_lock` / `folio_wait_*` sleeping with a spinlock held |
//! | `lock.order-vma-folio`       | `folio_lock` / `folio_wait_locked` blocking while holding a VMA read lock (I3) |

use crate::objects::{FolioId, Kernel, State, WaitOn, IO_OWNER};
use crate::primitives::{
    folio_event, holds_vma_read_lock, might_sleep, site_function, violate, violate_fatal, KResult,
};

pub const EINTR: i32 = -4;

/// KASAN: `folio` must not have been freed.
#[inline(always)]
pub fn check_folio(s: &mut State, f: FolioId, function: &str) -> KResult<()> {
    if s.folios[f as usize].freed {
        let msg = format!("folio#{f} used after free");
        return violate_fatal(s, "folio.use-after-free", function, msg);
    }
    Ok(())
}

fn fo(s: &mut State, f: FolioId) -> &mut crate::objects::Folio {
    &mut s.folios[f as usize]
}

// ---------------------------------------------------------------------------------------------
// References

/// A task takes a reference (`folio_get` / `get_page` / `folio_try_get`).
pub fn folio_get(s: &mut State, f: FolioId, site: &'static str) -> KResult<()> {
    check_folio(s, f, site)?;
    let tid = s.tid;
    let folio = fo(s, f);
    folio.refcount += 1;
    folio.refs.push((tid, site));
    Ok(())
}

fn untag(s: &mut State, f: FolioId, site: Option<&str>) {
    let tid = s.tid;
    let refs = &mut fo(s, f).refs;
    let mine = |&(t, at): &(usize, &str)| t == tid && site.is_none_or(|want| want == at);
    if let Some(i) = refs.iter().rposition(mine) {
        refs.remove(i);
    }
}

/// A task drops one of its references; the last one frees the folio.
pub fn folio_put(s: &mut State, f: FolioId, function: &str) -> KResult<()> {
    untag(s, f, None);
    folio_put_ref(s, f, function)
}

/// [`folio_put`] of the reference the task took at `site` (when it holds several).
pub fn folio_put_site(s: &mut State, f: FolioId, function: &str, site: &str) -> KResult<()> {
    untag(s, f, Some(site));
    folio_put_ref(s, f, function)
}

/// The task's reference becomes a mapping's (or the swap cache's): no count change.
pub fn folio_ref_to_map(s: &mut State, f: FolioId) {
    untag(s, f, None);
}

/// A mapping's reference becomes the task's (e.g. into the `mmu_gather` batch).
pub fn folio_ref_from_map(s: &mut State, f: FolioId, site: &'static str) {
    let tid = s.tid;
    fo(s, f).refs.push((tid, site));
}

/// A structural reference is added (a new PTE, the swap cache).
pub fn folio_get_ref(s: &mut State, f: FolioId, function: &str) -> KResult<()> {
    check_folio(s, f, function)?;
    fo(s, f).refcount += 1;
    Ok(())
}

/// A structural reference is dropped; the last reference frees the folio.
pub fn folio_put_ref(s: &mut State, f: FolioId, function: &str) -> KResult<()> {
    check_folio(s, f, function)?;
    let folio = fo(s, f);
    folio.refcount -= 1;
    if folio.refcount > 0 {
        return Ok(());
    }
    if folio.refcount < 0 {
        let msg = format!("folio#{f} refcount below zero");
        return violate_fatal(s, "folio.refcount", function, msg);
    }
    free_folio(s, f, function);
    Ok(())
}

/// The last reference is gone: poison the folio.
pub fn free_folio(s: &mut State, f: FolioId, function: &str) {
    let folio = &s.folios[f as usize];
    let (mapped, locked, cached) = (folio.mapcount != 0, folio.locked, folio.swapcache >= 0);
    if mapped {
        violate(
            s,
            "folio.mapcount",
            function,
            format!("folio#{f} freed while mapped"),
        );
    }
    if locked {
        let msg = format!("folio#{f} freed while locked");
        violate(s, "folio.locked-at-quiescence", function, msg);
    }
    if cached {
        let msg = format!("folio#{f} freed while in the swap cache");
        violate(s, "swap.count", function, msg);
    }
    let folio = fo(s, f);
    folio.freed = true;
    folio.lru = false;
}

// ---------------------------------------------------------------------------------------------
// rmap (mapcount)

/// `page_add_anon_rmap` / `page_add_new_anon_rmap`: mapcount+1 (`RMAP_EXCLUSIVE`).
pub fn page_add_anon_rmap(
    s: &mut State,
    f: FolioId,
    exclusive: bool,
    function: &str,
) -> KResult<()> {
    check_folio(s, f, function)?;
    let folio = fo(s, f);
    folio.mapcount += 1;
    if exclusive {
        folio.anon_exclusive = true;
    }
    Ok(())
}

pub fn page_remove_rmap(s: &mut State, f: FolioId, function: &str) -> KResult<()> {
    check_folio(s, f, function)?;
    let folio = fo(s, f);
    folio.mapcount -= 1;
    let below = folio.mapcount < 0;
    if folio.mapcount == 0 {
        folio.anon_exclusive = false;
    }
    if below {
        violate(
            s,
            "folio.mapcount",
            function,
            format!("folio#{f} mapcount below zero"),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// PG_locked

pub fn folio_trylock(s: &mut State, f: FolioId) -> KResult<bool> {
    check_folio(s, f, "folio_trylock")?;
    let tid = s.tid;
    let folio = fo(s, f);
    if folio.locked {
        return Ok(false);
    }
    folio.locked = true;
    folio.lock_owner = i64::try_from(tid).unwrap_or(-1);
    folio_event(s, "acquire", "folio_lock", f, "x");
    Ok(true)
}

/// I3: a thread holding a VMA read lock never blocks on a folio lock.
fn check_vma_folio_order(s: &mut State, f: FolioId, function: &str) {
    if let Some(v) = holds_vma_read_lock(s) {
        let msg = format!("blocking on folio#{f} holding vma#{v}.vm_lock (read)");
        violate(s, "lock.order-vma-folio", function, msg);
    }
}

/// Queue on the folio's lock bit and sleep until woken; false if killed while asleep.
async fn wait_bit(k: &Kernel, f: FolioId, site: &'static str, killable: bool) -> bool {
    {
        let mut s = k.st();
        let tid = s.tid;
        s.cur[tid].woken = false;
        fo(&mut s, f).waiters.push(tid);
        folio_event(&mut s, "wait", site_function(site), f, "x");
    }
    loop {
        {
            let mut s = k.st();
            let tid = s.tid;
            if s.cur[tid].woken {
                return true;
            }
            if killable && s.cur[tid].killed {
                fo(&mut s, f).waiters.retain(|t| t != tid);
                return false;
            }
            s.cur[tid].killable = killable;
        }
        k.block(WaitOn::Folio(f), site).await;
        k.st().me().killable = false;
    }
}

/// `folio_lock()`: sleeps until the lock is free, then takes it.
pub async fn folio_lock(k: &Kernel, f: FolioId) -> KResult<()> {
    might_sleep(&mut k.st(), "folio_lock");
    loop {
        {
            let mut s = k.st();
            if folio_trylock(&mut s, f)? {
                return Ok(());
            }
            check_vma_folio_order(&mut s, f, "folio_lock");
        }
        wait_bit(k, f, "folio_lock:wait", false).await;
    }
}

/// `__folio_lock_killable()`: 0 with the folio locked, or -EINTR.
pub async fn folio_lock_killable(k: &Kernel, f: FolioId) -> KResult<i32> {
    might_sleep(&mut k.st(), "folio_lock_killable");
    loop {
        {
            let mut s = k.st();
            if folio_trylock(&mut s, f)? {
                return Ok(0);
            }
            check_vma_folio_order(&mut s, f, "folio_lock_killable");
            if s.me().killed {
                return Ok(EINTR);
            }
        }
        if !wait_bit(k, f, "folio_lock:wait", true).await {
            return Ok(EINTR);
        }
    }
}

/// `VM_BUG_ON_FOLIO(!folio_test_locked(folio), folio)` at the head of `function` (any owner:
/// the bit, not lockdep).
pub fn folio_assert_locked(s: &mut State, f: FolioId, function: &'static str) {
    if !s.folios[f as usize].locked {
        violate(
            s,
            "folio.not-locked",
            function,
            format!("folio#{f} not locked"),
        );
    }
}

pub fn folio_unlock(s: &mut State, f: FolioId) -> KResult<()> {
    check_folio(s, f, "folio_unlock")?;
    let tid = i64::try_from(s.tid).unwrap_or(-1);
    let folio = &s.folios[f as usize];
    if !folio.locked || (folio.lock_owner != tid && folio.lock_owner != IO_OWNER) {
        let msg = format!("folio#{f} not locked by task");
        violate(s, "folio.unlock-unheld", "folio_unlock", msg);
        return Ok(());
    }
    folio_event(s, "release", "folio_lock", f, "x");
    folio_unlock_bit(s, f);
    Ok(())
}

/// Clear `PG_locked` and wake every waiter (`folio_wake_bit`).
pub fn folio_unlock_bit(s: &mut State, f: FolioId) {
    let folio = fo(s, f);
    folio.locked = false;
    folio.lock_owner = -1;
    if folio.waiters.is_empty() {
        return;
    }
    let waiters = folio.waiters.take();
    for t in waiters {
        s.cur[t].woken = true;
        s.wake(t);
    }
}

/// Hand the caller's lock on `folio` to the I/O about to be submitted.
pub fn folio_lock_for_io(s: &mut State, f: FolioId) {
    fo(s, f).lock_owner = IO_OWNER;
}

/// `folio_wait_locked(_killable)`: wait for `PG_locked` to clear without taking it.
pub async fn folio_wait_locked(k: &Kernel, f: FolioId, killable: bool) -> KResult<i32> {
    check_folio(&mut k.st(), f, "folio_wait_locked")?;
    might_sleep(&mut k.st(), "folio_wait_locked");
    loop {
        {
            let mut s = k.st();
            if !s.folios[f as usize].locked {
                return Ok(0);
            }
            check_vma_folio_order(&mut s, f, "folio_wait_locked");
        }
        if !wait_bit(k, f, "folio_wait_locked:wait", killable).await {
            return Ok(EINTR);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writeback and the LRU

pub fn folio_start_writeback(s: &mut State, f: FolioId) {
    let folio = fo(s, f);
    folio.writeback = true;
    folio.dirty = false;
}

pub fn folio_end_writeback(s: &mut State, f: FolioId) {
    let folio = fo(s, f);
    folio.writeback = false;
    if folio.wb_waiters.is_empty() {
        return;
    }
    let waiters = folio.wb_waiters.take();
    for t in waiters {
        s.cur[t].woken = true;
        s.wake(t);
    }
}

pub async fn folio_wait_writeback(k: &Kernel, f: FolioId) {
    loop {
        {
            let mut s = k.st();
            if !s.folios[f as usize].writeback {
                return;
            }
            might_sleep(&mut s, "folio_wait_writeback");
            let tid = s.tid;
            s.cur[tid].woken = false;
            fo(&mut s, f).wb_waiters.push(tid);
        }
        while !k.st().me().woken {
            k.block(WaitOn::Writeback(f), "folio_wait_writeback:wait")
                .await;
        }
    }
}

/// Take `folio` off the LRU with a reference (`folio_isolate_lru`).
pub fn folio_isolate_lru(s: &mut State, f: FolioId, site: &'static str) -> KResult<bool> {
    check_folio(s, f, site)?;
    if !s.folios[f as usize].lru {
        return Ok(false);
    }
    fo(s, f).lru = false;
    folio_get(s, f, "folio_isolate_lru")?;
    Ok(true)
}

/// Put an isolated folio back on the LRU and drop the isolation reference.
pub fn folio_putback_lru(s: &mut State, f: FolioId, function: &str) -> KResult<()> {
    fo(s, f).lru = true;
    folio_put(s, f, function)
}
