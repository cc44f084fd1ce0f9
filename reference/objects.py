"""The model's kernel objects (MODEL.md §2): mm, VMA, page table, PTE, folio, swap, uffd ctx.

Plain data with the kernel's names; behaviour lives in the mechanism modules. A freed object
is *poisoned* (``freed = True``) and stays reachable only through stale pointers, so that the
contract layer can catch any later use (KASAN).

PTEs are immutable values (`Pte`), compared whole by ``pte_same`` (folios by identity, so a
new folio never equals an old one; swap slots by number, so slot reuse is an ABA hazard as in
the kernel). The young/dirty bits of a migration entry are kept as in x86's
``make_migration_entry_young/dirty``.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from fuzz.case import MAX_MMS, MAX_PAGES
from fuzz.record import (
    PTE_DEVICE_PRIVATE,
    PTE_MIGRATION,
    PTE_NONE,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_ZERO,
    MigrationFailure,
    StackGrowth,
)
from reference.mmap_lock import RwSem
from reference.primitives import Contract, Current, Lock, SpinLock, WaitQueue
from reference.sched import Runtime

# vm_flags (MODEL.md §2; VM_ACCOUNT added by §9)
VM_READ = 1
VM_WRITE = 2
VM_GROWSDOWN = 4
VM_UFFD_MISSING = 8
VM_ACCOUNT = 16
VM_ACCESS_FLAGS = VM_READ | VM_WRITE

PTRS_PER_TABLE = 4
NR_TABLES = (MAX_PAGES + PTRS_PER_TABLE - 1) // PTRS_PER_TABLE
NR_SWAP_SLOTS = 32
STACK_GUARD_GAP = 1

IO_OWNER = -2  # a folio locked by I/O in flight (unlocked by the completion)

__all__ = [
    "IO_OWNER",
    "NR_SWAP_SLOTS",
    "NR_TABLES",
    "PTE_DEVICE_PRIVATE",
    "PTE_MIGRATION",
    "PTE_NONE",
    "PTE_PRESENT",
    "PTE_SWAP",
    "PTE_ZERO",
    "PTRS_PER_TABLE",
    "STACK_GUARD_GAP",
    "VM_ACCESS_FLAGS",
    "VM_ACCOUNT",
    "VM_GROWSDOWN",
    "VM_READ",
    "VM_UFFD_MISSING",
    "VM_WRITE",
    "Folio",
    "Kernel",
    "Mm",
    "PageTable",
    "Pte",
    "SwapInfo",
    "SwapSlot",
    "UffdCtx",
    "UffdWait",
    "Vma",
]


class Pte(NamedTuple):
    """One page-table entry (x86 semantics, MODEL.md §2).

    ``writable``: pte_write (present), a writable migration entry, a writable device-private
    entry. ``exclusive``: pte_swp_exclusive (swap), readable_exclusive (migration).
    """

    kind: int
    folio: Folio | None = None
    slot: int = -1
    writable: bool = False
    exclusive: bool = False
    young: bool = False
    dirty: bool = False
    protnone: bool = False


PTE_NONE_ENTRY = Pte(PTE_NONE)


def mk_pte(folio: Folio, writable: bool, young: bool, dirty: bool, protnone: bool) -> Pte:
    return Pte(PTE_PRESENT, folio, -1, writable, False, young, dirty, protnone)


def zero_pte(protnone: bool) -> Pte:
    """``pte_mkspecial(pfn_pte(my_zero_pfn(addr), vma->vm_page_prot))``: young, read-only."""
    return Pte(PTE_ZERO, None, -1, False, False, True, False, protnone)


def swp_entry_to_pte(slot: int, exclusive: bool) -> Pte:
    return Pte(PTE_SWAP, None, slot, False, exclusive)


def make_migration_pte(
    folio: Folio, writable: bool, exclusive: bool, young: bool, dirty: bool
) -> Pte:
    return Pte(PTE_MIGRATION, folio, -1, writable, exclusive, young, dirty)


def make_device_private_pte(folio: Folio, writable: bool) -> Pte:
    return Pte(PTE_DEVICE_PRIVATE, folio, -1, writable)


class Folio(Lock):
    """An order-0 folio; as a `Lock` it is its ``PG_locked`` bit with its waiters."""

    __slots__ = (
        "anon_exclusive",
        "data",
        "device",
        "dirty",
        "freed",
        "id",
        "lock_owner",
        "locked",
        "lru",
        "mapcount",
        "refcount",
        "refs",
        "swapcache",
        "uptodate",
        "waiters",
        "wb_waiters",
        "writeback",
    )

    def __init__(self, fid: int, data: int, device: bool = False) -> None:
        super().__init__(f"folio#{fid}")
        self.id = fid
        self.data = data
        self.refcount = 1
        self.mapcount = 0
        self.locked = False
        self.lock_owner = -1
        self.waiters: list[FolioWait] = []
        self.wb_waiters: list[FolioWait] = []
        self.anon_exclusive = False
        self.swapcache = -1  # the swap slot while in the swap cache
        self.uptodate = True
        self.dirty = False
        self.writeback = False
        self.lru = False
        self.device = device
        self.freed = False
        self.refs: list[tuple[int, str]] = []  # task-held references: (tid, site)

    def holder_tids(self) -> tuple[int, ...]:
        return (self.lock_owner,) if self.locked and self.lock_owner >= 0 else ()


class FolioWait:
    """A wait-queue entry on a folio's ``PG_locked`` (or writeback) bit."""

    __slots__ = ("cur", "woken")

    def __init__(self, cur: Current) -> None:
        self.cur = cur
        self.woken = False


class Vma:
    """A ``vm_area_struct`` (reference: no vm_lock, freed without RCU)."""

    __slots__ = (
        "anon_vma",
        "anon_vma_chain_len",
        "freed",
        "id",
        "mm",
        "uffd_ctx",
        "vm_end",
        "vm_flags",
        "vm_start",
    )

    def __init__(self, vid: int, mm: Mm, start: int, end: int, flags: int) -> None:
        self.id = vid
        self.mm = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_flags = flags
        self.anon_vma: int | None = None
        self.anon_vma_chain_len = 0
        self.uffd_ctx: UffdCtx | None = None
        self.freed = False

    def __repr__(self) -> str:
        return f"Vma#{self.id}[{self.vm_start},{self.vm_end}) flags={self.vm_flags}"


class PageTable:
    """A PTE table covering pages ``PTRS_PER_TABLE * index ..``; its PTL is split per table."""

    __slots__ = ("freed", "index", "ptes", "ptl")

    def __init__(self, mm_id: int, index: int) -> None:
        self.index = index
        self.ptes: list[Pte] = [PTE_NONE_ENTRY] * PTRS_PER_TABLE
        self.ptl = SpinLock(f"mm{mm_id}.pt{index}.ptl")
        self.freed = False


class UffdWait:
    """A fault sleeping in ``handle_userfault`` (its ``userfaultfd_wait_queue``)."""

    __slots__ = ("ctx", "cur", "page", "read", "waken")

    def __init__(self, ctx: UffdCtx, cur: Current, page: int) -> None:
        self.ctx = ctx
        self.cur = cur
        self.page = page
        self.read = False  # the monitor has read the message (fault_pending_wqh -> fault_wqh)
        self.waken = False

    def describe(self) -> str:
        return f"uffd(mm{self.ctx.mm.id}).page{self.page}"

    def holder_tids(self) -> tuple[int, ...]:
        return ()


class UffdCtx:
    """The one userfaultfd context of an mm (missing mode, no events)."""

    __slots__ = ("mm", "waiters")

    def __init__(self, mm: Mm) -> None:
        self.mm = mm
        self.waiters: list[UffdWait] = []


class Mm:
    """An address space: ``mmap_lock``, the VMA list (sorted), the PMD slots, the uffd ctx."""

    __slots__ = (
        "detached",
        "dup_mmap_task",
        "id",
        "mmap_lock",
        "page_table_lock",
        "pmd",
        "uffd",
        "visible",
        "vmas",
    )

    def __init__(self, mid: int) -> None:
        self.id = mid
        self.mmap_lock = RwSem(f"mm{mid}.mmap_lock")
        self.page_table_lock = SpinLock(f"mm{mid}.page_table_lock")
        self.vmas: list[Vma] = []
        self.pmd: list[PageTable | None] = [None] * NR_TABLES
        self.uffd = UffdCtx(self)
        self.detached: list[Vma] = []  # removed from the tree, still linked for rmap walks
        self.visible = False  # fork's child becomes visible when fork returns
        self.dup_mmap_task = -1  # the task copying this mm in dup_mmap, if any


class SwapSlot:
    __slots__ = ("count", "data", "has_cache")

    def __init__(self) -> None:
        self.count = 0
        self.has_cache = False
        self.data = 0

    def is_free(self) -> bool:
        return self.count == 0 and not self.has_cache


class SwapInfo:
    """The one swap device: slots, the swap cache, SWP_SYNCHRONOUS_IO or asynchronous."""

    __slots__ = ("cache", "slots", "synchronous")

    def __init__(self, synchronous: bool) -> None:
        self.synchronous = synchronous
        self.slots = [SwapSlot() for _ in range(NR_SWAP_SLOTS)]
        self.cache: dict[int, Folio] = {}


class Kernel:
    """The whole modelled machine for one run."""

    __slots__ = (
        "contract",
        "folios",
        "growths",
        "io_queue",
        "io_wait",
        "migration_failures",
        "mm_order",
        "mms",
        "next_anon_vma",
        "next_folio",
        "next_vma",
        "nr_pages",
        "rt",
        "swap",
        "uffd_poll",
    )

    def __init__(self, rt: Runtime, contract: Contract, nr_pages: int, swap_async: bool) -> None:
        self.rt = rt
        self.contract = contract
        self.nr_pages = nr_pages
        self.mms: list[Mm | None] = [None] * MAX_MMS
        self.mm_order: list[Mm] = []  # creation order: the rmap walk order
        self.swap = SwapInfo(not swap_async)
        self.folios: dict[int, Folio] = {}
        self.next_folio = 0
        self.next_vma = 0
        self.next_anon_vma = 0
        self.io_queue: deque[tuple[str, Folio, int]] = deque()
        self.io_wait = WaitQueue("swap_io")
        self.uffd_poll = WaitQueue("uffd_poll")
        self.migration_failures: list[MigrationFailure] = []
        # (step, mm, first page, old vm_start, vm_flags) of every stack expansion
        self.growths: list[StackGrowth] = []

    def alloc_folio(self, data: int, device: bool = False) -> Folio:
        """A new folio with one reference (owned by the allocating task)."""
        folio = Folio(self.next_folio, data, device)
        self.next_folio += 1
        self.folios[folio.id] = folio
        return folio

    def alloc_vma(self, mm: Mm, start: int, end: int, flags: int) -> Vma:
        vma = Vma(self.next_vma, mm, start, end, flags)
        self.next_vma += 1
        return vma

    def alloc_anon_vma(self) -> int:
        self.next_anon_vma += 1
        return self.next_anon_vma

    def add_mm(self, mm: Mm) -> None:
        self.mms[mm.id] = mm
        self.mm_order.append(mm)

    def remove_mm(self, mm: Mm) -> None:
        self.mms[mm.id] = None
        self.mm_order.remove(mm)

    def mm(self, mid: int) -> Mm | None:
        """The mm a user operation names, if it exists and is visible."""
        mm = self.mms[mid]
        return mm if mm is not None and mm.visible else None
