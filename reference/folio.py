"""Folio references, mapcounts, ``PG_locked``, writeback and LRU isolation (the folio half of
the contract layer).

**References** (MODEL.md §3). A reference is either *structural* (a present or device-private
PTE, the swap cache) or *held by a task* (tagged ``(tid, site)``: a new folio before it is
mapped, ``do_wp_page``'s ``folio_get``, a swap-cache lookup, ``follow_page``, isolation from the
LRU, the ``mmu_gather`` batch). Transfers between the two kinds are explicit
(`folio_ref_to_map`, `folio_ref_from_map`) so that a failed migration can name every extra
holder and the contract can see whether a migration waiter holds one.

**Rules** (MODEL.md §4.2):

============================  ==================================================================
rule                          when
============================  ==================================================================
folio.use-after-free          any operation below on a freed (poisoned) folio; stops the run
folio.refcount                a put below zero
folio.mapcount                ``page_remove_rmap`` below zero
folio.unlock-unheld           ``folio_unlock`` of a folio not locked, or locked by another task
folio.not-locked              a function the kernel guards with ``VM_BUG_ON_FOLIO(!locked)`` ran on
                              an unlocked folio (swap cache, swap-in I/O, migration's move)
lock.sleep-under-ptl          ``folio_lock`` / ``folio_wait_*`` sleeping with a spinlock held
migration.waiter-holds-ref    ``migration_entry_wait_on_locked`` by a task holding a reference
============================  ==================================================================

``PG_locked`` (MODEL.md §4.1): ``folio_unlock`` wakes every waiter and each re-tries; a folio
locked for I/O is owned by the I/O (`IO_OWNER`) and unlocked by its completion.
"""

from __future__ import annotations

import errno

from reference.objects import IO_OWNER, Folio, FolioWait
from reference.primitives import Current, Gen, might_sleep, violate

EINTR = -errno.EINTR


def check_folio(cur: Current, folio: Folio, function: str) -> None:
    """KASAN: `folio` must not have been freed."""
    if folio.freed:
        violate(cur, "folio.use-after-free", function, f"{folio.name} used after free", True)


# ---------------------------------------------------------------------------------------------
# References


def folio_get(cur: Current, folio: Folio, site: str) -> None:
    """A task takes a reference (``folio_get`` / ``get_page`` / ``folio_try_get``)."""
    check_folio(cur, folio, site)
    folio.refcount += 1
    folio.refs.append((cur.tid, site))


def _untag(cur: Current, folio: Folio, site: str | None = None) -> None:
    refs = folio.refs
    for i in range(len(refs) - 1, -1, -1):
        if refs[i][0] == cur.tid and (site is None or refs[i][1] == site):
            del refs[i]
            return


def folio_put(cur: Current, folio: Folio, function: str, site: str | None = None) -> None:
    """A task drops one of its references (the one taken at `site`, else its latest); the
    last reference frees the folio."""
    _untag(cur, folio, site)
    folio_put_ref(cur, folio, function)


def folio_ref_to_map(cur: Current, folio: Folio) -> None:
    """The task's reference becomes a mapping's (or the swap cache's): no count change."""
    _untag(cur, folio)


def folio_ref_from_map(cur: Current, folio: Folio, site: str) -> None:
    """A mapping's reference becomes the task's (e.g. into the mmu_gather batch)."""
    folio.refs.append((cur.tid, site))


def folio_get_ref(cur: Current, folio: Folio, function: str) -> None:
    """A structural reference is added (a new PTE, the swap cache)."""
    check_folio(cur, folio, function)
    folio.refcount += 1


def folio_put_ref(cur: Current, folio: Folio, function: str) -> None:
    """A structural reference is dropped; the last reference frees the folio."""
    check_folio(cur, folio, function)
    folio.refcount -= 1
    if folio.refcount > 0:
        return
    if folio.refcount < 0:
        violate(cur, "folio.refcount", function, f"{folio.name} refcount below zero", True)
    free_folio(cur, folio, function)


def free_folio(cur: Current, folio: Folio, function: str) -> None:
    """The last reference is gone: poison the folio."""
    if folio.mapcount:
        violate(cur, "folio.mapcount", function, f"{folio.name} freed while mapped")
    if folio.locked:
        violate(cur, "folio.locked-at-quiescence", function, f"{folio.name} freed while locked")
    if folio.swapcache >= 0:
        violate(cur, "swap.count", function, f"{folio.name} freed while in the swap cache")
    folio.freed = True
    folio.lru = False
    cur.kernel.folios.pop(folio.id, None)


# ---------------------------------------------------------------------------------------------
# rmap (mapcount)


def page_add_anon_rmap(cur: Current, folio: Folio, exclusive: bool, function: str) -> None:
    """``page_add_anon_rmap`` / ``page_add_new_anon_rmap``: mapcount+1 (RMAP_EXCLUSIVE)."""
    check_folio(cur, folio, function)
    folio.mapcount += 1
    if exclusive:
        folio.anon_exclusive = True


def page_remove_rmap(cur: Current, folio: Folio, function: str) -> None:
    check_folio(cur, folio, function)
    folio.mapcount -= 1
    if folio.mapcount < 0:
        violate(cur, "folio.mapcount", function, f"{folio.name} mapcount below zero")
    if folio.mapcount == 0:
        folio.anon_exclusive = False


# ---------------------------------------------------------------------------------------------
# PG_locked


def folio_trylock(cur: Current, folio: Folio) -> bool:
    check_folio(cur, folio, "folio_trylock")
    if folio.locked:
        return False
    folio.locked = True
    folio.lock_owner = cur.tid
    cur.contract.event(cur.tid, "acquire", "folio_lock", folio.name, "x")
    return True


def _wait_bit(cur: Current, folio: Folio, site: str, killable: bool) -> Gen[bool]:
    """Queue on the folio's lock bit and sleep until woken; False if killed while asleep."""
    wait = FolioWait(cur)
    folio.waiters.append(wait)
    cur.contract.event(cur.tid, "wait", site.partition(":")[0], folio.name, "x")
    while not wait.woken:
        if killable and cur.killed:
            folio.waiters.remove(wait)
            return False
        cur.killable = killable
        cur.rt.block(cur.task, folio)
        yield site
        cur.killable = False
    return True


def folio_lock(cur: Current, folio: Folio) -> Gen[None]:
    """``folio_lock()``: sleeps until the lock is free, then takes it."""
    might_sleep(cur, "folio_lock")
    while not folio_trylock(cur, folio):
        yield from _wait_bit(cur, folio, "folio_lock:wait", False)


def folio_lock_killable(cur: Current, folio: Folio) -> Gen[int]:
    """``__folio_lock_killable()``: 0 with the folio locked, or -EINTR."""
    might_sleep(cur, "folio_lock_killable")
    while not folio_trylock(cur, folio):
        if cur.killed or not (yield from _wait_bit(cur, folio, "folio_lock:wait", True)):
            return EINTR
    return 0


def folio_assert_locked(cur: Current, folio: Folio, function: str) -> None:
    """``VM_BUG_ON_FOLIO(!folio_test_locked(folio), folio)`` at the head of `function` (any
    owner: the bit, not lockdep)."""
    if not folio.locked:
        violate(cur, "folio.not-locked", function, f"{folio.name} not locked")


def folio_unlock(cur: Current, folio: Folio) -> None:
    check_folio(cur, folio, "folio_unlock")
    if not folio.locked or folio.lock_owner not in (cur.tid, IO_OWNER):
        violate(cur, "folio.unlock-unheld", "folio_unlock", f"{folio.name} not locked by task")
        return
    cur.contract.event(cur.tid, "release", "folio_lock", folio.name, "x")
    folio_unlock_bit(cur, folio)


def folio_unlock_bit(cur: Current, folio: Folio) -> None:
    """Clear ``PG_locked`` and wake every waiter (``folio_wake_bit``)."""
    folio.locked = False
    folio.lock_owner = -1
    if folio.waiters:
        rt = cur.rt
        for w in folio.waiters:
            w.woken = True
            rt.wake(w.cur.task)
        folio.waiters.clear()


def folio_lock_for_io(cur: Current, folio: Folio) -> None:
    """Hand the caller's lock on `folio` to the I/O about to be submitted."""
    folio.lock_owner = IO_OWNER


def folio_wait_locked(cur: Current, folio: Folio, killable: bool) -> Gen[int]:
    """``folio_wait_locked(_killable)``: wait for ``PG_locked`` to clear without taking it."""
    check_folio(cur, folio, "folio_wait_locked")
    might_sleep(cur, "folio_wait_locked")
    while folio.locked:
        if not (yield from _wait_bit(cur, folio, "folio_wait_locked:wait", killable)):
            return EINTR
    return 0


def migration_entry_wait_on_locked(cur: Current, folio: Folio, queued: bool) -> Gen[None]:
    """mm/filemap.c:migration_entry_wait_on_locked() (v6.6), after the PTL is dropped.

    The caller queued on `folio`'s lock bit under the PTL (`queued` is False if the folio was
    already unlocked) and holds no reference: the waiter must not pin the folio (I13a).
    """
    if any(tid == cur.tid for tid, _ in folio.refs):
        violate(
            cur,
            "migration.waiter-holds-ref",
            "migration_entry_wait_on_locked",
            f"sleeping on {folio.name} while holding a reference to it",
        )
    if not queued:
        return
    wait = folio.waiters[-1]
    while not wait.woken:
        might_sleep(cur, "migration_entry_wait_on_locked")
        cur.rt.block(cur.task, folio)
        yield "migration_entry_wait_on_locked:io_schedule"


def migration_entry_queue(cur: Current, folio: Folio) -> bool:
    """The under-PTL half: queue a non-exclusive waiter if ``PG_locked`` is set."""
    if not folio.locked:
        return False
    folio.waiters.append(FolioWait(cur))
    cur.contract.event(cur.tid, "wait", "migration_entry_wait", folio.name, "x")
    return True


# ---------------------------------------------------------------------------------------------
# Writeback and the LRU


def folio_start_writeback(folio: Folio) -> None:
    folio.writeback = True
    folio.dirty = False


def folio_end_writeback(cur: Current, folio: Folio) -> None:
    folio.writeback = False
    if folio.wb_waiters:
        for w in folio.wb_waiters:
            w.woken = True
            cur.rt.wake(w.cur.task)
        folio.wb_waiters.clear()


def folio_wait_writeback(cur: Current, folio: Folio) -> Gen[None]:
    while folio.writeback:
        might_sleep(cur, "folio_wait_writeback")
        wait = FolioWait(cur)
        folio.wb_waiters.append(wait)
        while not wait.woken:
            cur.rt.block(cur.task, folio)
            yield "folio_wait_writeback:wait"


def folio_test_dirty(folio: Folio) -> bool:
    return folio.dirty


def folio_test_writeback(folio: Folio) -> bool:
    return folio.writeback


def folio_isolate_lru(cur: Current, folio: Folio, site: str) -> bool:
    """Take `folio` off the LRU with a reference (``folio_isolate_lru``)."""
    check_folio(cur, folio, site)
    if not folio.lru:
        return False
    folio.lru = False
    folio_get(cur, folio, "folio_isolate_lru")
    return True


def folio_putback_lru(cur: Current, folio: Folio, function: str) -> None:
    """Put an isolated folio back on the LRU and drop the isolation reference."""
    folio.lru = True
    folio_put(cur, folio, function)
