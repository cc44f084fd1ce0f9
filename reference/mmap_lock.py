"""``mm->mmap_lock``: the rwsem and its ``include/linux/mmap_lock.h`` API (v6.6).

With ``CONFIG_PER_VMA_LOCK=n`` this is the only lock a fault takes above the PTL: every fault
runs under ``mmap_lock`` for read, every address-space writer takes it for write.

**The rwsem** (MODEL.md §4.1): readers, one writer, FIFO waiters, writer-preferring.

=====================  =========================================================================
operation              behaviour
=====================  =========================================================================
down_read_trylock      succeeds iff no writer holds it **and no waiter is queued**
down_read              granted at once iff no writer and no waiter; else queued at the tail
down_write_trylock     succeeds iff nobody holds it and no waiter is queued
down_write             granted at once iff nobody holds it and no waiter; else queued
up_read / up_write     when the lock becomes free of the released side, it is handed to the
                       head of the queue: a writer alone (once no reader is left), or the run
                       of readers at the head
downgrade_write        the writer becomes a reader; the run of readers at the head is admitted
*_killable             a fatal signal while queued: leave the queue (the next waiters are
                       re-examined) and return -EINTR
=====================  =========================================================================

**Locking rules** checked here (rule ids of MODEL.md §4.2):

==========================  ====================================================================
rule                        when
==========================  ====================================================================
lock.release-unheld         ``mmap_read_unlock`` / ``mmap_write_unlock`` / ``mmap_write_downgrade``
                            by a task that does not hold the lock in that mode
lock.recursive              any acquisition by a task that already holds ``mmap_lock``
lock.sleep-under-ptl        any blocking acquisition (``might_sleep()``) while holding a spinlock
==========================  ====================================================================

``mmap_assert_locked`` / ``mmap_assert_write_locked`` check that the *current task* holds the
lock (lockdep's ``lockdep_assert_held``); callers say which rule a failure breaks.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from reference.primitives import (
    Current,
    Gen,
    Lock,
    holds,
    lock_acquired,
    lock_released,
    might_sleep,
    violate,
)
from reference.sched import Task

if TYPE_CHECKING:
    from reference.objects import Mm

EINTR = -errno.EINTR


class RwWaiter:
    __slots__ = ("cur", "granted", "write")

    def __init__(self, cur: Current, write: bool) -> None:
        self.cur = cur
        self.write = write
        self.granted = False


class RwSem(Lock):
    """A writer-preferring FIFO rwsem (see the module docstring)."""

    __slots__ = ("readers", "waiters", "writer")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.readers: list[Current] = []
        self.writer: Current | None = None
        self.waiters: list[RwWaiter] = []

    def holder_tids(self) -> tuple[int, ...]:
        if self.writer is not None:
            return (self.writer.tid,)
        return tuple(sorted({c.tid for c in self.readers}))

    def is_locked(self) -> bool:
        return self.writer is not None or bool(self.readers)


def _grant(sem: RwSem, w: RwWaiter) -> None:
    cur = w.cur
    w.granted = True
    if w.write:
        sem.writer = cur
        lock_acquired(cur, sem, "w", "down_write")
    else:
        sem.readers.append(cur)
        lock_acquired(cur, sem, "r", "down_read")
    cur.rt.wake(cur.task)


def _wake_waiters(sem: RwSem) -> None:
    """Hand the lock to the head of the queue if it can be granted."""
    waiters = sem.waiters
    if not waiters or sem.writer is not None:
        return
    if waiters[0].write:
        if not sem.readers:
            _grant(sem, waiters.pop(0))
        return
    while waiters and not waiters[0].write:
        _grant(sem, waiters.pop(0))


def _down(cur: Current, sem: RwSem, write: bool, killable: bool, primitive: str) -> Gen[int]:
    mode = "w" if write else "r"
    might_sleep(cur, primitive)
    free = sem.writer is None and not sem.waiters and (not write or not sem.readers)
    if free:
        if write:
            sem.writer = cur
        else:
            sem.readers.append(cur)
        lock_acquired(cur, sem, mode, primitive)  # reports a recursive acquisition
        return 0
    if holds(cur, sem):  # blocked behind itself: it will never be granted, so say it now
        violate(cur, "lock.recursive", primitive, f"{sem.name} acquired ({mode}) while held")
    w = RwWaiter(cur, write)
    sem.waiters.append(w)
    cur.contract.event(cur.tid, "wait", primitive, sem.name, mode)
    task: Task = cur.task
    while not w.granted:
        if killable and cur.killed:
            sem.waiters.remove(w)
            _wake_waiters(sem)
            return EINTR
        cur.killable = killable
        cur.rt.block(task, sem)
        yield f"{primitive}:wait"
        cur.killable = False
    return 0


def _trylock(cur: Current, sem: RwSem, write: bool, primitive: str) -> bool:
    mode = "w" if write else "r"
    if sem.writer is not None or sem.waiters or (write and sem.readers):
        cur.contract.event(cur.tid, "trylock_fail", primitive, sem.name, mode)
        return False
    if write:
        sem.writer = cur
    else:
        sem.readers.append(cur)
    lock_acquired(cur, sem, mode, primitive)
    return True


def up_read(cur: Current, sem: RwSem, primitive: str) -> None:
    if not lock_released(cur, sem, "r", primitive):
        return
    sem.readers.remove(cur)
    if not sem.readers:
        _wake_waiters(sem)


def up_write(cur: Current, sem: RwSem, primitive: str) -> None:
    if sem.writer is not cur:
        violate(cur, "lock.release-unheld", primitive, f"{sem.name} not write-held by task")
        return
    lock_released(cur, sem, "w", primitive)
    sem.writer = None
    _wake_waiters(sem)


def downgrade_write(cur: Current, sem: RwSem, primitive: str) -> None:
    if sem.writer is not cur:
        violate(cur, "lock.release-unheld", primitive, f"{sem.name} not write-held by task")
        return
    lock_released(cur, sem, "w", primitive)
    sem.writer = None
    sem.readers.append(cur)
    lock_acquired(cur, sem, "r", primitive)
    cur.contract.event(cur.tid, "downgrade", primitive, sem.name, "r")
    while sem.waiters and not sem.waiters[0].write:
        _grant(sem, sem.waiters.pop(0))


# ---------------------------------------------------------------------------------------------
# include/linux/mmap_lock.h (v6.6), CONFIG_PER_VMA_LOCK=n: no mm_lock_seq, no vma_end_write_all


def mmap_read_lock(cur: Current, mm: Mm) -> Gen[None]:
    """``mmap_read_lock()``: may sleep, not killable."""
    yield from _down(cur, mm.mmap_lock, False, False, "mmap_read_lock")


def mmap_read_lock_killable(cur: Current, mm: Mm) -> Gen[int]:
    """``mmap_read_lock_killable()``: 0, or -EINTR on a fatal signal while queued."""
    return (yield from _down(cur, mm.mmap_lock, False, True, "mmap_read_lock_killable"))


def mmap_read_trylock(cur: Current, mm: Mm) -> bool:
    return _trylock(cur, mm.mmap_lock, False, "mmap_read_trylock")


def mmap_read_unlock(cur: Current, mm: Mm) -> None:
    up_read(cur, mm.mmap_lock, "mmap_read_unlock")


def mmap_write_lock(cur: Current, mm: Mm) -> Gen[None]:
    yield from _down(cur, mm.mmap_lock, True, False, "mmap_write_lock")


def mmap_write_lock_killable(cur: Current, mm: Mm) -> Gen[int]:
    return (yield from _down(cur, mm.mmap_lock, True, True, "mmap_write_lock_killable"))


def mmap_write_unlock(cur: Current, mm: Mm) -> None:
    up_write(cur, mm.mmap_lock, "mmap_write_unlock")


def mmap_write_downgrade(cur: Current, mm: Mm) -> None:
    downgrade_write(cur, mm.mmap_lock, "mmap_write_downgrade")


def mmap_assert_locked(cur: Current, mm: Mm, rule: str, function: str) -> bool:
    """``mmap_assert_locked()`` for the current task; a failure is recorded under `rule`."""
    if holds(cur, mm.mmap_lock):
        return True
    violate(cur, rule, function, f"{mm.mmap_lock.name} not held")
    return False


def mmap_assert_write_locked(cur: Current, mm: Mm, rule: str, function: str) -> bool:
    """``mmap_assert_write_locked()`` for the current task."""
    if holds(cur, mm.mmap_lock, "w"):
        return True
    violate(cur, rule, function, f"{mm.mmap_lock.name} not write-held")
    return False
