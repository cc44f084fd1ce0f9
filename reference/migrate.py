"""Page migration: the ``move_pages`` operation, ``migrate_pages`` for one folio, and the fault
side's ``migration_entry_wait`` (mm/migrate.c, research §5, v6.6).

The migrator takes neither ``mmap_lock`` (after isolating the folio) nor any VMA lock: it
works through the folio lock, rmap walks and the PTL. While migration entries exist the source
folio is locked and holds the migrator's isolation reference, so a waiter needs no reference
(I13a, ``ffa65753c431``); the move succeeds only if the source's refcount is exactly the
expected one (I13b: 1, or 2 in the swap cache), and every failed check is recorded as a
`MigrationFailure` naming the extra holders.

``migrate_pages(MIGRATE_SYNC)`` for one folio (``migrate_pages_sync``): one
``MIGRATE_ASYNC`` batch of 3 passes (trylock only; a folio under writeback is deferred), then
one ``MIGRATE_SYNC`` batch of 7 passes (``folio_lock`` and writeback waits may sleep). A batch
makes up to N unmap passes, then up to N move passes with the source left locked and unmapped
between them, then undoes (``remove_migration_ptes(src, src)``). A yield point precedes every
pass.
"""

from __future__ import annotations

import errno

from fuzz.record import MigrationFailure
from reference.folio import (
    folio_assert_locked,
    folio_get,
    folio_get_ref,
    folio_isolate_lru,
    folio_lock,
    folio_put,
    folio_put_ref,
    folio_putback_lru,
    folio_trylock,
    folio_unlock,
    folio_wait_writeback,
    migration_entry_queue,
    migration_entry_wait_on_locked,
)
from reference.mmap_lock import mmap_read_lock, mmap_read_unlock
from reference.objects import PTE_MIGRATION, PTE_NONE, PTE_PRESENT, PTE_ZERO, Folio, Mm
from reference.pgtable import pte_offset_map_lock, pte_unmap_unlock, ptep_get
from reference.primitives import Current, Gen, might_sleep, spin_unlock
from reference.rmap import remove_migration_ptes, try_to_migrate
from reference.vma import vma_lookup
from reference.vmf import Vmf

EAGAIN, EBUSY, EACCES = -errno.EAGAIN, -errno.EBUSY, -errno.EACCES
EFAULT, ENOENT = -errno.EFAULT, -errno.ENOENT

MIGRATEPAGE_SUCCESS = 0
MIGRATEPAGE_UNMAP = 1
NR_MAX_MIGRATE_ASYNC_RETRY = 3
NR_MAX_MIGRATE_SYNC_RETRY = 7


def migration_entry_wait(vmf: Vmf) -> Gen[None]:
    """mm/migrate.c:migration_entry_wait() (v6.6): FL held throughout, no folio reference;
    the PTL is held only until the wait entry is queued."""
    cur = vmf.cur
    table = yield from pte_offset_map_lock(cur, vmf.mm, vmf.page)
    if table is None:
        return
    pte = ptep_get(cur, table, vmf.page)
    if pte.kind != PTE_MIGRATION or pte.folio is None:
        pte_unmap_unlock(cur, table)
        return
    folio = pte.folio  # valid only while the PTL is held
    queued = migration_entry_queue(cur, folio)
    spin_unlock(cur, table.ptl)
    yield from migration_entry_wait_on_locked(cur, folio, queued)


def do_pages_move(cur: Current, mm: Mm, page: int) -> Gen[int]:
    """mm/migrate.c:do_pages_move() for one page to another node: 0 migrated, 1 not
    migrated, or -EFAULT/-ENOENT/-EACCES/-EBUSY from ``add_page_for_migration``."""
    yield from mmap_read_lock(cur, mm)
    err = yield from add_page_for_migration(cur, mm, page)
    mmap_read_unlock(cur, mm)
    if isinstance(err, int):
        return err
    return (yield from migrate_pages(cur, err))


def add_page_for_migration(cur: Current, mm: Mm, page: int) -> Gen[int | Folio]:
    """Look the page up (``follow_page(FOLL_GET | FOLL_DUMP)``) and isolate it; caller holds
    mmap_lock. mm/migrate.c:add_page_for_migration() (v6.6)."""
    if vma_lookup(mm, page) is None:
        return EFAULT
    table = yield from pte_offset_map_lock(cur, mm, page)
    if table is None:
        return EFAULT  # no_page_table() with FOLL_DUMP on an anonymous VMA
    pte = ptep_get(cur, table, page)
    folio = pte.folio if pte.kind == PTE_PRESENT else None
    if folio is not None:
        folio_get(cur, folio, "follow_page")
    pte_unmap_unlock(cur, table)
    if pte.kind in (PTE_NONE, PTE_ZERO):
        return EFAULT  # FOLL_DUMP: a hole, or the zero page ("ignore special pages")
    if folio is None:
        return ENOENT  # a swap, migration or device-private entry
    err: int | Folio = folio
    if folio.mapcount > 1:
        err = EACCES
    elif not folio_isolate_lru(cur, folio, "add_page_for_migration"):
        err = EBUSY
    folio_put(cur, folio, "add_page_for_migration", "follow_page")
    return err


def migrate_pages(cur: Current, src: Folio) -> Gen[int]:
    """``migrate_pages(MIGRATE_SYNC)`` of one isolated folio: 0, or 1 if not migrated (the
    folio is then put back on the LRU)."""
    rc = yield from migrate_pages_batch(cur, src, False, NR_MAX_MIGRATE_ASYNC_RETRY)
    if rc != MIGRATEPAGE_SUCCESS:
        rc = yield from migrate_pages_batch(cur, src, True, NR_MAX_MIGRATE_SYNC_RETRY)
    if rc != MIGRATEPAGE_SUCCESS:
        folio_putback_lru(cur, src, "putback_movable_pages")
        return 1
    return 0


def migrate_pages_batch(cur: Current, src: Folio, sync: bool, nr_pass: int) -> Gen[int]:
    """mm/migrate.c:migrate_pages_batch() for one folio; -EAGAIN/-EBUSY if not migrated."""
    dst: Folio | None = None
    rc = EAGAIN
    for _ in range(nr_pass):
        yield "migrate_pages_batch:pass"
        rc, dst = yield from migrate_folio_unmap(cur, src, sync)
        if rc != EAGAIN:
            break
    if rc != MIGRATEPAGE_UNMAP or dst is None:
        return rc
    for _ in range(nr_pass):
        yield "migrate_pages_batch:pass"
        rc = yield from migrate_folio_move(cur, src, dst)
        if rc != EAGAIN:
            return rc
    yield from remove_migration_ptes(cur, src, src)  # migrate_folio_undo_src()
    folio_unlock(cur, src)
    folio_unlock(cur, dst)  # migrate_folio_undo_dst()
    folio_put(cur, dst, "migrate_folio_undo_dst")
    return rc


def migrate_folio_unmap(cur: Current, src: Folio, sync: bool) -> Gen[tuple[int, Folio | None]]:
    """mm/migrate.c:migrate_folio_unmap() (v6.6): lock `src`, replace its PTEs with migration
    entries; UNMAP with both folios locked, or an error with neither."""
    if src.refcount == 1:  # Folio was freed from under us. So we are done.
        folio_put(cur, src, "migrate_folio_done")
        return MIGRATEPAGE_SUCCESS, None
    might_sleep(cur, "alloc_migration_target")
    yield "migrate_folio_unmap:get_new_folio"
    dst = cur.kernel.alloc_folio(0)
    dst.refs.append((cur.tid, "alloc_migration_target"))
    if not folio_trylock(cur, src):
        if not sync:
            folio_put(cur, dst, "migrate_folio_unmap")
            return EAGAIN, None
        yield from folio_lock(cur, src)
    if src.writeback:
        if not sync:
            folio_unlock(cur, src)
            folio_put(cur, dst, "migrate_folio_unmap")
            return EBUSY, None
        yield from folio_wait_writeback(cur, src)
    folio_trylock(cur, dst)
    if src.mapcount:
        yield from try_to_migrate(cur, src)
    if not src.mapcount:
        return MIGRATEPAGE_UNMAP, dst
    yield from remove_migration_ptes(cur, src, src)
    folio_unlock(cur, dst)
    folio_put(cur, dst, "migrate_folio_unmap")
    folio_unlock(cur, src)
    return EAGAIN, None


def folio_expected_refs(src: Folio) -> int:
    """mm/migrate.c:folio_expected_refs(): 1, plus 1 for the swap cache's reference."""
    return 1 + (1 if src.swapcache >= 0 else 0)


def migrate_folio_move(cur: Current, src: Folio, dst: Folio) -> Gen[int]:
    """mm/migrate.c:migrate_folio_move() (v6.6): the refcount check, copy, remap, unlock.
    ``move_to_new_folio`` wants both folios locked."""
    folio_assert_locked(cur, src, "move_to_new_folio")
    folio_assert_locked(cur, dst, "move_to_new_folio")
    expected = folio_expected_refs(src)
    if src.refcount != expected:  # folio_migrate_mapping()
        record_migration_failure(cur, src, expected)
        return EAGAIN
    if src.swapcache >= 0:  # the swap cache now points at dst
        slot = src.swapcache
        cur.kernel.swap.cache[slot] = dst
        dst.swapcache, src.swapcache = slot, -1
        folio_get_ref(cur, dst, "folio_migrate_mapping")
        folio_put_ref(cur, src, "folio_migrate_mapping")
    dst.data, dst.dirty, dst.uptodate = src.data, src.dirty, src.uptodate  # folio_migrate_copy
    dst.lru = True  # folio_add_lru()
    yield from remove_migration_ptes(cur, src, dst)
    folio_unlock(cur, dst)
    folio_put(cur, dst, "migrate_folio_move")
    folio_unlock(cur, src)
    folio_put(cur, src, "migrate_folio_done")  # the isolation reference: src is freed
    return MIGRATEPAGE_SUCCESS


def record_migration_failure(cur: Current, src: Folio, expected: int) -> None:
    """Name every reference beyond the migrator's isolation reference."""
    rt = cur.rt
    holders = []
    mine = (cur.tid, "folio_isolate_lru")
    skipped = False
    for tid, site in src.refs:
        if (tid, site) == mine and not skipped:
            skipped = True
            continue
        task = rt.tasks[tid] if 0 <= tid < len(rt.tasks) else None
        asleep = task is not None and task.wait is src
        holders.append((tid, site, asleep))
    mf = MigrationFailure(rt.step, cur.tid, src.name, expected, src.refcount, tuple(holders))
    cur.kernel.migration_failures.append(mf)
