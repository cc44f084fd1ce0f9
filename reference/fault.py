"""The page-fault path with ``CONFIG_PER_VMA_LOCK=n``: the user access loop, x86
``do_user_addr_fault``, ``handle_mm_fault`` → ``handle_pte_fault`` → ``do_anonymous_page``
(research §1, §3; ``do_wp_page`` is in `reference.wp`, ``do_swap_page`` in `reference.swapin`).

Every fault runs under ``mmap_lock`` for read (the fault lock, FL). Contract (I1): on return
from ``handle_mm_fault`` with RETRY or COMPLETED the callee has released FL; otherwise FL is
still held and the x86 code releases it. `handle_mm_fault` asserts this on every return.

Yield points: ``user_access:insn`` (an instruction is about to access memory),
``user_access:refault`` (re-executing it after a fault, a timed sleep),
``handle_pte_fault:ptep_get_lockless`` (the unlocked PTE snapshot, [I]), and the [S] points of
``lock_mm_and_find_vma``, ``pte_alloc``, ``anon_vma_prepare`` and the folio allocation.

====================  ==========================================================================
rule                  when
====================  ==========================================================================
lock.handoff          `handle_mm_fault` returns with FL in the wrong state (`reference.vmf`)
vma.detached-used     `handle_mm_fault` on a VMA not in the tree or not covering the page (I14)
fork.exclusion        `handle_mm_fault` on an mm that ``dup_mmap`` is copying (I16)
vma.use-after-free    `handle_mm_fault` on a freed VMA; stops the run
====================  ==========================================================================
"""

from __future__ import annotations

import errno

from fuzz.record import RES_KILLED, RES_SIGBUS, RES_SIGSEGV, StackGrowth
from reference.folio import (
    check_folio,
    folio_put,
    folio_ref_to_map,
    page_add_anon_rmap,
)
from reference.mmap_lock import (
    mmap_read_lock_killable,
    mmap_read_trylock,
    mmap_read_unlock,
    mmap_write_downgrade,
    mmap_write_lock_killable,
    mmap_write_unlock,
)
from reference.objects import (
    PTE_NONE,
    PTE_PRESENT,
    PTE_ZERO,
    PTRS_PER_TABLE,
    STACK_GUARD_GAP,
    VM_ACCESS_FLAGS,
    VM_GROWSDOWN,
    VM_READ,
    VM_UFFD_MISSING,
    VM_WRITE,
    Mm,
    Pte,
    Vma,
    mk_pte,
    zero_pte,
)
from reference.pgtable import (
    pte_alloc,
    pte_hw_access,
    pte_offset_map_lock,
    pte_unmap_unlock,
    ptep_get,
    set_pte_at,
)
from reference.primitives import (
    Current,
    Gen,
    ModelError,
    holds,
    might_sleep,
    spin_lock,
    spin_unlock,
    violate,
)
from reference.swapin import do_swap_page
from reference.userfaultfd import handle_userfault
from reference.vma import anon_vma_prepare, check_vma, find_vma, vma_assert_write_locked, vma_prev
from reference.vmf import (
    FAULT_FLAG_DEFAULT,
    FAULT_FLAG_ORIG_PTE_VALID,
    FAULT_FLAG_TRIED,
    FAULT_FLAG_USER,
    FAULT_FLAG_WRITE,
    VM_FAULT_COMPLETED,
    VM_FAULT_ERROR,
    VM_FAULT_HWPOISON,
    VM_FAULT_OOM,
    VM_FAULT_RETRY,
    VM_FAULT_SIGBUS,
    VM_FAULT_SIGSEGV,
    Vmf,
    handle_mm_fault_contract,
)
from reference.wp import do_wp_page

ENOMEM = -errno.ENOMEM

# arch/x86/include/asm/trap_pf.h
X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2


def user_access(cur: Current, mm: Mm, page: int, write: bool, value: int) -> Gen[int]:
    """One load or store: ``loop { if the PTE allows it: access; else fault }`` (MODEL §7).

    Returns the data read (0 for a store), ``RES_SIGSEGV``/``RES_SIGBUS`` or ``RES_KILLED``.
    """
    refault = False
    while True:
        if cur.killed:
            return RES_KILLED
        if refault:
            yield from refault_spin(cur)
        else:
            yield "user_access:insn"
        table = mm.pmd[page // PTRS_PER_TABLE]
        pte = table.ptes[page % PTRS_PER_TABLE] if table is not None else None
        present = pte is not None and (pte.kind == PTE_PRESENT or pte.kind == PTE_ZERO)
        if present and pte is not None and table is not None and not pte.protnone:
            if not write:
                if not pte.young:
                    pte_hw_access(table, page, pte._replace(young=True))
                if pte.folio is None:
                    return 0
                check_folio(cur, pte.folio, "user_access")
                return pte.folio.data
            if pte.writable and pte.folio is not None:
                check_folio(cur, pte.folio, "user_access")
                pte.folio.data = value
                if not (pte.young and pte.dirty):
                    pte_hw_access(table, page, pte._replace(young=True, dirty=True))
                return 0
        error_code = X86_PF_USER | (X86_PF_WRITE if write else 0)
        if present and pte is not None and not pte.protnone:
            error_code |= X86_PF_PROT
        ret = yield from do_user_addr_fault(cur, mm, page, error_code)
        if ret:
            return ret
        refault = True


def refault_spin(cur: Current) -> Gen[None]:
    """Return to user space and re-execute the access after a fault that returned 0.

    On real hardware the other CPUs make progress meanwhile, so the re-execution is a timed
    sleep: a fault that backed off (a locked device page, a PTE that changed under it) and
    retries by re-faulting cannot starve the task it waits for.
    """
    cur.rt.sleep_timed(cur.task)
    yield "user_access:refault"


def access_error(error_code: int, vma: Vma) -> bool:
    """arch/x86/mm/fault.c:access_error() (v6.6), without pkeys and shadow stacks."""
    if error_code & X86_PF_WRITE:
        return not vma.vm_flags & VM_WRITE
    if error_code & X86_PF_PROT:
        return True
    return not vma.vm_flags & VM_ACCESS_FLAGS


def do_user_addr_fault(cur: Current, mm: Mm, page: int, error_code: int) -> Gen[int]:
    """arch/x86/mm/fault.c:do_user_addr_fault() (v6.6), the ``lock_mmap:`` path only.

    Called with no lock held; returns with none held. Returns 0 (re-execute the access),
    ``RES_SIGSEGV`` or ``RES_SIGBUS``.
    """
    flags = FAULT_FLAG_DEFAULT | FAULT_FLAG_USER
    if error_code & X86_PF_WRITE:
        flags |= FAULT_FLAG_WRITE
    while True:  # retry:
        vma = yield from lock_mm_and_find_vma(cur, mm, page)
        if vma is None:
            return RES_SIGSEGV  # bad_area_nosemaphore()
        if access_error(error_code, vma):
            mmap_read_unlock(cur, mm)  # bad_area_access_error()
            return RES_SIGSEGV
        fault = yield from handle_mm_fault(cur, mm, vma, page, flags)
        if fault & VM_FAULT_RETRY and cur.killed:  # fault_signal_pending()
            return 0
        if fault & VM_FAULT_COMPLETED:
            return 0
        if fault & VM_FAULT_RETRY:
            flags |= FAULT_FLAG_TRIED
            continue
        mmap_read_unlock(cur, mm)
        break
    if not fault & VM_FAULT_ERROR:
        return 0
    if fault & VM_FAULT_OOM:
        raise ModelError("VM_FAULT_OOM: the model never fails an allocation")
    if fault & (VM_FAULT_SIGBUS | VM_FAULT_HWPOISON):
        return RES_SIGBUS
    if fault & VM_FAULT_SIGSEGV:
        return RES_SIGSEGV
    raise ModelError(f"do_user_addr_fault: unexpected fault result {fault:#x}")


def lock_mm_and_find_vma(cur: Current, mm: Mm, addr: int) -> Gen[Vma | None]:
    """mm/memory.c:lock_mm_and_find_vma() (v6.6): the VMA with ``mmap_lock`` read-held, or
    None with nothing held. Grows a VM_GROWSDOWN stack under the write lock."""
    if not mmap_read_trylock(cur, mm) and (yield from mmap_read_lock_killable(cur, mm)):
        return None  # get_mmap_lock_carefully(): fatal signal
    vma = find_vma(cur, mm, addr)
    if vma is not None and vma.vm_start <= addr:
        return vma
    if vma is None or not vma.vm_flags & VM_GROWSDOWN:
        mmap_read_unlock(cur, mm)
        return None
    # mmap_upgrade_trylock() does not exist yet in v6.6: drop and re-take for write.
    mmap_read_unlock(cur, mm)
    if (yield from mmap_write_lock_killable(cur, mm)):
        return None
    vma = find_vma(cur, mm, addr)
    if vma is None or (vma.vm_start > addr and not vma.vm_flags & VM_GROWSDOWN):
        mmap_write_unlock(cur, mm)
        return None
    if vma.vm_start > addr and (yield from expand_downwards(cur, mm, vma, addr)):
        mmap_write_unlock(cur, mm)
        return None
    mmap_write_downgrade(cur, mm)
    return vma


def expand_downwards(cur: Current, mm: Mm, vma: Vma, addr: int) -> Gen[int]:
    """mm/mmap.c:expand_downwards() (v6.6); caller holds ``mmap_lock`` for write."""
    vma_assert_write_locked(cur, mm, "expand_downwards")
    prev = vma_prev(cur, mm, vma)
    if (
        prev is not None
        and not prev.vm_flags & VM_GROWSDOWN
        and prev.vm_flags & VM_ACCESS_FLAGS
        and addr - prev.vm_end < STACK_GUARD_GAP
    ):
        return ENOMEM  # stack_guard_gap
    yield from anon_vma_prepare(cur, mm, vma)
    if addr < vma.vm_start:
        yield from spin_lock(cur, mm.page_table_lock)
        k = cur.kernel
        prot = vma.vm_flags & (VM_READ | VM_WRITE)
        uffd = bool(vma.vm_flags & VM_UFFD_MISSING)
        k.growths.append(StackGrowth(k.rt.step, cur.tid, mm.id, addr, vma.vm_start, prot, uffd))
        vma.vm_start = addr
        spin_unlock(cur, mm.page_table_lock)
    return 0


def handle_mm_fault(cur: Current, mm: Mm, vma: Vma, page: int, flags: int) -> Gen[int]:
    """mm/memory.c:handle_mm_fault() (v6.6). Caller holds FL (``mmap_lock`` read); FL is
    released by the callee iff the result has RETRY or COMPLETED (I1, asserted here)."""
    vmf = Vmf(cur, mm, vma, page, flags)
    held_before = holds(cur, mm.mmap_lock, "r")
    check_fault_vma(cur, mm, vma, page)
    ret = yield from handle_pte_fault(vmf)
    handle_mm_fault_contract(vmf, held_before, ret)
    return ret


def check_fault_vma(cur: Current, mm: Mm, vma: Vma, page: int) -> None:
    """I14/I16 at the entry of handle_mm_fault: the VMA is in the tree and covers the page,
    and ``dup_mmap`` is not copying this mm (its write lock excludes every fault)."""
    check_vma(cur, vma, "handle_mm_fault")
    if vma not in mm.vmas or not vma.vm_start <= page < vma.vm_end:
        violate(cur, "vma.detached-used", "handle_mm_fault", f"{vma!r} for page {page}")
    if mm.dup_mmap_task >= 0:
        violate(
            cur,
            "fork.exclusion",
            "handle_mm_fault",
            f"fault on mm{mm.id} while t{mm.dup_mmap_task} runs dup_mmap",
        )


def handle_pte_fault(vmf: Vmf) -> Gen[int]:
    """mm/memory.c:handle_pte_fault() (v6.6)."""
    cur, mm, page = vmf.cur, vmf.mm, vmf.page
    table = mm.pmd[page // PTRS_PER_TABLE]
    if table is None:
        vmf.table = None
        vmf.flags &= ~FAULT_FLAG_ORIG_PTE_VALID
    else:
        vmf.table = table
        vmf.orig_pte = ptep_get(cur, table, page)  # ptep_get_lockless()
        vmf.flags |= FAULT_FLAG_ORIG_PTE_VALID
        yield "handle_pte_fault:ptep_get_lockless"
        if vmf.orig_pte.kind == PTE_NONE:
            vmf.table = None
    if vmf.table is None:
        return (yield from do_anonymous_page(vmf))  # do_pte_missing(): anonymous VMA
    orig = vmf.orig_pte
    if orig.kind != PTE_PRESENT and orig.kind != PTE_ZERO:
        return (yield from do_swap_page(vmf))
    if orig.protnone and vmf.vma.vm_flags & VM_ACCESS_FLAGS:
        raise ModelError("do_numa_page: NUMA hinting is not modelled")
    table = yield from pte_offset_map_lock(cur, mm, page)
    if table is None:
        return 0
    vmf.table = table
    if ptep_get(cur, table, page) != orig:
        pte_unmap_unlock(cur, table)  # lost a race: refault
        return 0
    entry = orig
    if vmf.flags & FAULT_FLAG_WRITE:
        if not orig.writable:
            return (yield from do_wp_page(vmf))  # entered with the PTL held
        entry = entry._replace(dirty=True)
    entry = entry._replace(young=True)
    if entry != orig:  # ptep_set_access_flags()
        set_pte_at(cur, mm, table, page, entry, "handle_pte_fault")
    pte_unmap_unlock(cur, table)
    return 0


def vmf_pte_changed(vmf: Vmf, pte: Pte) -> bool:
    """mm/memory.c:vmf_pte_changed(): against orig_pte if it was valid, else against none."""
    if vmf.flags & FAULT_FLAG_ORIG_PTE_VALID:
        return pte != vmf.orig_pte
    return pte.kind != PTE_NONE


def do_anonymous_page(vmf: Vmf) -> Gen[int]:
    """mm/memory.c:do_anonymous_page() (v6.6): the zero page on a read, else a new folio."""
    cur, mm, page = vmf.cur, vmf.mm, vmf.page
    yield from pte_alloc(cur, mm, page)
    vma = vmf.vma
    protnone = not vma.vm_flags & VM_ACCESS_FLAGS
    if not vmf.flags & FAULT_FLAG_WRITE:
        table = yield from pte_offset_map_lock(cur, mm, page)
        if table is None:
            return 0
        if vmf_pte_changed(vmf, ptep_get(cur, table, page)):
            pte_unmap_unlock(cur, table)
            return 0
        if vma.vm_flags & VM_UFFD_MISSING:
            pte_unmap_unlock(cur, table)
            return (yield from handle_userfault(vmf))
        set_pte_at(cur, mm, table, page, zero_pte(protnone), "do_anonymous_page")
        pte_unmap_unlock(cur, table)
        return 0
    yield from anon_vma_prepare(cur, mm, vma)
    might_sleep(cur, "vma_alloc_zeroed_movable_folio")
    yield "do_anonymous_page:vma_alloc_zeroed_movable_folio"
    folio = cur.kernel.alloc_folio(0)
    folio.refs.append((cur.tid, "do_anonymous_page"))
    vma = vmf.vma
    writable = bool(vma.vm_flags & VM_WRITE)
    entry = mk_pte(folio, writable, True, writable, protnone)
    table = yield from pte_offset_map_lock(cur, mm, page)
    if table is None:
        folio_put(cur, folio, "do_anonymous_page")
        return 0
    if vmf_pte_changed(vmf, ptep_get(cur, table, page)):
        pte_unmap_unlock(cur, table)
        folio_put(cur, folio, "do_anonymous_page")
        return 0
    if vmf.vma.vm_flags & VM_UFFD_MISSING:
        pte_unmap_unlock(cur, table)
        folio_put(cur, folio, "do_anonymous_page")
        return (yield from handle_userfault(vmf))
    page_add_anon_rmap(cur, folio, True, "do_anonymous_page")  # page_add_new_anon_rmap()
    folio.lru = True  # folio_add_lru_vma()
    folio_ref_to_map(cur, folio)
    set_pte_at(cur, mm, table, page, entry, "do_anonymous_page")
    pte_unmap_unlock(cur, table)
    return 0
