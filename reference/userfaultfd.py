"""userfaultfd, missing mode (fs/userfaultfd.c, mm/userfaultfd.c, v6.6; research §6).

One context per mm, no ``UFFD_FEATURE_EVENT_*`` (MODEL.md §1). ``handle_userfault`` queues
the fault on the context, re-checks the PTE locklessly, releases the fault lock and sleeps
(interruptibly) until ``UFFDIO_COPY``/``UFFDIO_WAKE``/unregister wakes it or a fatal signal
arrives, then returns RETRY: the x86 loop retakes ``mmap_lock`` and refaults. ``UFFDIO_COPY``
(``mfill_atomic`` under ``mmap_read_lock``) installs the page only if the PTE is still none
under the PTL (else -EEXIST) and wakes the waiters of that page on success.

The monitor daemon (when the case names one) reads pending faults oldest first (by mm id,
then queue order) and answers each with ``UFFDIO_COPY(0xF000 | mm << 8 | page)``, or with
``UFFDIO_WAKE`` if the copy finds the page already populated.

===============  ===============================================================================
rule             when
===============  ===============================================================================
uffd.fault-lock  `handle_userfault` entered without the fault lock (``assert_fault_locked``, I5)
===============  ===============================================================================
"""

from __future__ import annotations

import errno

from fuzz.case import Op, OpKind
from fuzz.record import OpRecord
from reference.folio import folio_put, folio_ref_to_map, page_add_anon_rmap
from reference.mmap_lock import (
    mmap_read_lock,
    mmap_read_unlock,
    mmap_write_lock,
    mmap_write_unlock,
)
from reference.objects import (
    PTE_NONE,
    VM_ACCESS_FLAGS,
    VM_UFFD_MISSING,
    VM_WRITE,
    Mm,
    UffdCtx,
    UffdWait,
    Vma,
    mk_pte,
)
from reference.pgtable import (
    pte_alloc,
    pte_lookup,
    pte_offset_map_lock,
    pte_unmap_unlock,
    ptep_get,
    set_pte_at,
)
from reference.primitives import Current, Gen, might_sleep
from reference.vma import (
    anon_vma_prepare,
    find_vma,
    split_vma,
    vma_assert_write_locked,
    vma_lookup,
    vma_merge,
    vma_prev_of,
)
from reference.vmf import (
    FAULT_FLAG_ALLOW_RETRY,
    FAULT_FLAG_RETRY_NOWAIT,
    VM_FAULT_RETRY,
    VM_FAULT_SIGBUS,
    Vmf,
    assert_fault_locked,
    release_fault_lock,
)

EINVAL, ENOENT, EEXIST = -errno.EINVAL, -errno.ENOENT, -errno.EEXIST


def handle_userfault(vmf: Vmf) -> Gen[int]:
    """fs/userfaultfd.c:handle_userfault() (v6.6), reason VM_UFFD_MISSING. Entered with FL
    held and the PTL not held; returns RETRY with FL released, or SIGBUS with FL held."""
    cur = vmf.cur
    assert_fault_locked(vmf, "uffd.fault-lock", "handle_userfault")
    ctx = vmf.vma.uffd_ctx
    if ctx is None or not vmf.flags & FAULT_FLAG_ALLOW_RETRY:
        return VM_FAULT_SIGBUS
    if vmf.flags & FAULT_FLAG_RETRY_NOWAIT:
        return VM_FAULT_RETRY
    uwq = UffdWait(ctx, cur, vmf.page)
    ctx.waiters.append(uwq)  # visible to read() of the uffd from now on
    yield "handle_userfault:userfaultfd_must_wait"
    pte = pte_lookup(vmf.mm, vmf.page)  # userfaultfd_must_wait(): lockless walk
    must_wait = pte is None or pte.kind == PTE_NONE
    release_fault_lock(vmf)  # vmf->vma is not touched after this point
    if must_wait:
        cur.kernel.uffd_poll.wake_up(cur.rt)  # wake_up_poll(&ctx->fd_wqh, EPOLLIN)
        while not uwq.waken and not cur.killed:
            might_sleep(cur, "handle_userfault")
            cur.killable = True  # TASK_INTERRUPTIBLE
            cur.rt.block(cur.task, uwq)
            yield "handle_userfault:schedule"
            cur.killable = False
    if uwq in ctx.waiters:
        ctx.waiters.remove(uwq)
    return VM_FAULT_RETRY


def wake_userfault(cur: Current, ctx: UffdCtx, start: int, end: int) -> None:
    """fs/userfaultfd.c:wake_userfault(): wake (and dequeue) the waiters in ``[start, end)``."""
    rt = cur.rt
    for uwq in [w for w in ctx.waiters if start <= w.page < end]:
        uwq.waken = True
        ctx.waiters.remove(uwq)
        rt.wake(uwq.cur.task)


# ---------------------------------------------------------------------------------------------
# UFFDIO_REGISTER / UFFDIO_UNREGISTER


def _next_in_range(cur: Current, mm: Mm, start: int, end: int) -> Vma | None:
    v = find_vma(cur, mm, start)
    return v if v is not None and v.vm_start < end else None


def userfaultfd_register(cur: Current, mm: Mm, start: int, npages: int) -> Gen[int]:
    """fs/userfaultfd.c:userfaultfd_register() (v6.6), missing mode."""
    return (yield from _register(cur, mm, start, start + npages, True))


def userfaultfd_unregister(cur: Current, mm: Mm, start: int, npages: int) -> Gen[int]:
    """fs/userfaultfd.c:userfaultfd_unregister() (v6.6): waiters in the range are woken."""
    return (yield from _register(cur, mm, start, start + npages, False))


def _register(cur: Current, mm: Mm, start: int, end: int, register: bool) -> Gen[int]:
    yield from mmap_write_lock(cur, mm)
    vma = _next_in_range(cur, mm, start, end)
    if vma is None:
        mmap_write_unlock(cur, mm)
        return EINVAL
    ctx = mm.uffd
    prev = vma if vma.vm_start < start else vma_prev_of(cur, mm, start)
    while vma is not None:
        if register:
            done = vma.uffd_ctx is ctx and vma.vm_flags & VM_UFFD_MISSING
        else:
            done = vma.uffd_ctx is None
        if not done:
            vma = _register_one(cur, mm, prev, vma, start, end, register)
        prev = vma
        start = vma.vm_end
        vma = _next_in_range(cur, mm, start, end)
    mmap_write_unlock(cur, mm)
    return 0


def _register_one(
    cur: Current, mm: Mm, prev: Vma | None, vma: Vma, start: int, end: int, register: bool
) -> Vma:
    """Merge or split so that exactly ``[start, min(end, vm_end))`` changes; set the flags.
    Caller holds ``mmap_lock`` for write."""
    vma_assert_write_locked(cur, mm, "userfaultfd_register")
    start = max(start, vma.vm_start)
    vma_end = min(end, vma.vm_end)
    if register:
        new_flags, ctx = vma.vm_flags | VM_UFFD_MISSING, mm.uffd
    else:
        if vma.vm_flags & VM_UFFD_MISSING and vma.uffd_ctx is not None:
            wake_userfault(cur, vma.uffd_ctx, start, vma_end)
        new_flags, ctx = vma.vm_flags & ~VM_UFFD_MISSING, None
    merged = vma_merge(cur, mm, prev, start, vma_end, new_flags, vma.anon_vma, ctx)
    if merged is not None:
        vma = merged
    else:
        if vma.vm_start < start:
            split_vma(cur, mm, vma, start, True)
        if vma.vm_end > end:
            split_vma(cur, mm, vma, end, False)
    vma.vm_flags = new_flags  # userfaultfd_set_vm_flags()
    vma.uffd_ctx = ctx
    return vma


# ---------------------------------------------------------------------------------------------
# UFFDIO_COPY, UFFDIO_WAKE


def userfaultfd_copy(cur: Current, mm: Mm, page: int, value: int) -> Gen[int]:
    """fs/userfaultfd.c:userfaultfd_copy() → mm/userfaultfd.c:mfill_atomic() (v6.6), one page:
    0, -EEXIST (PTE not none) or -ENOENT (no registered VMA). Wakes the page's waiters on 0."""
    yield from mmap_read_lock(cur, mm)
    vma = vma_lookup(mm, page)  # find_dst_vma()
    if vma is None or vma.uffd_ctx is None:
        mmap_read_unlock(cur, mm)
        return ENOENT
    yield from anon_vma_prepare(cur, mm, vma)
    yield from pte_alloc(cur, mm, page)
    ret = yield from mfill_atomic_pte_copy(cur, mm, vma, page, value)
    mmap_read_unlock(cur, mm)
    if ret == 0:
        wake_userfault(cur, mm.uffd, page, page + 1)
    return ret


def mfill_atomic_pte_copy(cur: Current, mm: Mm, vma: Vma, page: int, value: int) -> Gen[int]:
    """mm/userfaultfd.c:mfill_atomic_pte_copy() + mfill_atomic_install_pte()."""
    might_sleep(cur, "vma_alloc_folio")
    yield "mfill_atomic_pte_copy:vma_alloc_folio"
    folio = cur.kernel.alloc_folio(value)  # copy_from_user()
    folio.refs.append((cur.tid, "mfill_atomic_pte_copy"))
    table = yield from pte_offset_map_lock(cur, mm, page)
    if table is None or ptep_get(cur, table, page).kind != PTE_NONE:  # !pte_none_mostly()
        if table is not None:
            pte_unmap_unlock(cur, table)
        folio_put(cur, folio, "mfill_atomic_pte_copy")
        return EEXIST
    writable = bool(vma.vm_flags & VM_WRITE)
    entry = mk_pte(folio, writable, True, True, not vma.vm_flags & VM_ACCESS_FLAGS)
    page_add_anon_rmap(cur, folio, True, "mfill_atomic_install_pte")
    folio.lru = True  # folio_add_lru_vma()
    folio_ref_to_map(cur, folio)
    set_pte_at(cur, mm, table, page, entry, "mfill_atomic_install_pte")
    pte_unmap_unlock(cur, table)
    return 0


def userfaultfd_wake(cur: Current, mm: Mm, page: int) -> None:
    """``UFFDIO_WAKE`` for one page."""
    wake_userfault(cur, mm.uffd, page, page + 1)


def next_pending_fault(cur: Current) -> UffdWait | None:
    """The oldest fault the monitor has not read: by mm id, then queue order."""
    for mm in cur.kernel.mms:
        if mm is None:
            continue
        for uwq in mm.uffd.waiters:
            if not uwq.read:
                return uwq
    return None


def uffd_monitor(cur: Current, records: list[OpRecord], first_index: int) -> Gen[None]:
    """The userfaultfd monitor daemon: answers every pending fault with ``UFFDIO_COPY``."""
    rt = cur.rt
    while True:
        uwq = next_pending_fault(cur)
        if uwq is None:
            yield from cur.kernel.uffd_poll.sleep(cur, "uffd_monitor:poll")
            continue
        uwq.read = True
        mm, page = uwq.ctx.mm, uwq.page
        value = 0xF000 | mm.id << 8 | page
        op = Op(OpKind.UFFD_COPY, mm.id, page, value=value)
        index = first_index + len(records)
        records.append(OpRecord(index, "monitor", cur.tid, op, rt.step, -1, 0))  # pending
        res = yield from userfaultfd_copy(cur, mm, page, value)
        if res == EEXIST:
            userfaultfd_wake(cur, mm, page)
        rt.last_progress = rt.step
        records[-1] = OpRecord(index, "monitor", cur.tid, op, records[-1].invoke, rt.step, res)
        yield "uffd_monitor:reply"
