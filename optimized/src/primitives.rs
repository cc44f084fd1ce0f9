//! The contract layer: the model's lockdep and KASAN, which every kernel path goes through.
//!
//! Every lock acquisition and release, every sleep and every PTE write goes through this
//! module (or through the lock modules built on it: `rwsem`, `mmap_lock`, `vma_lock`, `folio`,
//! `pgtable`), which keeps, per task, the list of locks it holds and checks the rules of
//! MODEL.md §4.2 *independently of the handler logic*. A broken rule is recorded as a
//! [`Violation`] with its stable rule id; the run goes on unless continuing would corrupt the
//! model (`Abort::Stop`).
//!
//! | rule                      | checked where                                                  |
//! |---------------------------|----------------------------------------------------------------|
//! | `lock.release-unheld`     | [`lock_released`]: the task does not hold the lock in that mode |
//! | `lock.recursive`          | [`lock_acquired`]: the task already holds the lock (any mode)  |
//! | `lock.sleep-under-ptl`    | [`might_sleep`]: a blocking wait, I/O or timed sleep under a spinlock |
//! | `lock.held-at-return`     | [`assert_no_locks_held`]: a user operation returns holding something |
//! | `lock.held-at-quiescence` | `snapshot::check_quiescence`                                   |
//!
//! **Spinlocks** (PTL, `mm->page_table_lock`) are in `spinlock` (re-exported here).
//!
//! **Lock summary.** Every acquisition and release also updates [`Current::locks`], the summary
//! the scheduler's interleaving features read: a 4-bit count per lock class
//! ([`crate::sched::features::LOCK_FIELDS`]). A folio's `PG_locked` counts for the task that
//! took it until anyone unlocks the folio (the I/O completion, for a folio handed to
//! writeback), as in `reference/primitives.py`.

use crate::inline::InlineVec;
use crate::objects::{FolioId, Kernel, MmId, State, TableId, VmaId};
use crate::sched::features::lock_field;
use crate::sched::TaskId;

pub const MAX_VIOLATIONS: usize = 64;

/// Why a task path stops early. Never an expected outcome: expected outcomes are values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abort {
    /// A violation that would corrupt the model if the run went on (already recorded).
    Stop,
    /// A broken internal invariant of the model itself (`EngineError`).
    Model(String),
}

pub type KResult<T> = Result<T, Abort>;

/// A broken model invariant, as an `Err`.
#[cold]
pub fn model_error<T>(msg: impl Into<String>) -> KResult<T> {
    Err(Abort::Model(msg.into()))
}

/// A broken rule found by the contract layer (`fuzz.record.Violation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub function: String,
    pub message: String,
    pub step: u64,
    pub task: TaskId,
}

/// A lock event (`fuzz.record.LockEvent`), recorded only when tracing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEvent {
    pub step: u64,
    pub task: TaskId,
    pub action: &'static str,
    pub primitive: &'static str,
    pub obj: String,
    pub mode: &'static str,
    pub seq: Vec<i64>,
}

/// Per-run lockdep/KASAN state: the violations found and (with tracing) the lock events.
#[derive(Debug, Clone, Default)]
pub struct Contract {
    pub violations: Vec<Violation>,
    pub events: Option<Vec<LockEvent>>,
    /// Locked folios and the task that locked each (for the lock summary).
    pub folio_owner: Vec<(FolioId, TaskId)>,
}

impl Contract {
    pub fn new(trace: bool) -> Self {
        Self {
            violations: Vec::new(),
            events: trace.then(Vec::new),
            folio_owner: Vec::new(),
        }
    }
}

const FOLIO_LOCK_WEIGHT: u32 = 1 << (4 * lock_field::FOLIO_LOCK);

/// What holding `lock` in `mode` adds to [`Current::locks`].
const fn lock_weight(lock: LockId, mode: Mode) -> u32 {
    let class = match (lock, mode) {
        (LockId::Mmap(_), Mode::Write) => lock_field::MMAP_WRITE,
        (LockId::Mmap(_), _) => lock_field::MMAP_READ,
        (LockId::Vm(_), Mode::Write) => lock_field::VM_WRITE,
        (LockId::Vm(_), _) => lock_field::VM_READ,
        (LockId::Ptl(_), _) => lock_field::PTL,
        (LockId::PageTableLock(_), _) => lock_field::PAGE_TABLE_LOCK,
    };
    1 << (4 * class)
}

/// Every lock the contract layer tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockId {
    Mmap(MmId),
    Vm(VmaId),
    Ptl(TableId),
    PageTableLock(MmId),
}

impl Default for LockId {
    fn default() -> Self {
        LockId::Mmap(0)
    }
}

/// The mode a lock is held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Read,
    Write,
    Spin,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Read => "r",
            Mode::Write => "w",
            Mode::Spin => "spin",
        }
    }
}

/// The model of `current`: one per task.
#[allow(clippy::struct_excessive_bools)] // the kernel's own flag bits
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub held: InlineVec<(LockId, Mode), 16>,
    /// The lock summary: a 4-bit count per class of
    /// [`LOCK_FIELDS`](crate::sched::features::LOCK_FIELDS).
    pub locks: u32,
    pub nspin: u32,
    /// `fatal_signal_pending(current)`.
    pub killed: bool,
    /// Sleeping in a killable (or interruptible) wait.
    pub killable: bool,
    /// The `mmu_gather` batch: references put by `tlb_finish_mmu`.
    pub tlb: Vec<FolioId>,
    /// An rwsem wait of this task was granted.
    pub granted: bool,
    /// A folio wait of this task was woken.
    pub woken: bool,
    /// `uwq->waken`: a userfault wait of this task was woken.
    pub uffd_waken: bool,
    /// The case operation this task is running (for reports).
    pub op_index: Option<usize>,
    pub rcu_nesting: u32,
    /// How many RCU read sections the task has left (for grace periods).
    pub rcu_exits: u64,
}

pub fn lock_name(s: &State, lock: LockId) -> String {
    match lock {
        LockId::Mmap(mm) => format!("mm{mm}.mmap_lock"),
        LockId::Vm(v) => format!("vma#{v}.vm_lock"),
        LockId::Ptl(t) => format!("mm{}.pt{}.ptl", s.tables[t].mm, s.tables[t].index),
        LockId::PageTableLock(mm) => format!("mm{mm}.page_table_lock"),
    }
}

/// `(mm_lock_seq, vm_lock_seq)` as they stand, for a lock event.
fn lock_seq(s: &State, lock: LockId) -> Vec<i64> {
    match lock {
        LockId::Mmap(mm) => vec![s.mm(mm).mm_lock_seq],
        LockId::Vm(v) => {
            let vma = &s.vmas[v];
            let mm_seq = s.mms[vma.mm].as_ref().map_or(-1, |m| m.mm_lock_seq);
            vec![mm_seq, vma.vm_lock_seq]
        }
        LockId::Ptl(_) | LockId::PageTableLock(_) => Vec::new(),
    }
}

/// Record a broken rule (the run goes on; see [`violate_fatal`]).
#[cold]
pub fn violate(s: &mut State, rule: &'static str, function: &str, message: String) {
    if s.contract.violations.len() < MAX_VIOLATIONS {
        let (step, task) = (s.step, s.tid);
        s.contract.violations.push(Violation {
            rule,
            function: function.to_owned(),
            message,
            step,
            task,
        });
    }
}

/// Record a broken rule and stop the run: continuing would corrupt the model.
#[cold]
pub fn violate_fatal<T>(
    s: &mut State,
    rule: &'static str,
    function: &str,
    message: String,
) -> KResult<T> {
    violate(s, rule, function, message);
    Err(Abort::Stop)
}

/// Record a lock event for `lock` (only when tracing).
#[inline(always)]
pub fn event(
    s: &mut State,
    action: &'static str,
    primitive: &'static str,
    lock: LockId,
    mode: Mode,
) {
    if s.contract.events.is_some() {
        lock_event(s, action, primitive, lock, mode);
    }
}

#[inline(never)]
fn lock_event(
    s: &mut State,
    action: &'static str,
    primitive: &'static str,
    lock: LockId,
    mode: Mode,
) {
    let obj = lock_name(s, lock);
    let seq = lock_seq(s, lock);
    event_obj(s, action, primitive, obj, mode.name(), seq);
}

/// The lock summary follows a folio's `PG_locked` (`folio_event` of `folio_lock`).
#[inline]
fn folio_lock_summary(s: &mut State, action: &str, f: FolioId) {
    if action == "acquire" {
        let tid = s.tid;
        s.contract.folio_owner.push((f, tid));
        s.cur[tid].locks += FOLIO_LOCK_WEIGHT;
    } else if action == "release" {
        let owners = &mut s.contract.folio_owner;
        if let Some(i) = owners.iter().position(|&(g, _)| g == f) {
            let (_, owner) = owners.swap_remove(i);
            s.cur[owner].locks -= FOLIO_LOCK_WEIGHT;
        }
    }
}

/// Record a lock event on a named object (folios, I/O).
pub fn event_obj(
    s: &mut State,
    action: &'static str,
    primitive: &'static str,
    obj: String,
    mode: &'static str,
    seq: Vec<i64>,
) {
    let (step, task) = (s.step, s.tid);
    if let Some(events) = &mut s.contract.events {
        events.push(LockEvent {
            step,
            task,
            action,
            primitive,
            obj,
            mode,
            seq,
        });
    }
}

/// Record a lock event on folio `f`'s `PG_locked` bit (only when tracing).
#[inline(always)]
pub fn folio_event(
    s: &mut State,
    action: &'static str,
    primitive: &'static str,
    f: FolioId,
    mode: &'static str,
) {
    if primitive == "folio_lock" {
        folio_lock_summary(s, action, f);
    }
    if s.contract.events.is_some() {
        folio_lock_event(s, action, primitive, f, mode);
    }
}

#[inline(never)]
fn folio_lock_event(
    s: &mut State,
    action: &'static str,
    primitive: &'static str,
    f: FolioId,
    mode: &'static str,
) {
    event_obj(s, action, primitive, format!("folio#{f}"), mode, Vec::new());
}

/// Whether the current task holds `lock` (in `mode`, if given).
#[inline(always)]
pub fn holds(s: &State, lock: LockId, mode: Option<Mode>) -> bool {
    s.cur[s.tid]
        .held
        .iter()
        .any(|&(l, m)| l == lock && mode.is_none_or(|want| want == m))
}

/// Whether the current task holds any VMA read lock (the per-VMA fault lock).
#[inline]
pub fn holds_vma_read_lock(s: &State) -> Option<VmaId> {
    s.cur[s.tid].held.iter().find_map(|&(l, m)| match (l, m) {
        (LockId::Vm(v), Mode::Read) => Some(v),
        _ => None,
    })
}

/// Account an acquisition by task `tid` (after it succeeded).
#[inline]
pub fn lock_acquired_by(
    s: &mut State,
    tid: TaskId,
    lock: LockId,
    mode: Mode,
    primitive: &'static str,
) {
    if s.cur[tid].held.iter().any(|&(l, _)| l == lock) {
        recursive_acquire(s, lock, mode, primitive);
    }
    let cur = &mut s.cur[tid];
    cur.held.push((lock, mode));
    cur.locks += lock_weight(lock, mode);
    if mode == Mode::Spin {
        cur.nspin += 1;
    }
    if s.contract.events.is_some() {
        acquire_event(s, tid, lock, mode, primitive);
    }
}

#[cold]
#[inline(never)]
fn recursive_acquire(s: &mut State, lock: LockId, mode: Mode, primitive: &'static str) {
    let name = lock_name(s, lock);
    violate(
        s,
        "lock.recursive",
        primitive,
        format!("{name} acquired ({}) while held", mode.name()),
    );
}

#[inline(never)]
fn acquire_event(s: &mut State, tid: TaskId, lock: LockId, mode: Mode, primitive: &'static str) {
    let saved = s.tid;
    s.tid = tid;
    event(s, "acquire", primitive, lock, mode);
    s.tid = saved;
}

/// Account an acquisition by the current task.
#[inline]
pub fn lock_acquired(s: &mut State, lock: LockId, mode: Mode, primitive: &'static str) {
    let tid = s.tid;
    lock_acquired_by(s, tid, lock, mode, primitive);
}

/// Account a release by the current task; false (and a violation) if it did not hold it.
#[inline]
pub fn lock_released(s: &mut State, lock: LockId, mode: Mode, primitive: &'static str) -> bool {
    let tid = s.tid;
    let held = &mut s.cur[tid].held;
    let Some(i) = held.iter().rposition(|&(l, m)| l == lock && m == mode) else {
        release_unheld(s, lock, mode, primitive);
        return false;
    };
    if i + 1 == held.len() {
        held.pop();
    } else {
        held.remove(i);
    }
    s.cur[tid].locks -= lock_weight(lock, mode);
    if mode == Mode::Spin {
        s.cur[tid].nspin -= 1;
    }
    event(s, "release", primitive, lock, mode);
    true
}

#[cold]
#[inline(never)]
fn release_unheld(s: &mut State, lock: LockId, mode: Mode, primitive: &'static str) {
    let name = lock_name(s, lock);
    violate(
        s,
        "lock.release-unheld",
        primitive,
        format!("{name} released ({}) but not held", mode.name()),
    );
}

/// `might_sleep()`: a blocking point must not be reached holding a spinlock.
#[inline(always)]
pub fn might_sleep(s: &mut State, function: &str) {
    if s.cur[s.tid].nspin > 0 {
        sleep_under_spinlock(s, function);
    }
}

#[inline(never)]
fn sleep_under_spinlock(s: &mut State, function: &str) {
    let names: Vec<String> = s.cur[s.tid]
        .held
        .iter()
        .filter(|(_, m)| *m == Mode::Spin)
        .map(|&(l, _)| lock_name(s, l))
        .collect();
    violate(
        s,
        "lock.sleep-under-ptl",
        function,
        format!("may sleep holding {}", names.join(", ")),
    );
}

/// Return to user space (or quiescence): the task must hold nothing.
pub fn assert_no_locks_held(s: &mut State, tid: TaskId, function: &str, rule: &'static str) {
    if s.cur[tid].held.is_empty() {
        return;
    }
    let names: Vec<String> = s.cur[tid]
        .held
        .iter()
        .map(|&(l, m)| format!("{}:{}", lock_name(s, l), m.name()))
        .collect();
    let saved = s.tid;
    s.tid = tid;
    violate(
        s,
        rule,
        function,
        format!("still holding {}", names.join(", ")),
    );
    s.tid = saved;
}

/// The function part of a yield-point site (`"folio_lock:wait"` -> `"folio_lock"`).
pub fn site_function(site: &'static str) -> &'static str {
    site.split(':').next().unwrap_or(site)
}

/// `schedule_timeout_uninterruptible(1)`: sleep until another task has run.
pub async fn schedule_timeout_uninterruptible(k: &Kernel, site: &'static str) {
    might_sleep(&mut k.st(), site_function(site));
    k.sleep_tick(site).await;
}

/// Synchronous I/O (zram-like): may sleep, completes inside the call.
pub async fn io_schedule(k: &Kernel, site: &'static str) {
    might_sleep(&mut k.st(), site_function(site));
    k.yield_now(site).await;
}

pub use crate::spinlock::{spin_lock, spin_unlock, SpinLock};
