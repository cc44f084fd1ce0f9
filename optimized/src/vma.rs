//! The VMA tree: lookup, split, `anon_vma_prepare`, detaching and freeing (mm/mmap.c, v6.6);
//! merging is in `vma_merge`.
//!
//! The tree is `mm.vmas` kept sorted by `vm_start` (the maple tree's order). `vm_pgoff` is not
//! modelled: for anonymous private memory it always equals `vm_start`, so the kernel's pgoff
//! continuity checks always pass.
//!
//! Every caller holds `mmap_lock` for write, except `anon_vma_prepare` (read, under
//! `page_table_lock`) and the lookups (either mode). With `CONFIG_PER_VMA_LOCK=y` every VMA of
//! the tree is `vma_start_write`-locked before it changes, exactly where v6.6 does it, and a
//! removed VMA is detached (asserting the write lock) and freed through RCU.
//!
//! | rule                           | when                                                  |
//! |--------------------------------|-------------------------------------------------------|
//! | `vma.use-after-free`           | [`check_vma`] on a freed VMA; stops the run           |
//! | `vma.write-unlocked`           | [`vma_set_range`] / [`vm_flags_reset`] on a tree VMA not write-locked |
//! | `vma.write-unlocked`           | a split, merge or expansion without `mmap_lock` held for write |
//! | `vma.anon_vma-under-vma-lock`  | [`anon_vma_prepare`] preparing without `mmap_lock` (I15) |
//! | `vma.tree-unlocked`            | [`find_vma`] / [`find_vma_intersection`] without `mmap_lock`; a `mas_walk` or VMA-iterator step with neither `mmap_lock` nor an RCU read section ([`check_tree_read`]) |

use crate::mmap_lock::{mmap_assert_locked, mmap_assert_write_locked};
use crate::objects::{Kernel, MmId, Page, State, VmaId, VM_ACCESS_FLAGS};
use crate::primitives::{
    holds, might_sleep, spin_lock, spin_unlock, violate, violate_fatal, KResult, LockId,
};
use crate::rcu::vm_area_free;
use crate::vma_lock::{vma_assert_write_locked, vma_mark_detached, vma_start_write};

/// `vma_assert_write_locked()` for a whole operation on `mm`'s tree: `mmap_lock` write-held.
pub fn mm_assert_write_locked(k: &Kernel, mm: MmId, function: &str) {
    mmap_assert_write_locked(&mut k.st(), mm, "vma.write-unlocked", function);
}

/// KASAN: `vma` must not have been freed.
#[inline(always)]
pub fn check_vma(s: &mut State, vma: VmaId, function: &str) -> KResult<()> {
    if s.vmas[vma].freed {
        let msg = format!("vma#{vma} used after free");
        return violate_fatal(s, "vma.use-after-free", function, msg);
    }
    Ok(())
}

/// The maple tree's lockdep check: `mm_init()` gives `mm_mt` `mmap_lock` as its external lock
/// (`mt_set_external_lock`), so every node a walk reads goes through
/// `rcu_dereference_check(.., mt_locked(mt))` (`lib/maple_tree.c:mt_slot()`, v6.6). A walk
/// through the advanced API (`mas_walk`, the VMA iterators) needs `mmap_lock` (either mode) or
/// an RCU read section, as `lock_vma_under_rcu` has. `mtree_load()` and `mt_find()` take
/// `rcu_read_lock()` themselves, so `vma_lookup` needs neither; `find_vma` asserts
/// `mmap_lock` outright.
#[inline(always)]
pub fn check_tree_read(s: &mut State, mm: MmId, function: &str) {
    if s.cur[s.tid].rcu_nesting == 0 && !holds(s, LockId::Mmap(mm), None) {
        tree_read_unlocked(s, mm, function);
    }
}

#[cold]
#[inline(never)]
fn tree_read_unlocked(s: &mut State, mm: MmId, function: &str) {
    let msg = format!("mm{mm}'s VMA tree walked without mmap_lock or rcu_read_lock");
    violate(s, "vma.tree-unlocked", function, msg);
}

/// `mm/mmap.c:find_vma()` (v6.6): the first VMA with `vm_end > addr`. It begins with
/// `mmap_assert_locked(mm)`: an RCU read section is not enough.
pub fn find_vma(s: &mut State, mm: MmId, addr: Page) -> Option<VmaId> {
    mmap_assert_locked(s, mm, "vma.tree-unlocked", "find_vma");
    first_ending_after(s, mm, addr)
}

fn first_ending_after(s: &State, mm: MmId, addr: Page) -> Option<VmaId> {
    s.mm(mm)
        .vmas
        .iter()
        .copied()
        .find(|&v| s.vmas[v].vm_end > addr)
}

/// `vma_lookup()`: the VMA containing `addr`. v6.6 asserts no lock: `mtree_load()` takes
/// `rcu_read_lock()` itself.
pub fn vma_lookup(s: &State, mm: MmId, addr: Page) -> Option<VmaId> {
    first_ending_after(s, mm, addr).filter(|&v| s.vmas[v].vm_start <= addr)
}

/// `mm/mmap.c:find_vma_intersection()` (v6.6), which begins with `mmap_assert_locked(mm)`.
pub fn find_vma_intersection(s: &mut State, mm: MmId, start: Page, end: Page) -> Option<VmaId> {
    mmap_assert_locked(s, mm, "vma.tree-unlocked", "find_vma_intersection");
    first_ending_after(s, mm, start).filter(|&v| s.vmas[v].vm_start < end)
}

fn tree_pos(s: &mut State, mm: MmId, vma: VmaId, function: &str) -> Option<usize> {
    check_tree_read(s, mm, function);
    s.mm(mm).vmas.iter().position(|&v| v == vma)
}

pub fn vma_prev(s: &mut State, mm: MmId, vma: VmaId) -> Option<VmaId> {
    let i = tree_pos(s, mm, vma, "vma_prev")?;
    i.checked_sub(1).map(|j| s.mm(mm).vmas[j])
}

pub fn vma_next(s: &mut State, mm: MmId, vma: VmaId) -> Option<VmaId> {
    let i = tree_pos(s, mm, vma, "vma_next")?;
    s.mm(mm).vmas.get(i + 1).copied()
}

/// The last VMA that ends at or before `addr`.
pub fn vma_prev_of(s: &mut State, mm: MmId, addr: Page) -> Option<VmaId> {
    check_tree_read(s, mm, "vma_prev");
    s.mm(mm)
        .vmas
        .iter()
        .copied()
        .take_while(|&v| s.vmas[v].vm_end <= addr)
        .last()
}

/// Keep the tree sorted by `vm_start`.
pub fn vma_tree_sort(s: &mut State, mm: MmId) {
    let mut vmas = std::mem::take(&mut s.mm_mut(mm).vmas);
    vmas.sort_by_key(|&v| s.vmas[v].vm_start);
    s.mm_mut(mm).vmas = vmas;
}

pub fn vma_iter_store(s: &mut State, mm: MmId, vma: VmaId) {
    s.mm_mut(mm).vmas.push(vma);
    vma_tree_sort(s, mm);
}

pub fn vma_iter_remove(s: &mut State, mm: MmId, vma: VmaId) {
    s.mm_mut(mm).vmas.retain(|&v| v != vma);
}

/// Change the bounds of a tree VMA; it must be write-locked (I6).
pub fn vma_set_range(s: &mut State, vma: VmaId, start: Page, end: Page, function: &str) {
    vma_assert_write_locked(s, vma, function);
    s.vmas[vma].vm_start = start;
    s.vmas[vma].vm_end = end;
}

/// `vm_flags_reset()`: `vma_assert_write_locked(vma)`, then set the flags.
pub fn vm_flags_reset(s: &mut State, vma: VmaId, flags: u32) {
    vma_assert_write_locked(s, vma, "vm_flags_reset");
    s.vmas[vma].vm_flags = flags;
}

/// `vm_area_dup()`: a copy in `mm` with a new id and a fresh `vm_lock` (`vm_lock_seq = -1`).
pub fn vm_area_dup(s: &mut State, vma: VmaId, mm: MmId) -> VmaId {
    let v = &s.vmas[vma];
    let (start, end, flags) = (v.vm_start, v.vm_end, v.vm_flags);
    let (anon, chain, ctx) = (v.anon_vma, v.anon_vma_chain_len, v.uffd_ctx);
    let new = s.alloc_vma(mm, start, end, flags);
    let n = &mut s.vmas[new];
    n.anon_vma = anon;
    n.anon_vma_chain_len = chain;
    n.uffd_ctx = ctx;
    new
}

/// The removal block of `mm/mmap.c:vma_complete()` (v6.6) for a VMA a merge swallowed:
/// `vma_mark_detached`, `vma_iter_clear`, then `remove_vma()` -> `vm_area_free()` (RCU).
pub fn vma_complete_remove(s: &mut State, mm: MmId, vma: VmaId) {
    vma_mark_detached(s, vma, true);
    vma_iter_remove(s, mm, vma);
    vm_area_free(s, vma);
}

/// `mm/mmap.c:__split_vma()` (v6.6): the new VMA takes `[vm_start, addr)` if `new_below`, else
/// `[addr, vm_end)`; `vma` keeps the rest. Both are write-locked first. Returns the new VMA.
pub async fn split_vma(
    k: &Kernel,
    mm: MmId,
    vma: VmaId,
    addr: Page,
    new_below: bool,
) -> KResult<VmaId> {
    let new = {
        let mut s = k.st();
        mmap_assert_write_locked(&mut s, mm, "vma.write-unlocked", "__split_vma");
        vm_area_dup(&mut s, vma, mm)
    };
    vma_start_write(k, vma).await?;
    vma_start_write(k, new).await?;
    let mut s = k.st();
    let (start, end) = (s.vmas[vma].vm_start, s.vmas[vma].vm_end);
    if new_below {
        s.vmas[new].vm_end = addr;
        vma_set_range(&mut s, vma, addr, end, "__split_vma");
    } else {
        s.vmas[new].vm_start = addr;
        vma_set_range(&mut s, vma, start, addr, "__split_vma");
    }
    vma_iter_store(&mut s, mm, new);
    Ok(new)
}

// ---------------------------------------------------------------------------------------------
// anon_vma

fn anon_vma_compatible(s: &State, a: VmaId, b: VmaId) -> bool {
    let (a, b) = (&s.vmas[a], &s.vmas[b]);
    a.vm_end == b.vm_start && (a.vm_flags ^ b.vm_flags) & !VM_ACCESS_FLAGS == 0
}

/// `mm/mmap.c:find_mergeable_anon_vma()`: next first, then prev, singular chains only.
pub fn find_mergeable_anon_vma(s: &mut State, mm: MmId, vma: VmaId) -> Option<u32> {
    let singular = |s: &State, v: VmaId| {
        let x = &s.vmas[v];
        x.anon_vma.filter(|_| x.anon_vma_chain_len == 1)
    };
    if let Some(n) = vma_next(s, mm, vma).filter(|&n| anon_vma_compatible(s, vma, n)) {
        if let Some(a) = singular(s, n) {
            return Some(a);
        }
    }
    vma_prev(s, mm, vma)
        .filter(|&p| anon_vma_compatible(s, p, vma))
        .and_then(|p| singular(s, p))
}

/// `mm/rmap.c:__anon_vma_prepare()` (v6.6): caller holds `mmap_lock` (read is enough); never
/// under the VMA lock alone (I15).
pub async fn anon_vma_prepare(k: &Kernel, mm: MmId, vma: VmaId) -> KResult<()> {
    {
        let mut s = k.st();
        check_vma(&mut s, vma, "anon_vma_prepare")?;
        if s.vmas[vma].anon_vma.is_some() {
            return Ok(());
        }
        // I15: never under the VMA lock alone (the caller holds mmap_lock, read is enough).
        mmap_assert_locked(
            &mut s,
            mm,
            "vma.anon_vma-under-vma-lock",
            "anon_vma_prepare",
        );
        might_sleep(&mut s, "anon_vma_prepare");
    }
    k.yield_now("anon_vma_prepare:anon_vma_chain_alloc").await;
    let anon_vma = {
        let mut s = k.st();
        match find_mergeable_anon_vma(&mut s, mm, vma) {
            Some(a) => a,
            None => s.alloc_anon_vma(),
        }
    };
    spin_lock(k, LockId::PageTableLock(mm)).await?;
    let mut s = k.st();
    check_vma(&mut s, vma, "anon_vma_prepare")?;
    if s.vmas[vma].anon_vma.is_none() {
        s.vmas[vma].anon_vma = Some(anon_vma);
        s.vmas[vma].anon_vma_chain_len = 1;
    }
    spin_unlock(&mut s, LockId::PageTableLock(mm));
    Ok(())
}
