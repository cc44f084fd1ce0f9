//! VMA merging: `vma_merge()` and `vma_expand()` (mm/mmap.c, v6.6), used by mmap, mprotect
//! and userfaultfd (un)registration.
//!
//! Two adjacent VMAs merge iff their `vm_flags` and `uffd_ctx` are equal and their `anon_vmas`
//! are compatible (MODEL.md §8). Every VMA whose bounds change and every VMA a merge removes
//! is `vma_start_write`-locked first, in the order v6.6 locks them (`mm/mmap.c:930-980`);
//! removed VMAs are detached (asserting the write lock) and freed through RCU.

use crate::objects::{Kernel, MmId, Page, State, VmaId};
use crate::primitives::KResult;
use crate::vma::{
    find_vma_intersection, vma_complete_remove, vma_lookup, vma_set_range, vma_tree_sort,
};
use crate::vma_lock::{vma_assert_write_locked, vma_start_write};

/// `mm/mmap.c:is_mergeable_anon_vma()`: `vma`'s chain must be singular to merge with None.
pub fn is_mergeable_anon_vma(a1: Option<u32>, a2: Option<u32>, chain_len: Option<u32>) -> bool {
    if (a1.is_none() || a2.is_none()) && chain_len.is_none_or(|n| n == 1) {
        return true;
    }
    a1 == a2
}

/// `can_vma_merge_before/after` without pgoff (see `vma`'s module docs).
pub fn can_vma_merge(
    s: &State,
    vma: VmaId,
    flags: u32,
    anon_vma: Option<u32>,
    ctx: Option<MmId>,
) -> bool {
    let v = &s.vmas[vma];
    v.vm_flags == flags
        && v.uffd_ctx == ctx
        && is_mergeable_anon_vma(anon_vma, v.anon_vma, Some(v.anon_vma_chain_len))
}

/// `mm/mmap.c:dup_anon_vma()`: the expanding VMA inherits the other one's `anon_vma`.
fn dup_anon_vma(s: &mut State, dst: VmaId, src: VmaId) {
    let (a, chain) = (s.vmas[src].anon_vma, s.vmas[src].anon_vma_chain_len);
    if a.is_some() && s.vmas[dst].anon_vma.is_none() {
        vma_assert_write_locked(s, dst, "dup_anon_vma");
        s.vmas[dst].anon_vma = a;
        s.vmas[dst].anon_vma_chain_len = chain;
    }
}

/// The arguments of `vma_merge()` that describe the new range.
#[derive(Debug, Clone, Copy)]
pub struct MergeArgs {
    pub prev: Option<VmaId>,
    pub addr: Page,
    pub end: Page,
    pub flags: u32,
    pub anon_vma: Option<u32>,
    pub ctx: Option<MmId>,
}

/// Which neighbours merge; `both` is case 1/6.
struct Plan {
    curr: Option<VmaId>,
    next: Option<VmaId>,
    merge_prev: bool,
    merge_next: bool,
    both: bool,
}

fn plan(s: &mut State, mm: MmId, a: &MergeArgs) -> Plan {
    let prev_end = a.prev.map_or(0, |p| s.vmas[p].vm_end);
    let curr = find_vma_intersection(s, mm, prev_end, a.end);
    let next = match curr {
        Some(c) if a.end != s.vmas[c].vm_end => None,
        _ => vma_lookup(s, mm, a.end),
    };
    let merge_prev = a.prev.is_some_and(|p| {
        a.addr == s.vmas[p].vm_end && can_vma_merge(s, p, a.flags, a.anon_vma, a.ctx)
    });
    let merge_next = next.is_some_and(|n| can_vma_merge(s, n, a.flags, a.anon_vma, a.ctx));
    let both = match (a.prev, next) {
        (Some(p), Some(n)) if merge_prev && merge_next => {
            is_mergeable_anon_vma(s.vmas[p].anon_vma, s.vmas[n].anon_vma, None)
        }
        _ => false,
    };
    Plan {
        curr,
        next,
        merge_prev,
        merge_next,
        both,
    }
}

/// The VMAs v6.6 write-locks, in its order.
fn lock_order(s: &State, a: &MergeArgs, p: &Plan) -> Vec<VmaId> {
    let mut out: Vec<VmaId> = Vec::new();
    if p.merge_prev {
        out.extend(a.prev);
    }
    if p.both || !p.merge_prev {
        out.extend(p.next);
    }
    let case4 = !p.merge_prev && a.prev.is_some_and(|pv| a.addr < s.vmas[pv].vm_end);
    if case4 {
        out.extend(a.prev);
    } else {
        out.extend(p.curr);
    }
    out
}

/// `mm/mmap.c:vma_merge()` (v6.6), cases 1-8 of its comment; None if nothing merges.
pub async fn vma_merge(k: &Kernel, mm: MmId, a: MergeArgs) -> KResult<Option<VmaId>> {
    crate::vma::mm_assert_write_locked(k, mm, "vma_merge");
    let (p, locks) = {
        let mut s = k.st();
        let p = plan(&mut s, mm, &a);
        if !p.merge_prev && !p.merge_next {
            return Ok(None);
        }
        let locks = lock_order(&s, &a, &p);
        (p, locks)
    };
    for v in locks {
        vma_start_write(k, v).await?;
    }
    Ok(Some(vma_merge_apply(&mut k.st(), mm, &a, &p)))
}

/// The part of `vma_merge()` after the write locks: the new bounds, removals, `anon_vmas`.
fn vma_merge_apply(s: &mut State, mm: MmId, a: &MergeArgs, p: &Plan) -> VmaId {
    let (mut remove, mut remove2, mut adjust) = (None, None, None);
    let (res, vma, vma_start, mut vma_end);
    vma_end = a.end;
    if let (true, Some(prev), Some(next)) = (p.both, a.prev, p.next) {
        (res, vma, vma_start) = (prev, prev, s.vmas[prev].vm_start);
        remove = Some(next); // case 1
        vma_end = s.vmas[next].vm_end;
        dup_anon_vma(s, prev, next);
        if let Some(curr) = p.curr {
            // case 6
            (remove, remove2) = (Some(curr), Some(next));
            if s.vmas[next].anon_vma.is_none() {
                dup_anon_vma(s, prev, curr);
            }
        }
    } else if let (true, Some(prev)) = (p.merge_prev, a.prev) {
        (res, vma, vma_start) = (prev, prev, s.vmas[prev].vm_start);
        if let Some(curr) = p.curr {
            dup_anon_vma(s, prev, curr);
            if a.end == s.vmas[curr].vm_end {
                remove = Some(curr); // case 7
            } else {
                adjust = Some((curr, a.end, s.vmas[curr].vm_end)); // case 5
            }
        }
    } else {
        let next = p.next.unwrap_or_default();
        res = next;
        if let Some(prev) = a.prev.filter(|&pv| a.addr < s.vmas[pv].vm_end) {
            // case 4
            (vma, vma_start, vma_end) = (prev, s.vmas[prev].vm_start, a.addr);
            adjust = Some((next, a.addr, s.vmas[next].vm_end));
            dup_anon_vma(s, next, prev);
        } else {
            // case 3, and case 8 with curr
            (vma, vma_start, vma_end) = (next, a.addr, s.vmas[next].vm_end);
            if let Some(curr) = p.curr {
                remove = Some(curr);
                dup_anon_vma(s, next, curr);
            }
        }
    }
    for v in [remove, remove2].into_iter().flatten() {
        vma_complete_remove(s, mm, v);
    }
    vma_set_range(s, vma, vma_start, vma_end, "vma_merge");
    if let Some((adj, start, end)) = adjust {
        vma_set_range(s, adj, start, end, "vma_merge");
    }
    vma_tree_sort(s, mm);
    res
}

/// `mm/mmap.c:vma_expand()` (v6.6): grow `vma` to `[start, end)`, absorbing `next` if it ends
/// at `end`. Write-locks `vma` (and `next`) first.
pub async fn vma_expand(
    k: &Kernel,
    mm: MmId,
    vma: VmaId,
    start: Page,
    end: Page,
    next: Option<VmaId>,
) -> KResult<()> {
    crate::vma::mm_assert_write_locked(k, mm, "vma_expand");
    vma_start_write(k, vma).await?;
    let absorb = next.filter(|&n| n != vma && k.st().vmas[n].vm_end == end);
    if let Some(n) = absorb {
        vma_start_write(k, n).await?;
        dup_anon_vma(&mut k.st(), vma, n);
    }
    let mut s = k.st();
    if let Some(n) = absorb {
        vma_complete_remove(&mut s, mm, n);
    }
    vma_set_range(&mut s, vma, start, end, "vma_expand");
    vma_tree_sort(&mut s, mm);
    Ok(())
}
