//! The model's kernel objects (MODEL.md §2): mm, VMA, page table, PTE, folio, swap, uffd ctx.
//! The machine that holds them, [`State`] inside the [`Kernel`] the tasks share, is in `kernel`
//! (re-exported here).
//!
//! Objects live in arenas indexed by id and are never removed: a freed object is *poisoned*
//! (`freed = true`) and stays reachable only through stale ids, so that the contract layer can
//! catch any later use (KASAN). PTEs are `Copy` values compared whole by `pte_same` (folios by
//! id, so a new folio never equals an old one; swap slots by number, so slot reuse is an ABA
//! hazard as in the kernel).

use crate::inline::TaskList;
use crate::primitives::SpinLock;
use crate::rwsem::RwSem;
use crate::sched::TaskId;

pub const MAX_MMS: usize = 4;
pub const MAX_PAGES: usize = 16;
pub const PTRS_PER_TABLE: usize = 4;
/// [`PTRS_PER_TABLE`] as a page count.
pub const TABLE_PAGES: Page = 4;
pub const NR_TABLES: usize = MAX_PAGES.div_ceil(PTRS_PER_TABLE);
pub const NR_SWAP_SLOTS: usize = 32;
pub const STACK_GUARD_GAP: u32 = 1;

// vm_flags (MODEL.md §2; VM_ACCOUNT added by §9)
pub const VM_READ: u32 = 1;
pub const VM_WRITE: u32 = 2;
pub const VM_GROWSDOWN: u32 = 4;
pub const VM_UFFD_MISSING: u32 = 8;
pub const VM_ACCOUNT: u32 = 16;
pub const VM_ACCESS_FLAGS: u32 = VM_READ | VM_WRITE;

pub type MmId = usize;
pub type VmaId = usize;
pub type FolioId = u32;
pub type TableId = usize;
pub type Page = u32;

/// A folio locked by I/O in flight (unlocked by the completion).
pub const IO_OWNER: i64 = -2;

/// The PTE kinds, numbered as `fuzz.record.PTE_KINDS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum PteKind {
    #[default]
    None = 0,
    Present = 1,
    Zero = 2,
    Swap = 3,
    Migration = 4,
    DevicePrivate = 5,
}

/// One page-table entry (x86 semantics, MODEL.md §2). `writable`: `pte_write` (present), a
/// writable migration or device-private entry. `exclusive`: `pte_swp_exclusive` (swap),
/// `readable_exclusive` (migration).
#[allow(clippy::struct_excessive_bools)] // the kernel's own flag bits
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pte {
    pub kind: PteKind,
    pub folio: Option<FolioId>,
    pub slot: i32,
    pub writable: bool,
    pub exclusive: bool,
    pub young: bool,
    pub dirty: bool,
    pub protnone: bool,
}

pub const PTE_NONE: Pte = Pte {
    kind: PteKind::None,
    folio: None,
    slot: -1,
    writable: false,
    exclusive: false,
    young: false,
    dirty: false,
    protnone: false,
};

impl Pte {
    pub const fn is_none(&self) -> bool {
        matches!(self.kind, PteKind::None)
    }

    /// A present PTE of a folio or of the zero page.
    pub const fn is_present(&self) -> bool {
        matches!(self.kind, PteKind::Present | PteKind::Zero)
    }
}

#[allow(clippy::fn_params_excessive_bools)] // the PTE's own bits
pub fn mk_pte(folio: FolioId, writable: bool, young: bool, dirty: bool, protnone: bool) -> Pte {
    Pte {
        kind: PteKind::Present,
        folio: Some(folio),
        writable,
        young,
        dirty,
        protnone,
        ..PTE_NONE
    }
}

/// `pte_mkspecial(pfn_pte(my_zero_pfn(addr), vma->vm_page_prot))`: young, read-only.
pub fn zero_pte(protnone: bool) -> Pte {
    Pte {
        kind: PteKind::Zero,
        young: true,
        protnone,
        ..PTE_NONE
    }
}

pub fn swp_entry_to_pte(slot: i32, exclusive: bool) -> Pte {
    Pte {
        kind: PteKind::Swap,
        slot,
        exclusive,
        ..PTE_NONE
    }
}

#[allow(clippy::fn_params_excessive_bools)] // the PTE's own bits
pub fn make_migration_pte(
    folio: FolioId,
    writable: bool,
    exclusive: bool,
    young: bool,
    dirty: bool,
) -> Pte {
    Pte {
        kind: PteKind::Migration,
        folio: Some(folio),
        writable,
        exclusive,
        young,
        dirty,
        ..PTE_NONE
    }
}

pub fn make_device_private_pte(folio: FolioId, writable: bool) -> Pte {
    Pte {
        kind: PteKind::DevicePrivate,
        folio: Some(folio),
        writable,
        ..PTE_NONE
    }
}

/// An order-0 folio with its `PG_locked` bit and waiters.
#[allow(clippy::struct_excessive_bools)] // the kernel's own flag bits
#[derive(Debug, Clone)]
pub struct Folio {
    pub id: FolioId,
    pub data: u32,
    pub refcount: i32,
    pub mapcount: i32,
    pub locked: bool,
    /// The task holding `PG_locked`, [`IO_OWNER`], or -1.
    pub lock_owner: i64,
    pub waiters: TaskList,
    pub wb_waiters: TaskList,
    pub anon_exclusive: bool,
    /// The swap slot while in the swap cache, else -1.
    pub swapcache: i32,
    pub uptodate: bool,
    pub dirty: bool,
    pub writeback: bool,
    pub lru: bool,
    pub device: bool,
    pub freed: bool,
    /// Task-held references: (tid, site).
    pub refs: Vec<(TaskId, &'static str)>,
}

impl Folio {
    pub fn name(&self) -> String {
        format!("folio#{}", self.id)
    }
}

/// A `vm_area_struct` with its per-VMA lock (`CONFIG_PER_VMA_LOCK=y`).
#[derive(Debug, Clone)]
pub struct Vma {
    pub id: VmaId,
    pub mm: MmId,
    pub vm_start: Page,
    pub vm_end: Page,
    pub vm_flags: u32,
    pub anon_vma: Option<u32>,
    pub anon_vma_chain_len: u32,
    /// The uffd context (the one of `uffd_ctx`'s mm), if registered.
    pub uffd_ctx: Option<MmId>,
    pub vm_lock: RwSem,
    pub vm_lock_seq: i64,
    pub detached: bool,
    pub freed: bool,
}

impl Vma {
    pub fn covers(&self, page: Page) -> bool {
        self.vm_start <= page && page < self.vm_end
    }
}

/// A PTE table covering pages `PTRS_PER_TABLE * index ..`, with its split PTL.
#[derive(Debug, Clone)]
pub struct PageTable {
    pub mm: MmId,
    pub index: usize,
    pub ptes: [Pte; PTRS_PER_TABLE],
    pub ptl: SpinLock,
    pub freed: bool,
}

/// A fault sleeping in `handle_userfault` (its `userfaultfd_wait_queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UffdWait {
    pub tid: TaskId,
    pub page: Page,
    /// The monitor has read the message (`fault_pending_wqh` -> `fault_wqh`).
    pub read: bool,
}

/// The one userfaultfd context of an mm (missing mode, no events).
#[derive(Debug, Clone, Default)]
pub struct UffdCtx {
    pub waiters: Vec<UffdWait>,
}

/// An address space.
#[derive(Debug, Clone)]
pub struct Mm {
    pub id: MmId,
    /// Unique over the run (an id can be reused after a fork child is torn down).
    pub serial: usize,
    pub mmap_lock: RwSem,
    pub page_table_lock: SpinLock,
    pub mm_lock_seq: i64,
    /// The VMA tree, sorted by `vm_start`.
    pub vmas: Vec<VmaId>,
    pub pmd: [Option<TableId>; NR_TABLES],
    pub uffd: UffdCtx,
    /// Removed from the tree but still linked for rmap walks (until `free_pgtables`).
    pub detached: Vec<VmaId>,
    /// fork's child becomes visible when fork returns.
    pub visible: bool,
    /// Parent VMAs `dup_mmap` has write-locked so far (I16).
    pub fork_visited: Vec<VmaId>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwapSlot {
    pub count: i32,
    pub has_cache: bool,
    pub data: u32,
}

impl SwapSlot {
    pub fn is_free(&self) -> bool {
        self.count == 0 && !self.has_cache
    }
}

/// The one swap device: slots, the swap cache, `SWP_SYNCHRONOUS_IO` or asynchronous.
#[derive(Debug, Clone)]
pub struct SwapInfo {
    pub synchronous: bool,
    pub slots: [SwapSlot; NR_SWAP_SLOTS],
    pub cache: [Option<FolioId>; NR_SWAP_SLOTS],
}

/// A queued asynchronous swap request for the I/O daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoReq {
    Read(FolioId, i32),
    Write(FolioId),
}

/// What a blocked task waits on (for the wait-for graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOn {
    MmapLock(MmId),
    VmLock(VmaId),
    Ptl(TableId),
    PageTableLock(MmId),
    Folio(FolioId),
    Writeback(FolioId),
    SwapIo,
    UffdPoll,
    Uffd(MmId, Page),
    RcuCallbacks,
    RcuGracePeriod,
}

/// A stack growth the kernel made on its own: (step, task, mm, first new page, old
/// `vm_start`, PROT bits, registered with userfaultfd) (`fuzz.record.StackGrowth`).
pub type Growth = (u64, TaskId, MmId, Page, Page, u32, bool);

/// The per-VMA lock counters, in `fuzz.record.VMA_LOCK_COUNTERS` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmaLockEvent {
    Success = 0,
    Abort = 1,
    Retry = 2,
    Miss = 3,
}

/// A pending `call_rcu` callback: free `vma` once every task that was inside an RCU read
/// section when it was queued has left that section.
#[derive(Debug, Clone)]
pub struct RcuCallback {
    pub vma: VmaId,
    /// (task, its `rcu_exits` when the callback was queued) for every reader at that time.
    pub readers: Vec<(TaskId, u64)>,
}

pub use crate::kernel::{Kernel, Resume, St, State};
