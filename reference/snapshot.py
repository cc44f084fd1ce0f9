"""The observable state: the final memory image, serial-lockstep snapshots, and the checks
made at quiescence (MODEL.md §3, §5; `fuzz.record` for the formats).

**Snapshots** (serial strategy only) number folios by first appearance, scanning mm 0..3
page by page (present, migration and device-private PTEs), then the swap cache by slot. The
swap part lists every slot that is not free as ``(slot, count, has_cache)`` in slot order. The
lock part lists, sorted, ``"<lock>:<mode>:t<tid>"`` for every lock a task holds and
``"<folio>:locked"`` / ``"<folio>:writeback"`` for every live folio in that state (empty when
nothing is held).

**At quiescence** (the end of a run that finished, after the daemons drained):

==========================  ====================================================================
rule                        check
==========================  ====================================================================
lock.held-at-quiescence     no task holds a lock; no rwsem or spinlock is held
folio.locked-at-quiescence  no live folio is locked or under writeback
folio.refcount              refcount == #present/device PTEs mapping it + 1 if in the swap cache,
                            and no task still holds a reference
folio.mapcount              mapcount == #present/device PTEs mapping it
swap.count                  count == #swap PTEs naming the slot; has_cache ⇔ a cached folio
pte.outside-vma             every non-none PTE lies inside a VMA of its mm
==========================  ====================================================================
"""

from __future__ import annotations

from fuzz.record import MmSnap, PageImage, PteSnap, Snapshot, VmaSnap, interned, interned_rows
from reference.objects import (
    PTE_DEVICE_PRIVATE,
    PTE_MIGRATION,
    PTE_NONE,
    PTE_PRESENT,
    PTE_SWAP,
    PTRS_PER_TABLE,
    VM_ACCESS_FLAGS,
    VM_GROWSDOWN,
    VM_UFFD_MISSING,
    Folio,
    Kernel,
    Mm,
    Pte,
)
from reference.primitives import Current, Lock


def pte_at(mm: Mm, page: int) -> Pte | None:
    table = mm.pmd[page // PTRS_PER_TABLE]
    return None if table is None else table.ptes[page % PTRS_PER_TABLE]


def pte_data(k: Kernel, pte: Pte) -> int:
    """The data a read through `pte` would return."""
    if pte.kind == PTE_SWAP:
        cached = k.swap.cache.get(pte.slot)
        return cached.data if cached is not None else k.swap.slots[pte.slot].data
    return pte.folio.data if pte.folio is not None else 0


def _vma_covering(mm: Mm, page: int) -> int | None:
    for v in mm.vmas:
        if v.vm_start <= page < v.vm_end:
            return v.vm_flags
    return None


def memory_image(k: Kernel) -> tuple[tuple[PageImage, ...] | None, ...]:
    """`RunRecord.image`: per mm (None if absent) and per page."""
    out: list[tuple[PageImage, ...] | None] = []
    for mm in k.mms:
        if mm is None or not mm.visible:
            out.append(None)
            continue
        pages = []
        for page in range(k.nr_pages):
            flags = _vma_covering(mm, page)
            pte = pte_at(mm, page)
            populated = pte is not None and pte.kind != PTE_NONE
            value = pte_data(k, pte) if populated and pte is not None else 0
            pages.append(
                interned(
                    PageImage,
                    (
                        flags is not None,
                        (flags or 0) & VM_ACCESS_FLAGS,
                        bool((flags or 0) & VM_UFFD_MISSING),
                        populated,
                        value,
                    ),
                )
            )
        out.append(tuple(pages))
    return tuple(out)


_NO_PTE = PteSnap(PTE_NONE, 0, False, -1)


def take_snapshot(k: Kernel, after: int, tasks: list[Current]) -> Snapshot:
    # Folios are numbered as the scan meets them, then the swap cache's in slot order.
    ids: dict[int, int] = {}
    known = interned_rows(PteSnap)
    mms: list[MmSnap | None] = []
    for mm in k.mms:
        if mm is None or not mm.visible:
            mms.append(None)
            continue
        vmas = tuple(
            interned(
                VmaSnap,
                (
                    v.vm_start,
                    v.vm_end,
                    v.vm_flags & VM_ACCESS_FLAGS,
                    bool(v.vm_flags & VM_UFFD_MISSING),
                    bool(v.vm_flags & VM_GROWSDOWN),
                    v.anon_vma is not None,
                ),
            )
            for v in mm.vmas
        )
        ptes = []
        pmd = mm.pmd
        for page in range(k.nr_pages):
            table = pmd[page // PTRS_PER_TABLE]  # pte_at(), inlined: this is a hot loop
            pte = None if table is None else table.ptes[page % PTRS_PER_TABLE]
            if pte is None or pte.kind == PTE_NONE:
                ptes.append(_NO_PTE)
                continue
            folio = pte.folio
            if folio is not None:
                ref = ids.get(folio.id)
                if ref is None:
                    ref = ids[folio.id] = len(ids)
            else:
                ref = -1
            if pte.kind == PTE_SWAP:
                ref = pte.slot
            row = (pte.kind, pte_data(k, pte), pte.writable, ref)
            ptes.append(known.get(row) or interned(PteSnap, row))
        mms.append(MmSnap(vmas, tuple(ptes)))
    cache = k.swap.cache
    for slot in sorted(cache):
        fid = cache[slot].id
        if fid not in ids:
            ids[fid] = len(ids)
    live = k.folios
    folios = tuple(
        [(f.refcount, f.mapcount) if (f := live.get(fid)) is not None else (0, 0) for fid in ids]
    )
    swap = tuple(
        [(i, s.count, s.has_cache) for i, s in enumerate(k.swap.slots) if s.count or s.has_cache]
    )
    return Snapshot(after, tuple(mms), folios, swap, held_locks(k, tasks))


def held_locks(k: Kernel, tasks: list[Current]) -> tuple[str, ...]:
    out = [f"{lk.name}:{mode}:t{c.tid}" for c in tasks for lk, mode in c.held]
    for f in k.folios.values():
        if f.locked:
            out.append(f"{f.name}:locked")
        if f.writeback:
            out.append(f"{f.name}:writeback")
    return tuple(sorted(out))


# ---------------------------------------------------------------------------------------------
# Quiescence


def check_quiescence(k: Kernel, tasks: list[Current], cur: Current) -> None:
    """The end-of-run checks of the module docstring; violations are charged to `cur`."""
    _check_locks(k, tasks, cur)
    mapped: dict[int, int] = {}
    swapped = [0] * len(k.swap.slots)
    for mm in k.mms:
        if mm is None:
            continue
        for page in range(k.nr_pages):
            pte = pte_at(mm, page)
            if pte is None or pte.kind == PTE_NONE:
                continue
            if _vma_covering(mm, page) is None:
                cur.contract.violate(
                    cur.tid, "pte.outside-vma", "quiescence", f"mm{mm.id} page {page}"
                )
            if pte.kind == PTE_SWAP:
                swapped[pte.slot] += 1
            elif pte.folio is not None and pte.kind in (PTE_PRESENT, PTE_DEVICE_PRIVATE):
                mapped[pte.folio.id] = mapped.get(pte.folio.id, 0) + 1
            elif pte.kind == PTE_MIGRATION:
                cur.contract.violate(
                    cur.tid,
                    "folio.locked-at-quiescence",
                    "quiescence",
                    f"mm{mm.id} page {page}: migration entry left",
                )
    for f in k.folios.values():
        _check_folio(cur, f, mapped.get(f.id, 0))
    for i, s in enumerate(k.swap.slots):
        cached = i in k.swap.cache
        if s.count != swapped[i] or s.has_cache != cached:
            cur.contract.violate(
                cur.tid,
                "swap.count",
                "quiescence",
                f"slot {i}: count {s.count} has_cache {s.has_cache}, "
                f"{swapped[i]} swap PTEs, cached {cached}",
            )


def _check_locks(k: Kernel, tasks: list[Current], cur: Current) -> None:
    for c in tasks:
        if c.held:
            names = ", ".join(f"{lk.name}:{m}" for lk, m in c.held)
            cur.contract.violate(c.tid, "lock.held-at-quiescence", "quiescence", names)
    locks: list[Lock] = []
    for mm in k.mms:
        if mm is None:
            continue
        locks.append(mm.mmap_lock)
        locks.append(mm.page_table_lock)
        locks.extend(t.ptl for t in mm.pmd if t is not None)
    for lk in locks:
        if lk.holder_tids():
            cur.contract.violate(cur.tid, "lock.held-at-quiescence", "quiescence", lk.name)


def _check_folio(cur: Current, f: Folio, nmapped: int) -> None:
    expect = nmapped + (1 if f.swapcache >= 0 else 0)
    if f.locked or f.writeback:
        cur.contract.violate(cur.tid, "folio.locked-at-quiescence", "quiescence", f.name)
    if f.refcount != expect or f.refs:
        cur.contract.violate(
            cur.tid,
            "folio.refcount",
            "quiescence",
            f"{f.name} refcount {f.refcount}, expected {expect}, held {f.refs}",
        )
    if f.mapcount != nmapped:
        cur.contract.violate(
            cur.tid,
            "folio.mapcount",
            "quiescence",
            f"{f.name} mapcount {f.mapcount}, expected {nmapped}",
        )
