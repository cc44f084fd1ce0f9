//! The deterministic scheduler runtime: the Rust mirror of `reference/sched.py`, whose module
//! docstring is the specification (policies, PCT, the SplitMix64 PRNG, budgets). Change both in
//! the same commit; `tests/vectors/sched_vectors.json` and `tests/test_sched.py` hold them
//! together.
//!
//! Tasks are `async` blocks polled by a single-threaded executor that we own, so the compiler
//! builds the state machines and kernel paths read as straight-line code. A yield point is
//! `yield_now(&sched, "site").await`: the future returns `Pending` once, which ends the step.
//! A task blocks by marking itself blocked in the shared [`Sched`] and yielding; the executor
//! only polls runnable tasks, so the next poll of that future means it was woken. No real
//! `Waker` is involved. The engine's yield points (`kernel::Resume`) end the step where they
//! stand instead ([`Sched::end_step_in_place`]): the same decisions, but a task the policy picks
//! again goes on without suspending.
//!
//! The scheduler state lives in a `RefCell` shared with the tasks. Never hold a borrow across
//! an `.await` (clippy's `await_holding_refcell_ref` is denied for the crate).
//!
//! With features on ([`Sched::enable_features`]) every step also records an interleaving
//! feature (`features`): the executor asks the engine for the running task's lock summary
//! after the step ([`Executor::run_with`]).

pub mod features;
pub mod toys;

use features::{feature_bucket, site_hash, FeatureMap};

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Task ids are dense and assigned in spawn order.
pub type TaskId = usize;

/// The most tasks one scheduler runs: task sets are kept as bit masks of ids.
pub const MAX_TASKS: usize = 64;

/// The bit of task `tid` in a task mask.
const fn bit(tid: TaskId) -> u64 {
    1 << tid
}

/// The ids in `mask`, in increasing order.
fn mask_ids(mut mask: u64) -> impl Iterator<Item = TaskId> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let tid = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(tid)
    })
}

pub const DEFAULT_MAX_STEPS: u64 = 200_000;
pub const DEFAULT_STALL_STEPS: u64 = 20_000;

/// The PRNG both languages share: SplitMix64.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)` for `1 <= n <= 2^32`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }

    /// [`SplitMix64::below`] for an index into a slice of length `n`.
    pub fn below_index(&mut self, n: usize) -> usize {
        // below(n) < n, so the value fits the usize it came from.
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Runnable,
    Blocked,
    Sleeping,
    Done,
}

/// What the scheduler knows of a task. `W` is the engine's description of what a blocked task
/// waits on (a lock, a folio, I/O ...), used for the wait-for graph.
#[derive(Debug, Clone)]
pub struct TaskInfo<W> {
    pub tid: TaskId,
    pub name: Cow<'static, str>,
    pub daemon: bool,
    /// Changed only through [`Sched::set_state`], which keeps the runnable mask.
    state: TaskState,
    pub wait: Option<W>,
    pub site: &'static str,
    /// [`site_hash`] of `site` as of the task's last step (with features only).
    site_hash: u32,
    sleep_step: u64,
    /// The tasks that were runnable when the timed sleep began (a mask of ids).
    sleep_wait: u64,
    /// The last step this task ran.
    last_step: u64,
}

impl<W> TaskInfo<W> {
    #[must_use]
    pub fn state(&self) -> TaskState {
        self.state
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// No task can run: everything finished, a user program hangs, or a deadlock.
    Idle,
    /// The step budget ran out, in all or without any operation completing.
    Livelock,
}

/// The scheduling policy (see the Python docstring for the exact rules).
#[derive(Debug, Clone)]
pub enum Policy {
    Serial,
    Explicit {
        choices: Vec<u8>,
        pos: usize,
    },
    Random {
        rng: SplitMix64,
    },
    Pct {
        prio: Vec<u64>,
        /// The priority change points `(pick count, lowered priority)`, in increasing count;
        /// `next` is the first not yet reached (the count goes up by one per pick).
        change: Vec<(u64, u64)>,
        next: usize,
        count: u64,
    },
}

impl Policy {
    /// The policy for a case's concurrent phase (strategy codes as in `fuzz.case.Strategy`).
    #[must_use]
    pub fn make(
        strategy: u8,
        seed: u64,
        depth: u64,
        steps: u64,
        choices: &[u8],
        ntasks: usize,
    ) -> Self {
        match strategy {
            1 => Policy::Explicit {
                choices: choices.to_vec(),
                pos: 0,
            },
            2 => Self::pct(seed, depth, steps, ntasks),
            3 => Policy::Random {
                rng: SplitMix64::new(seed),
            },
            _ => Policy::Serial,
        }
    }

    #[must_use]
    pub fn pct(seed: u64, depth: u64, steps: u64, ntasks: usize) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut prio: Vec<u64> = (depth..depth + ntasks as u64).collect();
        for i in (1..ntasks).rev() {
            let j = rng.below_index(i + 1);
            prio.swap(i, j);
        }
        let mut change = BTreeMap::new();
        for i in 1..depth {
            let mut k = 1 + rng.below(steps);
            while change.contains_key(&k) && steps + 1 >= depth {
                k = 1 + rng.below(steps);
            }
            change.insert(k, i);
        }
        Policy::Pct {
            prio,
            change: change.into_iter().collect(),
            next: 0,
            count: 0,
        }
    }
}

/// The scheduler state shared by the executor and the tasks.
#[derive(Debug)]
pub struct Sched<W> {
    pub tasks: Vec<TaskInfo<W>>,
    pub policy: Policy,
    pub step: u64,
    pub current: Option<TaskId>,
    pub active: Option<TaskId>,
    pub active_ops: usize,
    pub last_progress: u64,
    pub max_steps: u64,
    pub stall_steps: u64,
    /// Task chosen at every real decision (two or more runnable tasks).
    pub chosen: Vec<TaskId>,
    /// Index of that task in the runnable list: replayable as explicit choices.
    pub choice_log: Vec<u8>,
    pub trace: Option<Vec<(u64, TaskId, &'static str)>>,
    /// The interleaving features seen so far, when asked for.
    pub features: Option<FeatureMap>,
    /// The task that ran the step before the current one.
    prev: Option<TaskId>,
    sleepers: usize,
    /// The runnable tasks (a mask of ids), kept by [`Sched::set_state`].
    runnable_mask: u64,
    /// The daemon tasks (a mask of ids).
    daemon_mask: u64,
    /// The runnable task ids in increasing order, as of `runnable_of`.
    runnable: Vec<TaskId>,
    runnable_of: u64,
    /// The next pick, already made by [`Sched::end_step_in_place`] for another task.
    handoff: Option<Pick>,
}

#[derive(Debug, Clone, Copy)]
enum Pick {
    Task(TaskId),
    Idle,
    Livelock,
}

impl<W: Clone> Sched<W> {
    #[must_use]
    pub fn new(max_steps: u64, stall_steps: u64, trace: bool) -> Self {
        Self {
            tasks: Vec::new(),
            policy: Policy::Serial,
            step: 0,
            current: None,
            active: None,
            active_ops: 0,
            last_progress: 0,
            max_steps,
            stall_steps,
            chosen: Vec::with_capacity(64),
            choice_log: Vec::with_capacity(64),
            trace: trace.then(Vec::new),
            features: None,
            prev: None,
            sleepers: 0,
            runnable_mask: 0,
            daemon_mask: 0,
            runnable: Vec::new(),
            runnable_of: 0,
            handoff: None,
        }
    }

    /// Whether interleaving features are being recorded.
    #[must_use]
    pub fn features_on(&self) -> bool {
        self.features.is_some()
    }

    /// End the step of `tid`, which has just reached a yield point, and make the next pick
    /// here instead of in the executor. If the policy picks `tid` again, its next step begins
    /// at once (true) and the task goes on without suspending; otherwise the pick is kept for
    /// the executor (false) and the task must return `Pending`. The scheduler's decisions,
    /// steps, trace and features are exactly those of ending the step in the executor; only
    /// the unwinding and re-entering of the task's nested futures is saved. `locks` is the
    /// task's lock summary (read only with features).
    pub fn end_step_in_place(&mut self, tid: TaskId, locks: u32) -> bool {
        self.after_step(tid, false, locks);
        match self.next_pick() {
            Pick::Task(t) if t == tid => true,
            pick => {
                self.handoff = Some(pick);
                false
            }
        }
    }

    /// Record interleaving features from the next step on.
    pub fn enable_features(&mut self) {
        self.features.get_or_insert_with(FeatureMap::new);
    }

    /// The feature buckets seen so far, in increasing order (empty without features).
    #[must_use]
    pub fn feature_buckets(&self) -> Vec<u16> {
        self.features
            .as_ref()
            .map(FeatureMap::sorted)
            .unwrap_or_default()
    }

    /// The task running the current step.
    ///
    /// # Panics
    /// Outside a step (no task has run yet).
    #[must_use]
    pub fn cur(&self) -> TaskId {
        self.current.expect("no current task")
    }

    /// Set the state of `tid` (every state change goes through here).
    pub fn set_state(&mut self, tid: TaskId, state: TaskState) {
        self.tasks[tid].state = state;
        if state == TaskState::Runnable {
            self.runnable_mask |= bit(tid);
        } else {
            self.runnable_mask &= !bit(tid);
        }
    }

    /// Mark `tid` blocked on `wait`; the caller must yield right after.
    pub fn block(&mut self, tid: TaskId, wait: W) {
        self.set_state(tid, TaskState::Blocked);
        self.tasks[tid].wait = Some(wait);
    }

    pub fn wake(&mut self, tid: TaskId) {
        if self.tasks[tid].state == TaskState::Blocked {
            self.set_state(tid, TaskState::Runnable);
            self.tasks[tid].wait = None;
        }
    }

    /// `schedule_timeout(1)`: sleep until every task runnable now has run (or stopped being
    /// runnable); the caller yields next.
    pub fn sleep_timed(&mut self, tid: TaskId) {
        let step = self.step;
        let others = self.runnable_mask & !bit(tid);
        self.set_state(tid, TaskState::Sleeping);
        let t = &mut self.tasks[tid];
        t.sleep_step = step;
        t.sleep_wait = others;
        self.sleepers += 1;
    }

    /// `tid` starts a user operation; returns the invocation step.
    pub fn op_begin(&mut self, tid: TaskId) -> u64 {
        self.active = Some(tid);
        self.active_ops += 1;
        self.step
    }

    /// `tid`'s operation returned; returns the response step.
    pub fn op_end(&mut self, tid: TaskId) -> u64 {
        self.active_ops -= 1;
        if self.active == Some(tid) {
            self.active = None;
        }
        self.last_progress = self.step;
        self.step
    }

    /// Tasks that are not daemons and have not finished.
    #[must_use]
    pub fn unfinished(&self) -> Vec<TaskId> {
        self.tasks
            .iter()
            .filter(|t| t.state != TaskState::Done && !t.daemon)
            .map(|t| t.tid)
            .collect()
    }

    /// (task, site, waited-on object) for every blocked task.
    #[must_use]
    pub fn wait_for_graph(&self) -> Vec<(TaskId, &'static str, W)> {
        self.tasks
            .iter()
            .filter(|t| t.state == TaskState::Blocked)
            .filter_map(|t| t.wait.clone().map(|w| (t.tid, t.site, w)))
            .collect()
    }

    fn record(&mut self, tid: TaskId, index: usize) {
        self.chosen.push(tid);
        self.choice_log.push(u8::try_from(index).unwrap_or(u8::MAX));
    }

    /// Bring the runnable id list up to date with the runnable mask.
    fn refresh_runnable(&mut self) {
        if self.runnable_of != self.runnable_mask {
            self.runnable_of = self.runnable_mask;
            self.runnable.clear();
            self.runnable.extend(mask_ids(self.runnable_of));
        }
    }

    fn next_pick(&mut self) -> Pick {
        loop {
            let any = self.runnable_mask != 0;
            if any
                && (self.step >= self.max_steps
                    || self.step - self.last_progress >= self.stall_steps)
            {
                return Pick::Livelock;
            }
            let pick = if any { self.policy_pick() } else { None };
            match pick {
                Some(tid) => {
                    self.step += 1;
                    self.prev = self.current;
                    self.current = Some(tid);
                    self.tasks[tid].last_step = self.step;
                    return Pick::Task(tid);
                }
                None if self.sleepers > 0 => self.wake_sleepers(true),
                None => return Pick::Idle,
            }
        }
    }

    fn policy_pick(&mut self) -> Option<TaskId> {
        if let Policy::Serial = self.policy {
            return self.serial_pick();
        }
        self.refresh_runnable();
        let n = self.runnable.len();
        let (tid, real) = match &mut self.policy {
            Policy::Serial => return self.serial_pick(),
            Policy::Explicit { choices, pos } => {
                if n == 1 {
                    return Some(self.runnable[0]);
                }
                let tid = if *pos < choices.len() {
                    let c = usize::from(choices[*pos]);
                    *pos += 1;
                    self.runnable[c % n]
                } else {
                    match self.current {
                        Some(c) if self.tasks[c].state == TaskState::Runnable => c,
                        _ => self.runnable[0],
                    }
                };
                (tid, true)
            }
            Policy::Random { rng } => {
                if n == 1 {
                    return Some(self.runnable[0]);
                }
                (self.runnable[rng.below_index(n)], true)
            }
            Policy::Pct {
                prio,
                change,
                next,
                count,
            } => {
                *count += 1;
                let mut tid = highest(&self.runnable, prio);
                if let Some(&(at, lowered)) = change.get(*next) {
                    if at == *count {
                        *next += 1;
                        prio[tid] = lowered;
                        tid = highest(&self.runnable, prio);
                    }
                }
                (tid, n > 1)
            }
        };
        if real {
            let index = self.runnable.iter().position(|&t| t == tid).unwrap_or(0);
            self.record(tid, index);
        }
        Some(tid)
    }

    /// The active task if it can run, else the first runnable daemon, else (with no active
    /// operation) the first runnable task.
    fn serial_pick(&self) -> Option<TaskId> {
        let first = |mask: u64| mask_ids(mask).next();
        let daemon = first(self.runnable_mask & self.daemon_mask);
        match self.active {
            Some(a) if self.runnable_mask & bit(a) != 0 => Some(a),
            Some(_) => daemon,
            None => daemon.or_else(|| first(self.runnable_mask)),
        }
    }

    fn wake_sleepers(&mut self, force: bool) {
        for i in 0..self.tasks.len() {
            if self.tasks[i].state == TaskState::Sleeping && (force || self.tick_passed(i)) {
                self.set_state(i, TaskState::Runnable);
                self.tasks[i].sleep_wait = 0;
                self.sleepers -= 1;
            }
        }
    }

    /// A tick has passed for the timed sleeper `tid`: every task that was runnable when it
    /// went to sleep has run since, or is no longer runnable.
    fn tick_passed(&self, tid: TaskId) -> bool {
        let since = self.tasks[tid].sleep_step;
        mask_ids(self.tasks[tid].sleep_wait).all(|o| {
            let other = &self.tasks[o];
            other.last_step > since || other.state != TaskState::Runnable
        })
    }

    /// The step of `tid` ended; `locks` is its lock summary (only read with features).
    #[inline(always)]
    fn after_step(&mut self, tid: TaskId, finished: bool, locks: u32) {
        if finished {
            self.set_state(tid, TaskState::Done);
            self.tasks[tid].site = "";
        }
        if self.features.is_some() {
            self.record_feature(tid, locks);
        }
        if let Some(trace) = &mut self.trace {
            trace.push((self.step, tid, self.tasks[tid].site));
        }
        if self.sleepers > 0 {
            self.wake_sleepers(false);
        }
    }

    /// The interleaving feature of the step `tid` just ran.
    fn record_feature(&mut self, tid: TaskId, locks: u32) {
        let h = site_hash(self.tasks[tid].site);
        self.tasks[tid].site_hash = h;
        let prev_h = match self.prev {
            Some(p) if p != tid => self.tasks[p].site_hash,
            _ => 0,
        };
        if let Some(map) = &mut self.features {
            map.insert(feature_bucket(h, locks, prev_h));
        }
    }
}

/// The first task with the highest priority (the Python `max` keeps the first maximum too).
fn highest(runnable: &[TaskId], prio: &[u64]) -> TaskId {
    let mut best = runnable[0];
    for &t in &runnable[1..] {
        if prio[t] > prio[best] {
            best = t;
        }
    }
    best
}

/// A yield point: `Pending` once, then `Ready`.
#[derive(Debug)]
pub struct Yield {
    done: bool,
}

impl Future for Yield {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            Poll::Ready(())
        } else {
            self.done = true;
            Poll::Pending
        }
    }
}

/// Yield at `site`: the current step ends here.
pub fn yield_now<W: Clone>(sched: &RefCell<Sched<W>>, site: &'static str) -> Yield {
    let mut s = sched.borrow_mut();
    let cur = s.cur();
    s.tasks[cur].site = site;
    Yield { done: false }
}

/// Block the current task on `wait` at `site`; the returned future completes once woken.
pub fn block_on<W: Clone>(sched: &RefCell<Sched<W>>, wait: W, site: &'static str) -> Yield {
    let mut s = sched.borrow_mut();
    let cur = s.cur();
    s.block(cur, wait);
    s.tasks[cur].site = site;
    Yield { done: false }
}

/// Sleep one tick at `site` (`schedule_timeout(1)`).
pub fn sleep_tick<W: Clone>(sched: &RefCell<Sched<W>>, site: &'static str) -> Yield {
    let mut s = sched.borrow_mut();
    let cur = s.cur();
    s.sleep_timed(cur);
    s.tasks[cur].site = site;
    Yield { done: false }
}

type TaskFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The executor: owns the task futures and polls one per step under the shared [`Sched`].
pub struct Executor<W> {
    futures: Vec<Option<TaskFuture>>,
    _wait: std::marker::PhantomData<W>,
}

impl<W> std::fmt::Debug for Executor<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("tasks", &self.futures.len())
            .finish()
    }
}

impl<W: Clone> Default for Executor<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Clone> Executor<W> {
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An executor with room for `ntasks` tasks.
    #[must_use]
    pub fn with_capacity(ntasks: usize) -> Self {
        Self {
            futures: Vec::with_capacity(ntasks),
            _wait: std::marker::PhantomData,
        }
    }

    /// Add a task with no body yet; ids are given in spawn order.
    ///
    /// # Panics
    /// Beyond [`MAX_TASKS`] tasks.
    pub fn spawn(
        &mut self,
        sched: &RefCell<Sched<W>>,
        name: impl Into<Cow<'static, str>>,
        daemon: bool,
    ) -> TaskId {
        let mut s = sched.borrow_mut();
        let tid = s.tasks.len();
        assert!(tid < MAX_TASKS, "at most {MAX_TASKS} tasks");
        s.tasks.push(TaskInfo {
            tid,
            name: name.into(),
            daemon,
            state: TaskState::Done,
            wait: None,
            site: "",
            site_hash: site_hash(""),
            sleep_step: 0,
            sleep_wait: 0,
            last_step: 0,
        });
        if daemon {
            s.daemon_mask |= bit(tid);
        }
        self.futures.push(None);
        tid
    }

    /// Give `tid` a body; it becomes runnable.
    pub fn start(
        &mut self,
        sched: &RefCell<Sched<W>>,
        tid: TaskId,
        body: impl Future<Output = ()> + 'static,
    ) {
        self.futures[tid] = Some(Box::pin(body));
        let mut s = sched.borrow_mut();
        s.set_state(tid, TaskState::Runnable);
        s.tasks[tid].wait = None;
    }

    /// Run until nothing can run or the budget is spent.
    pub fn run(&mut self, sched: &RefCell<Sched<W>>) -> RunOutcome {
        self.run_with(sched, |_| 0)
    }

    /// [`Executor::run`], with `locks(tid)` giving the lock summary of task `tid` after each
    /// of its steps (asked only when features are on; it must not borrow `sched`).
    pub fn run_with(
        &mut self,
        sched: &RefCell<Sched<W>>,
        mut locks: impl FnMut(TaskId) -> u32,
    ) -> RunOutcome {
        let mut cx = Context::from_waker(Waker::noop());
        let mut handoff = None;
        loop {
            let pick = match handoff.take() {
                Some(pick) => pick,
                None => sched.borrow_mut().next_pick(),
            };
            let tid = match pick {
                Pick::Task(tid) => tid,
                Pick::Idle => return RunOutcome::Idle,
                Pick::Livelock => return RunOutcome::Livelock,
            };
            let Some(fut) = self.futures[tid].as_mut() else {
                // A runnable task always has a body; treat a missing one as finished.
                sched.borrow_mut().after_step(tid, true, 0);
                continue;
            };
            let finished = fut.as_mut().poll(&mut cx).is_ready();
            if finished {
                self.futures[tid] = None;
            }
            let mut s = sched.borrow_mut();
            if !finished && s.handoff.is_some() {
                // The task ended its step in place (`end_step_in_place`) and suspended.
                handoff = s.handoff.take();
                continue;
            }
            let held = if s.features.is_some() { locks(tid) } else { 0 };
            s.after_step(tid, finished, held);
        }
    }
}
