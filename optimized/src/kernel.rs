//! The machine one run simulates: [`State`] (every object arena, the swap device, the I/O
//! queue, RCU callbacks, per-task `current`, the contract layer's records) and the [`Kernel`]
//! that shares it with the scheduler among the tasks.
//!
//! The kernel state is one `RefCell<State>`; [`Kernel::st`] borrows it for one atomic stretch
//! of a step and refreshes the current task and step. Wake-ups made during the borrow are
//! buffered and handed to the scheduler when the borrow ends, which is before the task's next
//! yield, so they take effect within the same step as in the reference.

use std::cell::{RefCell, RefMut};
use std::collections::VecDeque;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::inline::TaskList;
use crate::migrate::MigrationFailure;
use crate::mutant::Mutant;
use crate::objects::{
    Folio, FolioId, Growth, IoReq, Mm, MmId, Page, PageTable, Pte, RcuCallback, SwapInfo, SwapSlot,
    TableId, UffdCtx, Vma, VmaId, VmaLockEvent, WaitOn, MAX_MMS, NR_SWAP_SLOTS, NR_TABLES,
    PTE_NONE, PTRS_PER_TABLE,
};
use crate::primitives::{Contract, Current, SpinLock};
use crate::rwsem::RwSem;
use crate::sched::{self, Sched, TaskId, Yield};
use crate::userfaultfd::MonitorRecord;

/// The whole modelled machine's state for one run.
#[derive(Debug)]
pub struct State {
    pub nr_pages: u32,
    pub mms: [Option<Box<Mm>>; MAX_MMS],
    /// mm ids in creation order: the rmap walk order.
    pub mm_order: Vec<MmId>,
    pub next_mm_serial: usize,
    pub vmas: Vec<Vma>,
    pub tables: Vec<PageTable>,
    pub folios: Vec<Folio>,
    pub swap: SwapInfo,
    pub next_anon_vma: u32,
    pub io_queue: VecDeque<IoReq>,
    pub io_sleepers: Vec<TaskId>,
    pub uffd_poll: Vec<TaskId>,
    pub rcu_callbacks: Vec<RcuCallback>,
    pub rcu_daemon: Option<TaskId>,
    pub counters: [u64; 4],
    pub migration_failures: Vec<MigrationFailure>,
    /// Every stack growth: (step, task, mm, start, end, prot, uffd) (`fuzz.record.StackGrowth`).
    pub growths: Vec<Growth>,
    pub monitor_records: Vec<MonitorRecord>,
    pub cur: Vec<Current>,
    pub contract: Contract,
    pub mutant: Mutant,
    /// The task running the current step, and the step (refreshed by [`Kernel::st`]).
    pub tid: TaskId,
    pub step: u64,
    /// Wake-ups to hand to the scheduler when the borrow ends.
    pub wakes: Vec<TaskId>,
}

/// The buffers of a [`State`] whose run is over, emptied: the next run's state fills them
/// instead of allocating its own ([`State::reset`]). Only their capacity carries over.
#[derive(Debug, Default)]
struct Buffers {
    mm_order: Vec<MmId>,
    vmas: Vec<Vma>,
    tables: Vec<PageTable>,
    folios: Vec<Folio>,
    io_queue: VecDeque<IoReq>,
    io_sleepers: Vec<TaskId>,
    uffd_poll: Vec<TaskId>,
    rcu_callbacks: Vec<RcuCallback>,
    monitor_records: Vec<MonitorRecord>,
    cur: Vec<Current>,
    folio_owner: Vec<(FolioId, TaskId)>,
    wakes: Vec<TaskId>,
}

/// `v`, emptied, with room for `n` items.
fn emptied<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    v.clear();
    v.reserve(n);
    v
}

impl State {
    pub fn new(
        nr_pages: u32,
        swap_async: bool,
        ntasks: usize,
        trace: bool,
        mutant: Mutant,
    ) -> Self {
        Self::with_buffers(
            Buffers::default(),
            nr_pages,
            swap_async,
            ntasks,
            trace,
            mutant,
        )
    }

    /// Start over as [`State::new`] would, keeping the buffers' capacity (a run's fixed cost
    /// is largely allocation; the next run on the thread reuses this one's).
    pub fn reset(
        &mut self,
        nr_pages: u32,
        swap_async: bool,
        ntasks: usize,
        trace: bool,
        mutant: Mutant,
    ) {
        use std::mem::take;
        let buffers = Buffers {
            mm_order: take(&mut self.mm_order),
            vmas: take(&mut self.vmas),
            tables: take(&mut self.tables),
            folios: take(&mut self.folios),
            io_queue: take(&mut self.io_queue),
            io_sleepers: take(&mut self.io_sleepers),
            uffd_poll: take(&mut self.uffd_poll),
            rcu_callbacks: take(&mut self.rcu_callbacks),
            monitor_records: take(&mut self.monitor_records),
            cur: take(&mut self.cur),
            folio_owner: take(&mut self.contract.folio_owner),
            wakes: take(&mut self.wakes),
        };
        *self = Self::with_buffers(buffers, nr_pages, swap_async, ntasks, trace, mutant);
    }

    /// The state of a new run, in (emptied) `b`.
    fn with_buffers(
        b: Buffers,
        nr_pages: u32,
        swap_async: bool,
        ntasks: usize,
        trace: bool,
        mutant: Mutant,
    ) -> Self {
        let mut cur = emptied(b.cur, ntasks);
        cur.resize(ntasks, Current::default());
        let mut io_queue = b.io_queue;
        io_queue.clear();
        let mut contract = Contract::new(trace);
        contract.folio_owner = emptied(b.folio_owner, 0);
        Self {
            nr_pages,
            mms: [None, None, None, None],
            mm_order: emptied(b.mm_order, MAX_MMS),
            next_mm_serial: 0,
            vmas: emptied(b.vmas, 16),
            tables: emptied(b.tables, 16),
            folios: emptied(b.folios, 32),
            swap: SwapInfo {
                synchronous: !swap_async,
                slots: [SwapSlot::default(); NR_SWAP_SLOTS],
                cache: [None; NR_SWAP_SLOTS],
            },
            next_anon_vma: 0,
            io_queue,
            io_sleepers: emptied(b.io_sleepers, 0),
            uffd_poll: emptied(b.uffd_poll, 0),
            rcu_callbacks: emptied(b.rcu_callbacks, 0),
            rcu_daemon: None,
            counters: [0; 4],
            migration_failures: Vec::new(),
            growths: Vec::new(),
            monitor_records: emptied(b.monitor_records, 0),
            cur,
            contract,
            mutant,
            tid: 0,
            step: 0,
            wakes: emptied(b.wakes, 0),
        }
    }

    /// The current task's `current`.
    pub fn me(&mut self) -> &mut Current {
        let tid = self.tid;
        &mut self.cur[tid]
    }

    pub fn wake(&mut self, tid: TaskId) {
        self.wakes.push(tid);
    }

    /// An mm that exists (visible or being built by fork).
    ///
    /// # Panics
    /// If `id` names no mm: callers only hold ids of existing mms.
    pub fn mm(&self, id: MmId) -> &Mm {
        self.mms[id].as_ref().expect("mm exists")
    }

    /// # Panics
    /// As [`State::mm`].
    pub fn mm_mut(&mut self, id: MmId) -> &mut Mm {
        self.mms[id].as_mut().expect("mm exists")
    }

    /// The mm a user operation names, if it exists and is visible.
    pub fn user_mm(&self, id: MmId) -> Option<MmId> {
        self.mms[id].as_ref().filter(|m| m.visible).map(|m| m.id)
    }

    /// `dup_mm()` / the case's first mm: a new, not yet visible, mm with id `id`.
    pub fn new_mm(&mut self, id: MmId) {
        self.mm_order.push(id);
        self.next_mm_serial += 1;
        self.mms[id] = Some(Box::new(Mm {
            id,
            serial: self.next_mm_serial,
            mmap_lock: RwSem::default(),
            page_table_lock: SpinLock::default(),
            mm_lock_seq: 0,
            vmas: Vec::new(),
            pmd: [None; NR_TABLES],
            uffd: UffdCtx::default(),
            detached: Vec::new(),
            visible: false,
            fork_visited: Vec::new(),
        }));
    }

    /// Tear down mm `id` (a fork child nobody saw).
    pub fn remove_mm(&mut self, id: MmId) {
        self.mms[id] = None;
        self.mm_order.retain(|&m| m != id);
    }

    /// A new folio with one reference (owned by the allocating task).
    pub fn alloc_folio(&mut self, data: u32, device: bool, site: &'static str) -> FolioId {
        let id = FolioId::try_from(self.folios.len()).unwrap_or(FolioId::MAX);
        let tid = self.tid;
        self.folios.push(Folio {
            id,
            data,
            refcount: 1,
            mapcount: 0,
            locked: false,
            lock_owner: -1,
            waiters: TaskList::default(),
            wb_waiters: TaskList::default(),
            anon_exclusive: false,
            swapcache: -1,
            uptodate: true,
            dirty: false,
            writeback: false,
            lru: false,
            device,
            freed: false,
            refs: vec![(tid, site)],
        });
        id
    }

    /// `vm_area_alloc()`: `vm_lock_seq` starts at -1 (`vma_lock_alloc`).
    pub fn alloc_vma(&mut self, mm: MmId, start: Page, end: Page, flags: u32) -> VmaId {
        let id = self.vmas.len();
        self.vmas.push(Vma {
            id,
            mm,
            vm_start: start,
            vm_end: end,
            vm_flags: flags,
            anon_vma: None,
            anon_vma_chain_len: 0,
            uffd_ctx: None,
            vm_lock: RwSem::default(),
            vm_lock_seq: -1,
            detached: false,
            freed: false,
        });
        id
    }

    pub fn alloc_anon_vma(&mut self) -> u32 {
        self.next_anon_vma += 1;
        self.next_anon_vma
    }

    pub fn alloc_table(&mut self, mm: MmId, index: usize) -> TableId {
        let id = self.tables.len();
        self.tables.push(PageTable {
            mm,
            index,
            ptes: [PTE_NONE; PTRS_PER_TABLE],
            ptl: SpinLock::default(),
            freed: false,
        });
        id
    }

    /// The PTE of `page` read without any lock (None: no table).
    pub fn pte_lookup(&self, mm: MmId, page: Page) -> Option<Pte> {
        let t = self.mm(mm).pmd[page as usize / PTRS_PER_TABLE]?;
        Some(self.tables[t].ptes[page as usize % PTRS_PER_TABLE])
    }

    pub fn count_vma_lock_event(&mut self, event: VmaLockEvent) {
        self.counters[event as usize] += 1;
    }
}

/// The machine the tasks share: the scheduler, the kernel state, the mutant, tracing.
#[derive(Debug)]
pub struct Kernel {
    pub sched: RefCell<Sched<WaitOn>>,
    pub st: RefCell<State>,
    pub mutant: Mutant,
    pub trace: bool,
}

/// A borrow of the kernel state for one atomic stretch of a step (see the module docs).
pub struct St<'a> {
    k: &'a Kernel,
    s: RefMut<'a, State>,
}

impl std::fmt::Debug for St<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("St").field("tid", &self.s.tid).finish()
    }
}

impl Deref for St<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.s
    }
}

impl DerefMut for St<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.s
    }
}

impl Drop for St<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if !self.s.wakes.is_empty() {
            self.hand_over_wakes();
        }
    }
}

impl St<'_> {
    /// Hand the buffered wake-ups to the scheduler.
    #[inline(never)]
    fn hand_over_wakes(&mut self) {
        let mut sched = self.k.sched.borrow_mut();
        for t in self.s.wakes.drain(..) {
            sched.wake(t);
        }
    }
}

impl Kernel {
    /// A machine with `ntasks` task slots (spawn them on an executor in the same order), no
    /// mm yet, and the default step budget.
    pub fn new(
        nr_pages: u32,
        swap_async: bool,
        ntasks: usize,
        trace: bool,
        mutant: Mutant,
    ) -> Self {
        let mut sched = Sched::new(sched::DEFAULT_MAX_STEPS, sched::DEFAULT_STALL_STEPS, trace);
        sched.tasks.reserve_exact(ntasks);
        Self {
            sched: RefCell::new(sched),
            st: RefCell::new(State::new(nr_pages, swap_async, ntasks, trace, mutant)),
            mutant,
            trace,
        }
    }

    /// Start over as [`Kernel::new`] would, keeping the buffers of the state and the task
    /// table (see [`State::reset`]).
    pub fn reset(
        &mut self,
        nr_pages: u32,
        swap_async: bool,
        ntasks: usize,
        trace: bool,
        mutant: Mutant,
    ) {
        let Self {
            sched,
            st,
            mutant: my_mutant,
            trace: my_trace,
        } = self;
        let sched = sched.get_mut();
        let mut tasks = std::mem::take(&mut sched.tasks);
        tasks.clear();
        tasks.reserve_exact(ntasks);
        *sched = Sched::new(sched::DEFAULT_MAX_STEPS, sched::DEFAULT_STALL_STEPS, trace);
        sched.tasks = tasks;
        st.get_mut()
            .reset(nr_pages, swap_async, ntasks, trace, mutant);
        *my_mutant = mutant;
        *my_trace = trace;
    }

    /// Borrow the state for the current step (never hold it across an `.await`).
    pub fn st(&self) -> St<'_> {
        St {
            k: self,
            s: self.st.borrow_mut(),
        }
    }

    /// A task (re)starts running: tell the state which task and step this is. Every task body
    /// calls it first; every yield point of the kernel paths ([`Resume`]) calls it on return.
    pub fn resume(&self) {
        let (tid, step) = {
            let sched = self.sched.borrow();
            (sched.current.unwrap_or(0), sched.step)
        };
        let mut s = self.st.borrow_mut();
        s.tid = tid;
        s.step = step;
    }

    /// `[vm_start, vm_end)` of `vma` as it stands.
    pub fn vma_range(&self, vma: VmaId) -> (Page, Page) {
        let s = self.st.borrow();
        (s.vmas[vma].vm_start, s.vmas[vma].vm_end)
    }

    /// A yield point at `site`: the current step ends here.
    pub fn yield_now(&self, site: &'static str) -> Resume<'_> {
        Resume {
            k: self,
            inner: sched::yield_now(&self.sched, site),
            polled: false,
        }
    }

    /// Block the current task on `wait` at `site` until someone wakes it.
    pub fn block(&self, wait: WaitOn, site: &'static str) -> Resume<'_> {
        Resume {
            k: self,
            inner: sched::block_on(&self.sched, wait, site),
            polled: false,
        }
    }

    /// Sleep one tick at `site` (`schedule_timeout(1)`).
    pub fn sleep_tick(&self, site: &'static str) -> Resume<'_> {
        Resume {
            k: self,
            inner: sched::sleep_tick(&self.sched, site),
            polled: false,
        }
    }
}

/// A yield point of a kernel path ([`Yield`]) that, when the task runs again, records the
/// task and step in the state (so [`Kernel::st`] needs no scheduler borrow).
///
/// On its first poll it ends the step where it stands ([`Sched::end_step_in_place`]): when the
/// policy picks the same task again (three steps in four of a typical case), the task goes on
/// without unwinding its nested futures to the executor and re-entering them.
#[derive(Debug)]
pub struct Resume<'a> {
    k: &'a Kernel,
    inner: Yield,
    polled: bool,
}

impl Future for Resume<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.polled {
            self.polled = true;
            let k = self.k;
            let mut sched = k.sched.borrow_mut();
            let tid = sched.cur();
            let locks = if sched.features_on() {
                k.st.borrow().cur[tid].locks
            } else {
                0
            };
            if !sched.end_step_in_place(tid, locks) {
                drop(sched);
                // Pending, and ready on the next poll (when the task is picked again).
                return Pin::new(&mut self.inner).poll(cx);
            }
            drop(sched);
            k.resume();
            return Poll::Ready(());
        }
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.k.resume();
                Poll::Ready(())
            }
        }
    }
}
