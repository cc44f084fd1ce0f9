//! Reverse mapping: walk every PTE that maps a folio (mm/rmap.c, mm/migrate.c, v6.6).
//!
//! The model's `anon_vma` tree is "every PTE of every mm" (MODEL.md §1): a walk visits mm 0..3
//! (including a fork child still being built) page by page. Each match is an `[I]` point; the
//! PTE is then re-checked under its PTL (`page_vma_mapped_walk`), since no lock the walker
//! holds excludes faults or zaps. The VMA used for a PTE is the one covering it in the tree,
//! or one that munmap has detached but not yet unlinked from its `anon_vma`. Walkers hold the
//! folio lock (I13a) and take neither `mmap_lock` nor any VMA lock.

use crate::folio::{folio_get_ref, folio_put_ref, page_add_anon_rmap, page_remove_rmap};
use crate::objects::{
    make_device_private_pte, make_migration_pte, mk_pte, swp_entry_to_pte, FolioId, Kernel, MmId,
    Page, Pte, PteKind, State, TableId, PTRS_PER_TABLE, VM_ACCESS_FLAGS, VM_WRITE,
};
use crate::pgtable::{pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use crate::primitives::{violate, KResult};
use crate::swap::swap_duplicate;

/// The `vm_flags` of the VMA mapping `page` for an rmap walker (tree, then detached).
pub fn rmap_vma_flags(s: &mut State, mm: MmId, page: Page) -> u32 {
    let m = s.mm(mm);
    let found = m
        .vmas
        .iter()
        .chain(m.detached.iter())
        .find(|&&v| s.vmas[v].covers(page))
        .map(|&v| s.vmas[v].vm_flags);
    if let Some(flags) = found {
        return flags;
    }
    let msg = format!("mm{mm} page {page} mapped outside VMAs");
    violate(s, "pte.outside-vma", "rmap_walk", msg);
    0
}

/// A PTE the walk found: the mm (and its serial: the id of a torn-down fork child can be
/// reused) and the page.
#[derive(Debug, Clone, Copy)]
pub struct RmapHit {
    pub mm: MmId,
    pub serial: usize,
    pub page: Page,
}

impl RmapHit {
    /// The mm the walk found is still the one at its id.
    fn alive(&self, s: &State) -> bool {
        s.mms[self.mm]
            .as_ref()
            .is_some_and(|m| m.serial == self.serial)
    }
}

/// The walk over every PTE of `kind` that maps a folio, read live as it advances.
///
/// mms are visited in creation order (a fork child after its parent, as the child's VMA is
/// added after the parent's in the `anon_vma` interval tree), pages in address order; a PTE
/// that `copy_pte_range` copies into a child during the walk is therefore still found.
#[derive(Debug)]
pub struct RmapWalk {
    folio: FolioId,
    kind: PteKind,
    /// The serial of the last mm visited (serials grow in creation order).
    visited: Option<usize>,
    cur: Option<(MmId, usize)>,
    page: Page,
}

impl RmapWalk {
    pub fn new(folio: FolioId, kind: PteKind) -> Self {
        Self {
            folio,
            kind,
            visited: None,
            cur: None,
            page: 0,
        }
    }

    /// The next (mm, page) mapping the folio, as the page tables stand now.
    pub fn next(&mut self, s: &State) -> Option<RmapHit> {
        loop {
            if self.cur.is_none() {
                let unvisited = |m: &&MmId| self.visited.is_none_or(|v| s.mm(**m).serial > v);
                let id = *s.mm_order.iter().find(unvisited)?;
                let serial = s.mm(id).serial;
                self.visited = Some(serial);
                self.cur = Some((id, serial));
                self.page = 0;
            }
            let (id, serial) = self.cur?;
            let mm = s.mms[id].as_ref().filter(|m| m.serial == serial);
            while self.page < s.nr_pages {
                let page = self.page;
                self.page += 1;
                let Some(t) = mm.and_then(|m| m.pmd[page as usize / PTRS_PER_TABLE]) else {
                    continue;
                };
                let pte = s.tables[t].ptes[page as usize % PTRS_PER_TABLE];
                if pte.folio == Some(self.folio) && pte.kind == self.kind {
                    return Some(RmapHit {
                        mm: id,
                        serial,
                        page,
                    });
                }
            }
            self.cur = None;
        }
    }
}

/// `[I]`, then `page_vma_mapped_walk`: the PTL-locked table if the PTE still maps `folio`.
pub async fn rmap_lock_pte(
    k: &Kernel,
    hit: RmapHit,
    folio: FolioId,
    kind: PteKind,
    site: &'static str,
) -> KResult<Option<(TableId, Pte)>> {
    k.yield_now(site).await;
    if !hit.alive(&k.st()) {
        return Ok(None); // a fork child torn down meanwhile: its tables are gone
    }
    let Some(table) = pte_offset_map_lock(k, hit.mm, hit.page).await? else {
        return Ok(None);
    };
    let mut s = k.st();
    let pte = ptep_get(&mut s, table, hit.page)?;
    if pte.folio != Some(folio) || pte.kind != kind || !hit.alive(&s) {
        pte_unmap_unlock(&mut s, table);
        return Ok(None);
    }
    Ok(Some((table, pte)))
}

/// `mm/rmap.c:try_to_migrate_one()` for each mapping: present PTE -> migration entry
/// (writable / `readable_exclusive` / readable, A/D bits kept), mapcount-1, reference-1.
pub async fn try_to_migrate(k: &Kernel, folio: FolioId) -> KResult<()> {
    let kind = if k.st().folios[folio as usize].device {
        PteKind::DevicePrivate
    } else {
        PteKind::Present
    };
    let mut walk = RmapWalk::new(folio, kind);
    loop {
        let next = walk.next(&k.st());
        let Some(hit) = next else { break };
        let (mm, page) = (hit.mm, hit.page);
        let site = "try_to_migrate_one:pte";
        let Some((table, pte)) = rmap_lock_pte(k, hit, folio, kind, site).await? else {
            continue;
        };
        let mut s = k.st();
        let f = &mut s.folios[folio as usize];
        let anon_exclusive = f.anon_exclusive;
        f.anon_exclusive = false; // page_try_share_anon_rmap()
        if pte.dirty {
            f.dirty = true;
        }
        let exclusive = anon_exclusive && !pte.writable;
        let entry = make_migration_pte(folio, pte.writable, exclusive, pte.young, pte.dirty);
        set_pte_at(&mut s, mm, table, page, entry, "try_to_migrate_one")?;
        page_remove_rmap(&mut s, folio, "try_to_migrate_one")?;
        folio_put_ref(&mut s, folio, "try_to_migrate_one")?;
        pte_unmap_unlock(&mut s, table);
    }
    Ok(())
}

/// `mm/rmap.c:try_to_unmap_one()` for each mapping of a swap-cache folio: present PTE -> swap
/// entry (exclusive iff `PageAnonExclusive`), slot count+1, mapcount-1, reference-1.
pub async fn try_to_unmap(k: &Kernel, folio: FolioId) -> KResult<()> {
    let slot = k.st().folios[folio as usize].swapcache;
    let mut walk = RmapWalk::new(folio, PteKind::Present);
    loop {
        let next = walk.next(&k.st());
        let Some(hit) = next else { break };
        let (mm, page) = (hit.mm, hit.page);
        let site = "try_to_unmap_one:pte";
        let Some((table, pte)) = rmap_lock_pte(k, hit, folio, PteKind::Present, site).await? else {
            continue;
        };
        let mut s = k.st();
        let f = &mut s.folios[folio as usize];
        let anon_exclusive = f.anon_exclusive;
        if pte.dirty {
            f.dirty = true;
        }
        f.anon_exclusive = false; // page_try_share_anon_rmap()
        swap_duplicate(&mut s.swap, slot);
        let entry = swp_entry_to_pte(slot, anon_exclusive);
        set_pte_at(&mut s, mm, table, page, entry, "try_to_unmap_one")?;
        page_remove_rmap(&mut s, folio, "try_to_unmap_one")?;
        folio_put_ref(&mut s, folio, "try_to_unmap_one")?;
        pte_unmap_unlock(&mut s, table);
    }
    Ok(())
}

/// `mm/rmap.c:folio_referenced()`: count young PTEs mapping `folio`, clearing them.
pub async fn folio_referenced(k: &Kernel, folio: FolioId) -> KResult<u32> {
    let mut referenced = 0;
    let mut walk = RmapWalk::new(folio, PteKind::Present);
    loop {
        let next = walk.next(&k.st());
        let Some(hit) = next else { break };
        let (mm, page) = (hit.mm, hit.page);
        let site = "folio_referenced_one:pte";
        let Some((table, pte)) = rmap_lock_pte(k, hit, folio, PteKind::Present, site).await? else {
            continue;
        };
        let mut s = k.st();
        if pte.young {
            referenced += 1;
            let old = Pte {
                young: false,
                ..pte
            };
            set_pte_at(&mut s, mm, table, page, old, "folio_referenced_one")?;
        }
        pte_unmap_unlock(&mut s, table);
    }
    Ok(referenced)
}

/// `mm/migrate.c:remove_migration_pte()` for each migration entry of `src`: map `dst`
/// (writable iff the entry was writable and the VMA has `VM_WRITE`; `AnonExclusive` unless the
/// entry was readable; a device-private `dst` gets a device-private entry).
pub async fn remove_migration_ptes(k: &Kernel, src: FolioId, dst: FolioId) -> KResult<()> {
    let mut walk = RmapWalk::new(src, PteKind::Migration);
    loop {
        let next = walk.next(&k.st());
        let Some(hit) = next else { break };
        let (mm, page) = (hit.mm, hit.page);
        let site = "remove_migration_pte:pte";
        let Some((table, pte)) = rmap_lock_pte(k, hit, src, PteKind::Migration, site).await? else {
            continue;
        };
        let mut s = k.st();
        let flags = rmap_vma_flags(&mut s, mm, page);
        let writable = pte.writable && flags & VM_WRITE != 0;
        folio_get_ref(&mut s, dst, "remove_migration_pte")?;
        let exclusive = pte.writable || pte.exclusive;
        page_add_anon_rmap(&mut s, dst, exclusive, "remove_migration_pte")?;
        let d = &s.folios[dst as usize];
        let entry = if d.device {
            make_device_private_pte(dst, writable)
        } else {
            let protnone = flags & VM_ACCESS_FLAGS == 0;
            mk_pte(dst, writable, pte.young, pte.dirty && d.dirty, protnone)
        };
        set_pte_at(&mut s, mm, table, page, entry, "remove_migration_pte")?;
        pte_unmap_unlock(&mut s, table);
    }
    Ok(())
}
