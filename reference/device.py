"""Device-private memory, as the ``lib/test_hmm.c`` dmirror driver uses it (v6.6):
``to_device`` (``dmirror_migrate_to_device`` → ``migrate_vma_setup/pages/finalize``) and the
CPU fault on a device-private entry (``do_swap_page`` → ``dmirror_devmem_fault``, the
driver's ``migrate_to_ram``).

Like real drivers, ``migrate_to_ram`` relies on ``mmap_lock`` being held by the faulting task
(seed 000: that is why the per-VMA-lock path must fall back to ``mmap_lock`` here):

==================  ============================================================================
rule                when
==================  ============================================================================
devpriv.mmap-lock   `dmirror_devmem_fault` entered without the task holding ``mmap_lock``
==================  ============================================================================

Both directions use ``migrate_vma``: the source PTE becomes a migration entry under the PTL
(``migrate_vma_collect``, folio locked by trylock only), other mappings are unmapped by
``try_to_migrate``, the refcount is checked, the data copied, and ``remove_migration_ptes``
maps the destination (or restores the source on failure).
"""

from __future__ import annotations

import errno

from reference.folio import (
    folio_get,
    folio_isolate_lru,
    folio_put,
    folio_put_ref,
    folio_putback_lru,
    folio_trylock,
    folio_unlock,
    page_remove_rmap,
)
from reference.mmap_lock import mmap_assert_locked, mmap_read_lock, mmap_read_unlock
from reference.objects import PTE_PRESENT, PTRS_PER_TABLE, Folio, Mm, make_migration_pte
from reference.pgtable import pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at
from reference.primitives import Current, Gen, might_sleep
from reference.rmap import remove_migration_ptes, try_to_migrate
from reference.swap import folio_free_swap
from reference.vma import vma_lookup
from reference.vmf import Vmf

EFAULT, ENOENT, EBUSY = -errno.EFAULT, -errno.ENOENT, -errno.EBUSY


def migrate_vma_collect_pte(cur: Current, mm: Mm, page: int, folio: Folio) -> None:
    """The locked-PTE step of ``migrate_vma_collect_pmd``: replace the PTE (present or
    device-private) by a migration entry, drop its mapcount and reference. PTL held."""
    table = mm.pmd[page // PTRS_PER_TABLE]
    assert table is not None
    pte = ptep_get(cur, table, page)
    anon_exclusive = folio.anon_exclusive
    folio.anon_exclusive = False  # page_try_share_anon_rmap()
    present = pte.kind == PTE_PRESENT
    if present and pte.dirty:
        folio.dirty = True
    entry = make_migration_pte(
        folio,
        pte.writable,
        anon_exclusive and not pte.writable,
        present and pte.young,
        present and pte.dirty,
    )
    set_pte_at(cur, mm, table, page, entry, "migrate_vma_collect_pmd")
    page_remove_rmap(cur, folio, "migrate_vma_collect_pmd")
    folio_put_ref(cur, folio, "migrate_vma_collect_pmd")


def dmirror_migrate_to_device(cur: Current, mm: Mm, page: int) -> Gen[int]:
    """lib/test_hmm.c:dmirror_migrate_to_device() for one page, under ``mmap_read_lock``."""
    yield from mmap_read_lock(cur, mm)
    rc = yield from migrate_vma_to_device(cur, mm, page)
    mmap_read_unlock(cur, mm)
    return rc


def migrate_vma_to_device(cur: Current, mm: Mm, page: int) -> Gen[int]:
    """lib/test_hmm.c:dmirror_migrate_to_device() (v6.6) for one page: ``migrate_vma_setup``
    (collect and isolate), copy, ``migrate_vma_pages``/``finalize``. Departures (MODEL.md §6):
    no VMA is -EFAULT (the driver says -EINVAL), a VMA without VM_READ is not refused, and a
    none or zero-page PTE is -ENOENT (the kernel would insert a device page)."""
    if vma_lookup(mm, page) is None:
        return EFAULT
    table = yield from pte_offset_map_lock(cur, mm, page)
    if table is None:
        return ENOENT
    pte = ptep_get(cur, table, page)
    src = pte.folio
    if pte.kind != PTE_PRESENT or src is None:
        pte_unmap_unlock(cur, table)
        return ENOENT
    folio_get(cur, src, "migrate_vma_collect")
    if not folio_trylock(cur, src):
        folio_put(cur, src, "migrate_vma_collect")
        pte_unmap_unlock(cur, table)
        return EBUSY
    migrate_vma_collect_pte(cur, mm, page, src)
    pte_unmap_unlock(cur, table)
    # migrate_device_unmap()
    if not folio_isolate_lru(cur, src, "migrate_device_unmap"):
        yield from remove_migration_ptes(cur, src, src)  # the restore loop
        folio_unlock(cur, src)
        folio_put(cur, src, "migrate_device_unmap")  # the collect reference
        return EBUSY
    folio_put(cur, src, "migrate_device_unmap", "migrate_vma_collect")  # the collect ref
    if src.mapcount:
        yield from try_to_migrate(cur, src)
    extra = 1 + (1 if src.swapcache >= 0 else 0)  # migrate_vma_check_page()
    ok = not src.mapcount and src.refcount - extra <= src.mapcount
    dst = None
    if ok:
        might_sleep(cur, "dmirror_devmem_alloc_page")
        yield "dmirror_migrate_alloc_and_copy:alloc"
        dst = cur.kernel.alloc_folio(src.data, device=True)
        dst.refs.append((cur.tid, "dmirror_devmem_alloc_page"))
        folio_trylock(cur, dst)
        # __migrate_device_pages(): anonymous memory only; try to drop the swap cache, but
        # the mapping seen before is still used for the refcount check (expected 2).
        if src.swapcache >= 0:
            folio_free_swap(cur, src)
            ok = False
        elif src.refcount != 1:
            ok = False
    return (yield from migrate_device_finalize(cur, src, dst, ok))


def migrate_device_finalize(cur: Current, src: Folio, dst: Folio | None, ok: bool) -> Gen[int]:
    """mm/migrate_device.c:migrate_device_finalize(): map `dst`, or restore `src`."""
    if dst is not None and ok:
        yield from remove_migration_ptes(cur, src, dst)
    else:
        yield from remove_migration_ptes(cur, src, src)
    folio_unlock(cur, src)
    folio_putback_lru(cur, src, "migrate_device_finalize")
    if dst is not None:
        folio_unlock(cur, dst)
        folio_put(cur, dst, "migrate_device_finalize")
    return 0 if ok else EBUSY


def do_device_private_fault(vmf: Vmf) -> Gen[int]:
    """The device-private branch of mm/memory.c:do_swap_page() (v6.6), under mmap_lock:
    ``pte_same`` under the PTL, ``get_page``, then ``migrate_to_ram`` with the PTL dropped."""
    cur = vmf.cur
    table = yield from pte_offset_map_lock(cur, vmf.mm, vmf.page)
    if table is None:
        return 0
    dfolio = vmf.orig_pte.folio
    if ptep_get(cur, table, vmf.page) != vmf.orig_pte or dfolio is None:
        pte_unmap_unlock(cur, table)
        return 0
    folio_get(cur, dfolio, "do_swap_page")
    pte_unmap_unlock(cur, table)
    ret = yield from dmirror_devmem_fault(vmf, dfolio)
    folio_put(cur, dfolio, "do_swap_page")
    return ret


def dmirror_devmem_fault(vmf: Vmf, dfolio: Folio) -> Gen[int]:
    """lib/test_hmm.c:dmirror_devmem_fault(): ``migrate_vma`` of the faulting page back to a
    system folio. The driver relies on ``mmap_lock`` (``lockdep_assert``, seed 000)."""
    cur, mm, page = vmf.cur, vmf.mm, vmf.page
    mmap_assert_locked(cur, mm, "devpriv.mmap-lock", "dmirror_devmem_fault")
    table = yield from pte_offset_map_lock(cur, mm, page)
    if table is None:
        return 0
    if ptep_get(cur, table, page) != vmf.orig_pte:
        pte_unmap_unlock(cur, table)
        return 0
    folio_get(cur, dfolio, "migrate_vma_collect")
    if not folio_trylock(cur, dfolio):  # nothing collected: refault (the CPU spins)
        folio_put(cur, dfolio, "migrate_vma_collect")
        pte_unmap_unlock(cur, table)
        return 0
    migrate_vma_collect_pte(cur, mm, page, dfolio)
    pte_unmap_unlock(cur, table)
    if dfolio.mapcount:
        yield from try_to_migrate(cur, dfolio)
    ok = not dfolio.mapcount and dfolio.refcount == 2  # collect + the fault's get_page
    new = None
    if ok:
        might_sleep(cur, "dmirror_devmem_fault_alloc_and_copy")
        yield "dmirror_devmem_fault_alloc_and_copy:alloc"
        new = cur.kernel.alloc_folio(dfolio.data)
        new.refs.append((cur.tid, "dmirror_devmem_fault"))
        folio_trylock(cur, new)
    yield from remove_migration_ptes(cur, dfolio, new if new is not None else dfolio)
    folio_unlock(cur, dfolio)
    folio_put(cur, dfolio, "migrate_vma_finalize", "migrate_vma_collect")
    if new is not None:
        folio_unlock(cur, new)
        folio_putback_lru(cur, new, "migrate_vma_finalize")
    return 0
