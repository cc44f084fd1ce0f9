//! The observable state: the final memory image, serial-lockstep snapshots, and the checks
//! made at quiescence (MODEL.md §3, §5; `fuzz.record` for the formats).
//!
//! **Snapshots** (serial strategy only) number folios by first appearance, scanning mm 0..3
//! page by page, then the swap cache by slot. The swap part lists every slot that is not free
//! as `(slot, count, has_cache)`. The lock part lists, sorted, `"<lock>:<mode>:t<tid>"` for
//! every lock a task holds and `"<folio>:locked"` / `"<folio>:writeback"` for every live folio
//! in that state.
//!
//! | rule                          | check at quiescence                                    |
//! |-------------------------------|--------------------------------------------------------|
//! | `lock.held-at-quiescence`     | no task holds a lock; no rwsem (`mmap_lock`, any live VMA's `vm_lock`) or spinlock is held |
//! | `folio.locked-at-quiescence`  | no live folio is locked or under writeback; no migration entry left |
//! | `folio.refcount`              | refcount == #present/device PTEs + 1 if in the swap cache; no task reference |
//! | `folio.mapcount`              | mapcount == #present/device PTEs mapping it            |
//! | `swap.count`                  | count == #swap PTEs naming the slot; `has_cache` iff a cached folio |
//! | `pte.outside-vma`             | every non-none PTE lies inside a VMA of its mm         |

use crate::inline::InlineVec;
use crate::objects::{
    FolioId, Mm, Page, Pte, PteKind, State, MAX_MMS, MAX_PAGES, NR_SWAP_SLOTS, PTRS_PER_TABLE,
    VM_ACCESS_FLAGS, VM_GROWSDOWN, VM_UFFD_MISSING,
};
use crate::primitives::{lock_name, violate, LockId};
use crate::record::{MmSnap, PageImage, PteSnap, Snapshot, VmaSnap};

fn pte_at(s: &State, mm: &Mm, page: Page) -> Option<Pte> {
    let t = mm.pmd[page as usize / PTRS_PER_TABLE]?;
    Some(s.tables[t].ptes[page as usize % PTRS_PER_TABLE])
}

/// The data a read through `pte` would return.
fn pte_data(s: &State, pte: &Pte) -> u32 {
    if pte.kind == PteKind::Swap {
        let slot = usize::try_from(pte.slot).unwrap_or(0);
        return match s.swap.cache[slot] {
            Some(f) => s.folios[f as usize].data,
            None => s.swap.slots[slot].data,
        };
    }
    pte.folio.map_or(0, |f| s.folios[f as usize].data)
}

fn vma_covering(s: &State, mm: &Mm, page: Page) -> Option<u32> {
    mm.vmas
        .iter()
        .find(|&&v| s.vmas[v].covers(page))
        .map(|&v| s.vmas[v].vm_flags)
}

/// `RunRecord.image`: per mm (None if absent) and per page.
pub fn memory_image(s: &State) -> Vec<Option<Vec<PageImage>>> {
    s.mms
        .iter()
        .map(|m| {
            let mm = m.as_ref().filter(|m| m.visible)?;
            let pages = (0..s.nr_pages)
                .map(|page| {
                    let flags = vma_covering(s, mm, page);
                    let pte = pte_at(s, mm, page).filter(|p| !p.is_none());
                    PageImage {
                        mapped: flags.is_some(),
                        prot: flags.unwrap_or(0) & VM_ACCESS_FLAGS,
                        uffd: flags.unwrap_or(0) & VM_UFFD_MISSING != 0,
                        populated: pte.is_some(),
                        value: pte.map_or(0, |p| pte_data(s, &p)),
                    }
                })
                .collect();
            Some(pages)
        })
        .collect()
}

// take_snapshot() finds the busy swap slots with a u64 mask.
const _: () = assert!(NR_SWAP_SLOTS <= 64);

/// The folios of a snapshot in numbering order: each is mapped by a PTE or in the swap
/// cache, so there are never more than the PTEs and slots that can name one.
type FolioOrder = InlineVec<FolioId, { MAX_MMS * MAX_PAGES + NR_SWAP_SLOTS }>;

/// The number of folio `f` in snapshot order, numbering it now if it is new.
fn folio_number(order: &mut FolioOrder, f: FolioId) -> i64 {
    let n = order.iter().position(|&g| g == f).unwrap_or_else(|| {
        order.push(f);
        order.len() - 1
    });
    i64::try_from(n).unwrap_or(-1)
}

/// One mm's part of a snapshot; numbers the folios it maps that `order` does not hold yet
/// (mms are taken in id order, so folios are numbered by first appearance, page by page).
fn mm_snap(s: &State, mm: &Mm, order: &mut FolioOrder) -> MmSnap {
    let vmas = mm
        .vmas
        .iter()
        .map(|&v| {
            let v = &s.vmas[v];
            VmaSnap {
                start: v.vm_start,
                end: v.vm_end,
                prot: v.vm_flags & VM_ACCESS_FLAGS,
                uffd: v.vm_flags & VM_UFFD_MISSING != 0,
                growsdown: v.vm_flags & VM_GROWSDOWN != 0,
                anon_vma: v.anon_vma.is_some(),
            }
        })
        .collect();
    let mut ptes = Vec::with_capacity(s.nr_pages as usize);
    for page in 0..s.nr_pages {
        let pte = pte_at(s, mm, page);
        let number = pte.and_then(|p| p.folio).map(|f| folio_number(order, f));
        ptes.push(match pte.filter(|p| !p.is_none()) {
            None => PteSnap {
                kind: PteKind::None as u8,
                data: 0,
                writable: false,
                ref_: -1,
            },
            Some(p) => PteSnap {
                kind: p.kind as u8,
                data: pte_data(s, &p),
                writable: p.writable,
                ref_: match p.kind {
                    PteKind::Swap => i64::from(p.slot),
                    _ => number.unwrap_or(-1),
                },
            },
        });
    }
    MmSnap { vmas, ptes }
}

pub fn take_snapshot(s: &State, after: usize) -> Snapshot {
    let mut order = FolioOrder::default();
    let mms = s
        .mms
        .iter()
        .map(|m| {
            m.as_ref()
                .filter(|m| m.visible)
                .map(|mm| mm_snap(s, mm, &mut order))
        })
        .collect();
    // Most slots are free and uncached: find the others without a branch per slot.
    let mut busy = 0u64;
    for (i, (slot, cached)) in s.swap.slots.iter().zip(&s.swap.cache).enumerate() {
        let used = (slot.count != 0) | slot.has_cache | cached.is_some();
        busy |= u64::from(used) << i;
    }
    let mut swap = Vec::new();
    while busy != 0 {
        let i = busy.trailing_zeros() as usize;
        busy &= busy - 1;
        if let Some(f) = s.swap.cache[i] {
            folio_number(&mut order, f);
        }
        let slot = &s.swap.slots[i];
        if !slot.is_free() {
            swap.push((i, slot.count, slot.has_cache));
        }
    }
    let folios = order
        .iter()
        .map(|&f| {
            let folio = &s.folios[f as usize];
            if folio.freed {
                (0, 0)
            } else {
                (folio.refcount, folio.mapcount)
            }
        })
        .collect();
    Snapshot {
        after,
        mms,
        folios,
        swap,
        locks: held_locks(s),
    }
}

pub fn held_locks(s: &State) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (tid, c) in s.cur.iter().enumerate() {
        for &(lk, mode) in &c.held {
            out.push(format!("{}:{}:t{tid}", lock_name(s, lk), mode.name()));
        }
    }
    for f in s.folios.iter().filter(|f| !f.freed) {
        if f.locked {
            out.push(format!("folio#{}:locked", f.id));
        }
        if f.writeback {
            out.push(format!("folio#{}:writeback", f.id));
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Quiescence

/// The end-of-run checks of the module docs; violations are charged to the current task.
pub fn check_quiescence(s: &mut State) {
    check_locks(s);
    let mut mapped: Vec<i32> = vec![0; s.folios.len()];
    let mut swapped = [0i32; NR_SWAP_SLOTS];
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    for mm in s.mms.iter().flatten() {
        for page in 0..s.nr_pages {
            let Some(pte) = pte_at(s, mm, page).filter(|p| !p.is_none()) else {
                continue;
            };
            if vma_covering(s, mm, page).is_none() {
                problems.push(("pte.outside-vma", format!("mm{} page {page}", mm.id)));
            }
            match (pte.kind, pte.folio) {
                (PteKind::Swap, _) => swapped[usize::try_from(pte.slot).unwrap_or(0)] += 1,
                (PteKind::Present | PteKind::DevicePrivate, Some(f)) => mapped[f as usize] += 1,
                (PteKind::Migration, _) => problems.push((
                    "folio.locked-at-quiescence",
                    format!("mm{} page {page}: migration entry left", mm.id),
                )),
                _ => {}
            }
        }
    }
    for f in s.folios.iter().filter(|f| !f.freed) {
        let n = mapped[f.id as usize];
        let expect = n + i32::from(f.swapcache >= 0);
        if f.locked || f.writeback {
            problems.push(("folio.locked-at-quiescence", format!("folio#{}", f.id)));
        }
        if f.refcount != expect || !f.refs.is_empty() {
            let msg = format!(
                "folio#{} refcount {}, expected {expect}, held {:?}",
                f.id, f.refcount, f.refs
            );
            problems.push(("folio.refcount", msg));
        }
        if f.mapcount != n {
            let msg = format!("folio#{} mapcount {}, expected {n}", f.id, f.mapcount);
            problems.push(("folio.mapcount", msg));
        }
    }
    for (i, sl) in s.swap.slots.iter().enumerate() {
        let cached = s.swap.cache[i].is_some();
        if sl.count != swapped[i] || sl.has_cache != cached {
            let msg = format!(
                "slot {i}: count {} has_cache {}, {} swap PTEs, cached {cached}",
                sl.count, sl.has_cache, swapped[i]
            );
            problems.push(("swap.count", msg));
        }
    }
    for (rule, msg) in problems {
        violate(s, rule, "quiescence", msg);
    }
}

fn check_locks(s: &mut State) {
    let mut problems: Vec<(usize, String)> = Vec::new();
    for (tid, c) in s.cur.iter().enumerate() {
        if !c.held.is_empty() {
            let names: Vec<String> = c
                .held
                .iter()
                .map(|&(l, m)| format!("{}:{}", lock_name(s, l), m.name()))
                .collect();
            problems.push((tid, names.join(", ")));
        }
    }
    let me = s.tid;
    for mm in s.mms.iter().flatten() {
        if mm.mmap_lock.is_locked() || !mm.mmap_lock.waiters.is_empty() {
            problems.push((me, lock_name(s, LockId::Mmap(mm.id))));
        }
        if mm.page_table_lock.owner.is_some() {
            problems.push((me, lock_name(s, LockId::PageTableLock(mm.id))));
        }
        for t in mm.pmd.iter().flatten() {
            if s.tables[*t].ptl.owner.is_some() {
                problems.push((me, lock_name(s, LockId::Ptl(*t))));
            }
        }
    }
    for v in s.vmas.iter().filter(|v| !v.freed && v.vm_lock.is_locked()) {
        problems.push((me, lock_name(s, LockId::Vm(v.id))));
    }
    for (tid, msg) in problems {
        s.tid = tid;
        violate(s, "lock.held-at-quiescence", "quiescence", msg);
    }
    s.tid = me;
}
