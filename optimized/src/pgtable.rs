//! Page tables: PMD slots, PTE tables, their PTLs, and PTE reads and writes.
//!
//! One PTE table per `PTRS_PER_TABLE` pages; the PMD slot of a table is empty or points at it
//! (MODEL.md §1). `pte_alloc` installs a table under `mm->page_table_lock` (`pmd_install`);
//! `free_pte_range` (from `free_pgtables`) empties the slot and poisons the table.
//!
//! | rule                       | when                                                        |
//! |----------------------------|-------------------------------------------------------------|
//! | `pte.unlocked-write`       | [`set_pte_at`] by a task that does not hold the table's PTL |
//! | `pte.table-use-after-free` | any access through a freed table; stops the run             |
//! | `pte.outside-vma`          | a non-none PTE installed where no VMA of the mm covers the page |
//! | `pte.writable-shared`      | a writable present PTE installed for a folio not `PageAnonExclusive` (I12) |
//!
//! Hardware accessed/dirty updates by the user access ([`pte_hw_access`]) are the one
//! exception to `pte.unlocked-write`, as on x86.

use crate::objects::{Kernel, MmId, Page, Pte, PteKind, State, TableId, PTRS_PER_TABLE};
use crate::primitives::{
    holds, might_sleep, spin_lock, spin_unlock, violate, violate_fatal, KResult, LockId, Mode,
};

pub const fn pte_slot(page: Page) -> usize {
    page as usize % PTRS_PER_TABLE
}

pub const fn table_index(page: Page) -> usize {
    page as usize / PTRS_PER_TABLE
}

#[inline(always)]
pub fn check_table(s: &mut State, table: TableId, function: &str) -> KResult<()> {
    if s.tables[table].freed {
        let name = crate::primitives::lock_name(s, LockId::Ptl(table));
        return violate_fatal(
            s,
            "pte.table-use-after-free",
            function,
            format!("{name} table freed"),
        );
    }
    Ok(())
}

/// `pte_offset_map_lock()`: the table of `page` with its PTL held, or None (pmd none). After
/// the PTL is taken the PMD is re-checked, as `__pte_offset_map_lock` does.
pub async fn pte_offset_map_lock(k: &Kernel, mm: MmId, page: Page) -> KResult<Option<TableId>> {
    let t = table_index(page);
    loop {
        let found = k.st().mms[mm].as_ref().and_then(|m| m.pmd[t]);
        let Some(table) = found else {
            return Ok(None);
        };
        spin_lock(k, LockId::Ptl(table)).await?;
        let mut s = k.st();
        if s.mms[mm].as_ref().and_then(|m| m.pmd[t]) == Some(table) {
            check_table(&mut s, table, "pte_offset_map_lock")?;
            return Ok(Some(table));
        }
        spin_unlock(&mut s, LockId::Ptl(table));
    }
}

pub fn pte_unmap_unlock(s: &mut State, table: TableId) {
    spin_unlock(s, LockId::Ptl(table));
}

pub fn ptep_get(s: &mut State, table: TableId, page: Page) -> KResult<Pte> {
    check_table(s, table, "ptep_get")?;
    Ok(s.tables[table].ptes[pte_slot(page)])
}

/// Whether a VMA of `mm` (in the tree, or detached but still linked) covers `page`.
pub fn covered_by_vma(s: &State, mm: MmId, page: Page) -> bool {
    let m = s.mm(mm);
    m.vmas
        .iter()
        .chain(m.detached.iter())
        .any(|&v| s.vmas[v].covers(page))
}

/// Write a PTE; the caller must hold the table's PTL.
pub fn set_pte_at(
    s: &mut State,
    mm: MmId,
    table: TableId,
    page: Page,
    pte: Pte,
    function: &str,
) -> KResult<()> {
    check_table(s, table, function)?;
    if !holds(s, LockId::Ptl(table), Some(Mode::Spin)) {
        let name = crate::primitives::lock_name(s, LockId::Ptl(table));
        let msg = format!("page {page} written without {name}");
        violate(s, "pte.unlocked-write", function, msg);
    }
    if !pte.is_none() && !covered_by_vma(s, mm, page) {
        let msg = format!("mm{mm} page {page} has no VMA");
        violate(s, "pte.outside-vma", function, msg);
    }
    if let (true, PteKind::Present, Some(f)) = (pte.writable, pte.kind, pte.folio) {
        if !s.folios[f as usize].anon_exclusive {
            // I12: a writable anonymous PTE implies PageAnonExclusive.
            let msg = format!("mm{mm} page {page} writable, shared");
            violate(s, "pte.writable-shared", function, msg);
        }
    }
    s.tables[table].ptes[pte_slot(page)] = pte;
    Ok(())
}

/// The MMU sets accessed/dirty bits of a present PTE (no lock, as hardware does).
pub fn pte_hw_access(s: &mut State, table: TableId, page: Page, pte: Pte) {
    s.tables[table].ptes[pte_slot(page)] = pte;
}

/// `pte_alloc()` -> `__pte_alloc` -> `pmd_install` (mm/memory.c, v6.6).
pub async fn pte_alloc(k: &Kernel, mm: MmId, page: Page) -> KResult<()> {
    let t = table_index(page);
    {
        let mut s = k.st();
        if s.mm(mm).pmd[t].is_some() {
            return Ok(());
        }
        might_sleep(&mut s, "__pte_alloc");
    }
    k.yield_now("__pte_alloc:pte_alloc_one").await;
    let new = k.st().alloc_table(mm, t);
    spin_lock(k, LockId::PageTableLock(mm)).await?;
    let mut s = k.st();
    // Has another populated it?
    if s.mm(mm).pmd[t].is_none() {
        s.mm_mut(mm).pmd[t] = Some(new);
    } else {
        s.tables[new].freed = true;
    }
    spin_unlock(&mut s, LockId::PageTableLock(mm));
    Ok(())
}

/// Free table `t` (`free_pte_range`): its PTEs must all be none; poison it.
pub fn free_pte_range(s: &mut State, mm: MmId, t: usize) {
    let Some(table) = s.mm(mm).pmd[t] else {
        return;
    };
    for i in 0..PTRS_PER_TABLE {
        if !s.tables[table].ptes[i].is_none() {
            let page = t * PTRS_PER_TABLE + i;
            let msg = format!("mm{mm} page {page} not none when its table is freed");
            violate(s, "pte.outside-vma", "free_pgtables", msg);
        }
    }
    s.mm_mut(mm).pmd[t] = None;
    s.tables[table].freed = true;
}
