"""Page tables: PMD slots, PTE tables, their PTLs, and PTE reads and writes.

One PTE table per ``PTRS_PER_TABLE`` pages; the PMD slot of a table is empty or points at it
(MODEL.md §1). ``pte_alloc`` installs a table under ``mm->page_table_lock`` (``pmd_install``);
``free_pte_range`` (from ``free_pgtables``) empties the slot and poisons the table.

**Rules** (MODEL.md §4.2):

===========================  ===================================================================
rule                         when
===========================  ===================================================================
pte.unlocked-write           `set_pte_at` by a task that does not hold the table's PTL
pte.table-use-after-free     any access through a freed table; stops the run
pte.outside-vma              a non-none PTE installed where no VMA of the mm covers the page
pte.writable-shared          a writable present PTE installed for a folio whose page is not
                             PageAnonExclusive (I12; reference-only rule, MODEL.md §9)
===========================  ===================================================================

Hardware accessed/dirty updates by the user access (`pte_hw_access`) are the one exception to
``pte.unlocked-write``, as on x86.
"""

from __future__ import annotations

from reference.objects import (
    PTE_NONE,
    PTE_PRESENT,
    PTRS_PER_TABLE,
    Mm,
    PageTable,
    Pte,
)
from reference.primitives import (
    Current,
    Gen,
    holds,
    might_sleep,
    spin_lock,
    spin_unlock,
    violate,
)


def check_table(cur: Current, table: PageTable, function: str) -> None:
    if table.freed:
        violate(cur, "pte.table-use-after-free", function, f"{table.ptl.name} table freed", True)


def pte_lookup(mm: Mm, page: int) -> Pte | None:
    """The PTE of `page` read without any lock (None: no table)."""
    table = mm.pmd[page // PTRS_PER_TABLE]
    return None if table is None else table.ptes[page % PTRS_PER_TABLE]


def pte_offset_map_lock(cur: Current, mm: Mm, page: int) -> Gen[PageTable | None]:
    """``pte_offset_map_lock()``: the table of `page` with its PTL held, or None (pmd none).

    After the PTL is taken the PMD is re-checked, as ``__pte_offset_map_lock`` does.
    """
    t = page // PTRS_PER_TABLE
    while True:
        table = mm.pmd[t]
        if table is None:
            return None
        yield from spin_lock(cur, table.ptl)
        if mm.pmd[t] is table:
            check_table(cur, table, "pte_offset_map_lock")
            return table
        spin_unlock(cur, table.ptl)


def pte_unmap_unlock(cur: Current, table: PageTable) -> None:
    spin_unlock(cur, table.ptl)


def ptep_get(cur: Current, table: PageTable, page: int) -> Pte:
    check_table(cur, table, "ptep_get")
    return table.ptes[page % PTRS_PER_TABLE]


def set_pte_at(cur: Current, mm: Mm, table: PageTable, page: int, pte: Pte, function: str) -> None:
    """Write a PTE; the caller must hold the table's PTL."""
    check_table(cur, table, function)
    if not holds(cur, table.ptl, "spin"):
        violate(
            cur, "pte.unlocked-write", function, f"page {page} written without {table.ptl.name}"
        )
    if pte.kind != PTE_NONE and not _covered(mm, page):
        violate(cur, "pte.outside-vma", function, f"mm{mm.id} page {page} has no VMA")
    folio = pte.folio
    if pte.writable and pte.kind == PTE_PRESENT and folio is not None and not folio.anon_exclusive:
        # I12: a writable anonymous PTE implies PageAnonExclusive.
        violate(cur, "pte.writable-shared", function, f"mm{mm.id} page {page} writable, shared")
    table.ptes[page % PTRS_PER_TABLE] = pte


def _covered(mm: Mm, page: int) -> bool:
    """A VMA of the tree, or one munmap detached but has not yet unlinked, covers `page`."""
    return any(v.vm_start <= page < v.vm_end for v in mm.vmas) or any(
        v.vm_start <= page < v.vm_end for v in mm.detached
    )


def pte_hw_access(table: PageTable, page: int, pte: Pte) -> None:
    """The MMU sets accessed/dirty bits of a present PTE (no lock, as hardware does)."""
    table.ptes[page % PTRS_PER_TABLE] = pte


def pte_alloc(cur: Current, mm: Mm, page: int) -> Gen[None]:
    """``pte_alloc()`` → ``__pte_alloc`` → ``pmd_install`` (mm/memory.c, v6.6)."""
    t = page // PTRS_PER_TABLE
    if mm.pmd[t] is not None:
        return
    might_sleep(cur, "__pte_alloc")
    yield "__pte_alloc:pte_alloc_one"
    new = PageTable(mm.id, t)
    yield from spin_lock(cur, mm.page_table_lock)
    if mm.pmd[t] is None:  # Has another populated it?
        mm.pmd[t] = new
    spin_unlock(cur, mm.page_table_lock)


def free_pte_range(cur: Current, mm: Mm, t: int) -> None:
    """Free table `t` (``free_pte_range``): its PTEs must all be none; poison it."""
    table = mm.pmd[t]
    if table is None:
        return
    for i, pte in enumerate(table.ptes):
        if pte.kind != PTE_NONE:
            violate(
                cur,
                "pte.outside-vma",
                "free_pgtables",
                f"mm{mm.id} page {t * PTRS_PER_TABLE + i} not none when its table is freed",
            )
    mm.pmd[t] = None
    table.freed = True
