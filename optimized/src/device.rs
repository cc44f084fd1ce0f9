//! Device-private memory, as the `lib/test_hmm.c` dmirror driver uses it (v6.6): `to_device`
//! (`dmirror_migrate_to_device` -> `migrate_vma_setup/pages/finalize`) and the CPU fault on a
//! device-private entry (`do_swap_page` -> `dmirror_devmem_fault`, the driver's
//! `migrate_to_ram`).
//!
//! Like real drivers, `migrate_to_ram` relies on `mmap_lock` being held by the faulting task
//! (seed 000): that is why `do_swap_page` under the VMA lock returns RETRY for a
//! device-private entry, so that this code only ever runs on the `mmap_lock` path.
//!
//! | rule                | when                                                             |
//! |---------------------|------------------------------------------------------------------|
//! | `devpriv.mmap-lock` | `dmirror_devmem_fault` entered without the task holding `mmap_lock` |

use crate::folio::{
    folio_get, folio_isolate_lru, folio_put, folio_put_ref, folio_put_site, folio_putback_lru,
    folio_trylock, folio_unlock, page_remove_rmap,
};
use crate::mmap_lock::{mmap_assert_locked, mmap_read_lock, mmap_read_unlock};
use crate::objects::{make_migration_pte, FolioId, Kernel, MmId, Page, PteKind, State, TableId};
use crate::pgtable::{pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at};
use crate::primitives::{might_sleep, KResult};
use crate::rmap::{remove_migration_ptes, try_to_migrate};
use crate::swap::folio_free_swap;
use crate::vma::vma_lookup;
use crate::vmf::Vmf;

pub const EFAULT: i32 = -14;
pub const ENOENT: i32 = -2;
pub const EBUSY: i32 = -16;

/// The locked-PTE step of `migrate_vma_collect_pmd`: replace the PTE (present or
/// device-private) by a migration entry, drop its mapcount and reference. PTL held.
fn migrate_vma_collect_pte(
    s: &mut State,
    mm: MmId,
    table: TableId,
    page: Page,
    folio: FolioId,
) -> KResult<()> {
    let pte = ptep_get(s, table, page)?;
    let f = &mut s.folios[folio as usize];
    let anon_exclusive = f.anon_exclusive;
    f.anon_exclusive = false; // page_try_share_anon_rmap()
    let present = pte.kind == PteKind::Present;
    if present && pte.dirty {
        f.dirty = true;
    }
    let entry = make_migration_pte(
        folio,
        pte.writable,
        anon_exclusive && !pte.writable,
        present && pte.young,
        present && pte.dirty,
    );
    set_pte_at(s, mm, table, page, entry, "migrate_vma_collect_pmd")?;
    page_remove_rmap(s, folio, "migrate_vma_collect_pmd")?;
    folio_put_ref(s, folio, "migrate_vma_collect_pmd")
}

/// `lib/test_hmm.c:dmirror_migrate_to_device()` for one page, under `mmap_read_lock`.
pub async fn dmirror_migrate_to_device(k: &Kernel, mm: MmId, page: Page) -> KResult<i32> {
    mmap_read_lock(k, mm).await?;
    let rc = migrate_vma_to_device(k, mm, page).await?;
    mmap_read_unlock(&mut k.st(), mm);
    Ok(rc)
}

async fn migrate_vma_to_device(k: &Kernel, mm: MmId, page: Page) -> KResult<i32> {
    if vma_lookup(&k.st(), mm, page).is_none() {
        return Ok(EFAULT);
    }
    let Some(table) = pte_offset_map_lock(k, mm, page).await? else {
        return Ok(ENOENT);
    };
    let src = {
        let mut s = k.st();
        let pte = ptep_get(&mut s, table, page)?;
        let Some(src) = pte.folio.filter(|_| pte.kind == PteKind::Present) else {
            pte_unmap_unlock(&mut s, table);
            return Ok(ENOENT);
        };
        folio_get(&mut s, src, "migrate_vma_collect")?;
        if !folio_trylock(&mut s, src)? {
            folio_put(&mut s, src, "migrate_vma_collect")?;
            pte_unmap_unlock(&mut s, table);
            return Ok(EBUSY);
        }
        migrate_vma_collect_pte(&mut s, mm, table, page, src)?;
        pte_unmap_unlock(&mut s, table);
        src
    };
    // migrate_device_unmap()
    if !folio_isolate_lru(&mut k.st(), src, "migrate_device_unmap")? {
        remove_migration_ptes(k, src, src).await?; // the restore loop
        let mut s = k.st();
        folio_unlock(&mut s, src)?;
        folio_put(&mut s, src, "migrate_device_unmap")?; // the collect reference
        return Ok(EBUSY);
    }
    let collect = "migrate_vma_collect";
    folio_put_site(&mut k.st(), src, "migrate_device_unmap", collect)?; // the collect ref
    if k.st().folios[src as usize].mapcount != 0 {
        try_to_migrate(k, src).await?;
    }
    let (mut ok, mut dst) = (migrate_vma_check_page(&k.st(), src), None);
    if ok {
        might_sleep(&mut k.st(), "dmirror_devmem_alloc_page");
        k.yield_now("dmirror_migrate_alloc_and_copy:alloc").await;
        let mut s = k.st();
        let data = s.folios[src as usize].data;
        let d = s.alloc_folio(data, true, "dmirror_devmem_alloc_page");
        folio_trylock(&mut s, d)?;
        dst = Some(d);
        // __migrate_device_pages(): anonymous memory only; try to drop the swap cache, but
        // the mapping seen before is still used for the refcount check (expected 2).
        if s.folios[src as usize].swapcache >= 0 {
            folio_free_swap(&mut s, src)?;
            ok = false;
        } else if s.folios[src as usize].refcount != 1 {
            ok = false;
        }
    }
    migrate_device_finalize(k, src, dst, ok).await
}

/// `mm/migrate_device.c:migrate_vma_check_page()`: unmapped, no reference beyond ours.
fn migrate_vma_check_page(s: &State, src: FolioId) -> bool {
    let f = &s.folios[src as usize];
    let extra = 1 + i32::from(f.swapcache >= 0);
    f.mapcount == 0 && f.refcount - extra <= f.mapcount
}

/// `mm/migrate_device.c:migrate_device_finalize()`: map `dst`, or restore `src`.
async fn migrate_device_finalize(
    k: &Kernel,
    src: FolioId,
    dst: Option<FolioId>,
    ok: bool,
) -> KResult<i32> {
    let target = dst.filter(|_| ok).unwrap_or(src);
    remove_migration_ptes(k, src, target).await?;
    let mut s = k.st();
    folio_unlock(&mut s, src)?;
    folio_putback_lru(&mut s, src, "migrate_device_finalize")?;
    if let Some(d) = dst {
        folio_unlock(&mut s, d)?;
        folio_put(&mut s, d, "migrate_device_finalize")?;
    }
    Ok(if ok { 0 } else { EBUSY })
}

/// The device-private branch of `mm/memory.c:do_swap_page()` (v6.6) under `mmap_lock`:
/// `pte_same` under the PTL, `get_page`, then `migrate_to_ram` with the PTL dropped.
pub async fn do_device_private_fault(k: &Kernel, vmf: &Vmf) -> KResult<u32> {
    let Some(table) = pte_offset_map_lock(k, vmf.mm, vmf.page).await? else {
        return Ok(0);
    };
    let dfolio = {
        let mut s = k.st();
        let same = ptep_get(&mut s, table, vmf.page)? == vmf.orig_pte;
        let Some(d) = vmf.orig_pte.folio.filter(|_| same) else {
            pte_unmap_unlock(&mut s, table);
            return Ok(0);
        };
        folio_get(&mut s, d, "do_swap_page")?;
        pte_unmap_unlock(&mut s, table);
        d
    };
    let ret = dmirror_devmem_fault(k, vmf, dfolio).await?;
    folio_put(&mut k.st(), dfolio, "do_swap_page")?;
    Ok(ret)
}

/// `lib/test_hmm.c:dmirror_devmem_fault()`: `migrate_vma` of the faulting page back to a
/// system folio. The driver relies on `mmap_lock` (`lockdep_assert`, seed 000).
async fn dmirror_devmem_fault(k: &Kernel, vmf: &Vmf, dfolio: FolioId) -> KResult<u32> {
    let (mm, page) = (vmf.mm, vmf.page);
    mmap_assert_locked(&mut k.st(), mm, "devpriv.mmap-lock", "dmirror_devmem_fault");
    let Some(table) = pte_offset_map_lock(k, mm, page).await? else {
        return Ok(0);
    };
    {
        let mut s = k.st();
        if ptep_get(&mut s, table, page)? != vmf.orig_pte {
            pte_unmap_unlock(&mut s, table);
            return Ok(0);
        }
        folio_get(&mut s, dfolio, "migrate_vma_collect")?;
        if !folio_trylock(&mut s, dfolio)? {
            folio_put(&mut s, dfolio, "migrate_vma_collect")?;
            pte_unmap_unlock(&mut s, table);
            return Ok(0);
        }
        migrate_vma_collect_pte(&mut s, mm, table, page, dfolio)?;
        pte_unmap_unlock(&mut s, table);
    }
    if k.st().folios[dfolio as usize].mapcount != 0 {
        try_to_migrate(k, dfolio).await?;
    }
    let ok = {
        let s = k.st();
        let d = &s.folios[dfolio as usize];
        d.mapcount == 0 && d.refcount == 2 // collect + the fault's get_page
    };
    let mut new = None;
    if ok {
        might_sleep(&mut k.st(), "dmirror_devmem_fault_alloc_and_copy");
        k.yield_now("dmirror_devmem_fault_alloc_and_copy:alloc")
            .await;
        let mut s = k.st();
        let data = s.folios[dfolio as usize].data;
        let n = s.alloc_folio(data, false, "dmirror_devmem_fault");
        folio_trylock(&mut s, n)?;
        new = Some(n);
    }
    remove_migration_ptes(k, dfolio, new.unwrap_or(dfolio)).await?;
    let mut s = k.st();
    folio_unlock(&mut s, dfolio)?;
    folio_put_site(
        &mut s,
        dfolio,
        "migrate_vma_finalize",
        "migrate_vma_collect",
    )?;
    if let Some(n) = new {
        folio_unlock(&mut s, n)?;
        folio_putback_lru(&mut s, n, "migrate_vma_finalize")?;
    }
    Ok(0)
}
