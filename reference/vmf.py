"""``struct vm_fault``, the fault flags and results, and the fault-lock hand-off contract.

``vmf.vma`` is guarded: with ``CONFIG_PER_VMA_LOCK=n`` the fault lock (FL) is ``mmap_lock``
for read, and after ``release_fault_lock()`` the VMA may be unmapped and freed, so any later
dereference through ``vmf.vma`` is a use after unlock (I4), and any use of a freed VMA a use
after free.

====================  =========================================================================
rule                  when
====================  =========================================================================
lock.handoff          `handle_mm_fault_contract`: RETRY/COMPLETED returned with FL still held,
                      or any other result with FL released (I1)
vma.use-after-unlock  ``vmf.vma`` read after ``release_fault_lock`` (I4)
vma.use-after-free    ``vmf.vma`` read after the VMA was freed; stops the run
====================  =========================================================================
"""

from __future__ import annotations

from reference.mmap_lock import mmap_read_unlock
from reference.objects import PTE_NONE_ENTRY, Mm, PageTable, Pte, Vma
from reference.primitives import Current, holds, violate
from reference.vma import check_vma

# include/linux/mm_types.h: enum vm_fault_reason
VM_FAULT_OOM = 0x000001
VM_FAULT_SIGBUS = 0x000002
VM_FAULT_MAJOR = 0x000004
VM_FAULT_HWPOISON = 0x000010
VM_FAULT_SIGSEGV = 0x000040
VM_FAULT_NOPAGE = 0x000100
VM_FAULT_LOCKED = 0x000200
VM_FAULT_RETRY = 0x000400
VM_FAULT_FALLBACK = 0x000800
VM_FAULT_COMPLETED = 0x004000
VM_FAULT_ERROR = (
    VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON | VM_FAULT_FALLBACK
)

# include/linux/mm_types.h: enum fault_flag
FAULT_FLAG_WRITE = 1 << 0
FAULT_FLAG_ALLOW_RETRY = 1 << 2
FAULT_FLAG_RETRY_NOWAIT = 1 << 3
FAULT_FLAG_KILLABLE = 1 << 4
FAULT_FLAG_TRIED = 1 << 5
FAULT_FLAG_USER = 1 << 6
FAULT_FLAG_INTERRUPTIBLE = 1 << 9
FAULT_FLAG_ORIG_PTE_VALID = 1 << 11
FAULT_FLAG_VMA_LOCK = 1 << 12
FAULT_FLAG_DEFAULT = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | FAULT_FLAG_INTERRUPTIBLE


class Vmf:
    """``struct vm_fault`` for one ``handle_mm_fault`` call."""

    __slots__ = ("_vma", "cur", "fl_held", "flags", "mm", "orig_pte", "page", "table")

    def __init__(self, cur: Current, mm: Mm, vma: Vma, page: int, flags: int) -> None:
        self.cur = cur
        self.mm = mm  # cached: "If the fault handler drops the mmap_lock, vma may be freed"
        self._vma = vma
        self.page = page
        self.flags = flags
        self.orig_pte: Pte = PTE_NONE_ENTRY
        self.table: PageTable | None = None
        self.fl_held = True

    @property
    def vma(self) -> Vma:
        vma = self._vma
        if not self.fl_held:
            violate(self.cur, "vma.use-after-unlock", "vmf->vma", f"{vma!r} after FL released")
        check_vma(self.cur, vma, "vmf->vma")
        return vma


def fault_flag_allow_retry_first(flags: int) -> bool:
    return bool(flags & FAULT_FLAG_ALLOW_RETRY) and not flags & FAULT_FLAG_TRIED


def release_fault_lock(vmf: Vmf) -> None:
    """include/linux/mm.h:release_fault_lock() (v6.6), without VMA_LOCK: ``mmap_read_unlock``."""
    mmap_read_unlock(vmf.cur, vmf.mm)
    vmf.fl_held = False


def assert_fault_locked(vmf: Vmf, rule: str, function: str) -> None:
    """include/linux/mm.h:assert_fault_locked() without VMA_LOCK: ``mmap_assert_locked``, whose
    ``lockdep_assert_held()`` wants the current task to hold the lock (I5 describes its
    ``VM_BUG_ON`` half; the model is a lockdep build)."""
    if not holds(vmf.cur, vmf.mm.mmap_lock):
        violate(vmf.cur, rule, function, f"{vmf.mm.mmap_lock.name} not held")


def handle_mm_fault_contract(vmf: Vmf, held_before: bool, ret: int) -> None:
    """The hand-off rule of ``__handle_mm_fault``'s comment (I1)."""
    cur = vmf.cur
    held = holds(cur, vmf.mm.mmap_lock, "r")
    if not held_before:
        violate(cur, "lock.handoff", "handle_mm_fault", "entered without the fault lock")
        return
    released = bool(ret & (VM_FAULT_RETRY | VM_FAULT_COMPLETED)) and not (
        ret & VM_FAULT_RETRY and vmf.flags & FAULT_FLAG_RETRY_NOWAIT
    )
    if released and held:
        violate(cur, "lock.handoff", "handle_mm_fault", f"returned {ret:#x} with FL still held")
    elif not released and not held:
        violate(cur, "lock.handoff", "handle_mm_fault", f"returned {ret:#x} with FL released")
