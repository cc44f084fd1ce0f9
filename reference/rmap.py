"""Reverse mapping: walk every PTE that maps a folio (mm/rmap.c, mm/migrate.c, v6.6).

The model's anon_vma tree is "every PTE of every mm" (MODEL.md §1): a walk visits mm 0..3
(including a fork child still being built, whose VMAs ``anon_vma_fork`` already linked) page by
page. Each match is an ``[I]`` point; the PTE is then re-checked under its PTL
(``page_vma_mapped_walk``), since no lock the walker holds excludes faults or zaps. The VMA
used for a PTE is the one covering it in the tree, or a VMA that ``munmap`` has detached but
not yet unlinked from its anon_vma (``free_pgtables``), as the kernel's walk would find it.

Walkers hold the folio lock (I13a); they never sleep under the PTL.
"""

from __future__ import annotations

from collections.abc import Iterator

from reference.folio import (
    folio_get_ref,
    folio_put_ref,
    page_add_anon_rmap,
    page_remove_rmap,
)
from reference.objects import (
    PTE_DEVICE_PRIVATE,
    PTE_MIGRATION,
    PTE_PRESENT,
    PTRS_PER_TABLE,
    VM_ACCESS_FLAGS,
    VM_WRITE,
    Folio,
    Mm,
    PageTable,
    Pte,
    make_device_private_pte,
    make_migration_pte,
    mk_pte,
    swp_entry_to_pte,
)
from reference.pgtable import pte_offset_map_lock, pte_unmap_unlock, ptep_get, set_pte_at
from reference.primitives import Current, Gen, violate
from reference.swap import swap_duplicate


def rmap_vma_flags(cur: Current, mm: Mm, page: int) -> int:
    """The vm_flags of the VMA mapping `page` for an rmap walker (tree, then detached)."""
    for v in mm.vmas:
        if v.vm_start <= page < v.vm_end:
            return v.vm_flags
    for v in mm.detached:
        if v.vm_start <= page < v.vm_end:
            return v.vm_flags
    violate(cur, "pte.outside-vma", "rmap_walk", f"mm{mm.id} page {page} mapped outside VMAs")
    return 0


def rmap_candidates(cur: Current, folio: Folio, kind: int) -> Iterator[tuple[Mm, int]]:
    """(mm, page) of every PTE of `kind` that maps `folio`, read live as the walk advances.

    mms are visited in creation order (a fork child after its parent, as the child's VMA is
    added after the parent's in the anon_vma interval tree), pages in address order; a PTE
    that ``copy_pte_range`` copies into a child during the walk is therefore still found.
    """
    k = cur.kernel
    visited: list[Mm] = []
    while True:
        mm = next((m for m in k.mm_order if m not in visited), None)
        if mm is None:
            return
        visited.append(mm)
        for page in range(k.nr_pages):
            table = mm.pmd[page // PTRS_PER_TABLE]
            if table is None:
                continue
            pte = table.ptes[page % PTRS_PER_TABLE]
            if pte.folio is folio and pte.kind == kind:
                yield mm, page


def rmap_lock_pte(
    cur: Current, mm: Mm, page: int, folio: Folio, kind: int, site: str
) -> Gen[tuple[PageTable, Pte] | None]:
    """[I], then ``page_vma_mapped_walk``: the PTL-locked table if the PTE still maps it."""
    yield site
    table = yield from pte_offset_map_lock(cur, mm, page)
    if table is None:
        return None
    pte = ptep_get(cur, table, page)
    if pte.folio is not folio or pte.kind != kind:
        pte_unmap_unlock(cur, table)
        return None
    return table, pte


def try_to_migrate(cur: Current, folio: Folio) -> Gen[None]:
    """mm/rmap.c:try_to_migrate_one() for each mapping: a present (or, for a device folio,
    device-private) PTE → migration entry (writable / readable_exclusive / readable; the A/D
    bits of a present PTE kept), mapcount-1, reference-1."""
    kind = PTE_DEVICE_PRIVATE if folio.device else PTE_PRESENT
    for mm, page in rmap_candidates(cur, folio, kind):
        got = yield from rmap_lock_pte(cur, mm, page, folio, kind, "try_to_migrate_one:pte")
        if got is None:
            continue
        table, pte = got
        anon_exclusive = folio.anon_exclusive
        folio.anon_exclusive = False  # page_try_share_anon_rmap()
        if pte.dirty:
            folio.dirty = True
        exclusive = anon_exclusive and not pte.writable
        entry = make_migration_pte(folio, pte.writable, exclusive, pte.young, pte.dirty)
        set_pte_at(cur, mm, table, page, entry, "try_to_migrate_one")
        page_remove_rmap(cur, folio, "try_to_migrate_one")
        folio_put_ref(cur, folio, "try_to_migrate_one")
        pte_unmap_unlock(cur, table)


def try_to_unmap(cur: Current, folio: Folio) -> Gen[None]:
    """mm/rmap.c:try_to_unmap_one() for each mapping of a swap-cache folio: present PTE →
    swap entry (exclusive iff PageAnonExclusive), slot count+1, mapcount-1, reference-1."""
    si, slot = cur.kernel.swap, folio.swapcache
    for mm, page in rmap_candidates(cur, folio, PTE_PRESENT):
        got = yield from rmap_lock_pte(cur, mm, page, folio, PTE_PRESENT, "try_to_unmap_one:pte")
        if got is None:
            continue
        table, pte = got
        anon_exclusive = folio.anon_exclusive
        if pte.dirty:
            folio.dirty = True
        swap_duplicate(si, slot)
        folio.anon_exclusive = False  # page_try_share_anon_rmap()
        set_pte_at(cur, mm, table, page, swp_entry_to_pte(slot, anon_exclusive), "try_to_unmap_one")
        page_remove_rmap(cur, folio, "try_to_unmap_one")
        folio_put_ref(cur, folio, "try_to_unmap_one")
        pte_unmap_unlock(cur, table)


def folio_referenced(cur: Current, folio: Folio) -> Gen[int]:
    """mm/rmap.c:folio_referenced(): count young PTEs mapping `folio`, clearing them."""
    referenced = 0
    for mm, page in rmap_candidates(cur, folio, PTE_PRESENT):
        got = yield from rmap_lock_pte(
            cur, mm, page, folio, PTE_PRESENT, "folio_referenced_one:pte"
        )
        if got is None:
            continue
        table, pte = got
        if pte.young:
            referenced += 1
            set_pte_at(cur, mm, table, page, pte._replace(young=False), "folio_referenced_one")
        pte_unmap_unlock(cur, table)
    return referenced


def remove_migration_ptes(cur: Current, src: Folio, dst: Folio) -> Gen[None]:
    """mm/migrate.c:remove_migration_pte() for each migration entry of `src`: map `dst`
    (writable iff the entry was writable and the VMA has VM_WRITE; AnonExclusive unless the
    entry was readable; a device-private `dst` gets a device-private entry)."""
    for mm, page in rmap_candidates(cur, src, PTE_MIGRATION):
        got = yield from rmap_lock_pte(
            cur, mm, page, src, PTE_MIGRATION, "remove_migration_pte:pte"
        )
        if got is None:
            continue
        table, pte = got
        flags = rmap_vma_flags(cur, mm, page)
        writable = pte.writable and bool(flags & VM_WRITE)
        folio_get_ref(cur, dst, "remove_migration_pte")
        page_add_anon_rmap(cur, dst, pte.writable or pte.exclusive, "remove_migration_pte")
        if dst.device:
            entry = make_device_private_pte(dst, writable)
        else:
            protnone = not flags & VM_ACCESS_FLAGS
            entry = mk_pte(dst, writable, pte.young, pte.dirty and dst.dirty, protnone)
        set_pte_at(cur, mm, table, page, entry, "remove_migration_pte")
        pte_unmap_unlock(cur, table)
