//! `run(case)`: one deterministic run of a case through the optimized kernel (MODEL.md §5),
//! the mirror of `reference/run.py`.
//!
//! Tasks: threads `0..T-1`, `main` (T: setup and post), the swap I/O daemon (T+1), the RCU
//! daemon (T+2: frees VMAs after a grace period) and, if the case names one, the userfaultfd
//! monitor (T+3). Phases: setup (serial policy), the concurrent part (the case's strategy),
//! post (serial). At the end of each phase nothing can run; every unfinished user task then
//! either sleeps in `handle_userfault` (its operation is `hung`, the task leaves) or the run is
//! a deadlock (with the wait-for graph) and stops. Running out of steps is a livelock. Under the
//! `serial` strategy a snapshot is taken after every operation, at the next operation's start
//! (when the daemons have drained) and at the end. With `features`, the record carries the
//! run's interleaving features (`sched::features`), tagged [`crate::record::FEATURE_TAG`].

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

use crate::case::{Case, Op, OpKind, Strategy};
use crate::mutant::Mutant;
use crate::objects::{Kernel, WaitOn};
use crate::ops::{do_op, ESRCH};
use crate::primitives::{assert_no_locks_held, Abort, KResult};
use crate::rcu::rcu_daemon;
use crate::record::{
    step_i64, OpRecord, RunRecord, Snapshot, WaitEdge, RES_HUNG, RES_KILLED, RES_NOT_RUN,
    STATUS_DEADLOCK, STATUS_LIVELOCK, STATUS_OK,
};
use crate::sched::{Executor, Policy, RunOutcome, TaskId, TaskState};
use crate::snapshot::{check_quiescence, take_snapshot};
use crate::swap::swap_io_daemon;
use crate::userfaultfd::uffd_monitor;

/// A broken internal invariant of the engine (Python's `optimized.EngineError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError(pub String);

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "engine invariant broken: {}", self.0)
    }
}

impl std::error::Error for EngineError {}

/// Per-op bookkeeping the task bodies share with the engine.
#[derive(Debug, Default)]
struct Book {
    /// (invoke, response, result) per op of the case.
    results: Vec<[i64; 3]>,
    owner: Vec<Option<TaskId>>,
    finished: Vec<bool>,
    pending_snapshot: Option<usize>,
    snapshots: Vec<Snapshot>,
    abort: Option<Abort>,
}

impl Book {
    /// The bookkeeping of a new run of `nops` ops on `nthreads` threads, keeping the buffers.
    fn reset(&mut self, nops: usize, nthreads: usize, serial: bool) {
        let old = std::mem::take(self);
        *self = Book {
            results: refill(old.results, nops, [-1, -1, RES_NOT_RUN]),
            owner: refill(old.owner, nops, None),
            finished: refill(old.finished, nthreads, false),
            pending_snapshot: None,
            // The record takes the snapshots: at most one per op, taken under serial only.
            snapshots: Vec::with_capacity(if serial { nops } else { 0 }),
            abort: None,
        };
    }
}

/// `v` holding `n` copies of `x`, in its own buffer.
fn refill<T: Clone>(mut v: Vec<T>, n: usize, x: T) -> Vec<T> {
    v.clear();
    v.resize(n, x);
    v
}

/// The part of a case an op belongs to (`fuzz.record.OpRecord.part`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Setup,
    Thread,
    Post,
}

impl Part {
    const fn name(self) -> &'static str {
        match self {
            Part::Setup => "setup",
            Part::Thread => "thread",
            Part::Post => "post",
        }
    }
}

/// One run: the kernel, the task ids, the bookkeeping.
#[derive(Debug)]
struct Runner {
    k: Kernel,
    /// (index in case order, part, thread, op) for every op of the case.
    ops: Vec<(usize, Part, usize, Op)>,
    book: RefCell<Book>,
    serial: bool,
    threads: Vec<TaskId>,
    main: TaskId,
}

/// `out` := (index in case order, part, thread, op) for every op of the case.
fn index_ops(out: &mut Vec<(usize, Part, usize, Op)>, case: &Case) {
    let threads = case.threads.iter().enumerate();
    let parts = (case.setup.iter().map(|&o| (Part::Setup, 0, o)))
        .chain(threads.flat_map(|(t, ops)| ops.iter().map(move |&o| (Part::Thread, t, o))))
        .chain(case.post.iter().map(|&o| (Part::Post, 0, o)));
    out.clear();
    out.reserve(case.op_count());
    out.extend(parts.enumerate().map(|(i, (p, t, o))| (i, p, t, o)));
}

/// The task name of thread `i` (`t0`, `t1`, ...).
fn thread_name(i: usize) -> Cow<'static, str> {
    const NAMES: [&str; 8] = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"];
    NAMES
        .get(i)
        .map_or_else(|| format!("t{i}").into(), |&n| n.into())
}

/// Run `case` through the optimized engine; the same case gives the same record. With `trace`,
/// lock events and the step trace are kept.
pub fn run(case: &Case, mutant: Mutant, trace: bool) -> Result<RunRecord, EngineError> {
    run_with(case, mutant, trace, false)
}

/// [`run`], and with `features` the record carries the interleaving features.
pub fn run_with(
    case: &Case,
    mutant: Mutant,
    trace: bool,
    features: bool,
) -> Result<RunRecord, EngineError> {
    let ntasks = case.threads.len() + 3 + usize::from(case.uffd_monitor);
    let mut runner = SPARE.take().unwrap_or_else(|| Rc::new(Runner::empty()));
    let mut ex: Executor<WaitOn> = Executor::with_capacity(ntasks);
    let (io, rcu, monitor) = prepare(&mut runner, &mut ex, ntasks, case, mutant, trace, features);
    start_daemons(&runner, &mut ex, io, rcu, monitor);
    let status = run_phases(&runner, &mut ex, case);
    let record = finish(&runner, status);
    // The task bodies hold the other references to the runner: with them gone it is free to
    // serve the next run on this thread.
    drop(ex);
    if Rc::strong_count(&runner) == 1 && Rc::weak_count(&runner) == 0 {
        SPARE.set(Some(runner));
    }
    record
}

thread_local! {
    /// The runner of the last run on this thread, for the next run to reset ([`Runner::reset`])
    /// instead of allocating its kernel and buffers anew. Runs on one thread never overlap; a
    /// run that panics leaves nothing here.
    static SPARE: Cell<Option<Rc<Runner>>> = const { Cell::new(None) };
}

/// Make `runner` (not shared yet) the runner of `case`: reset it, spawn the `ntasks` tasks on
/// `ex`, make the first mm. The daemons' task ids: swap I/O, RCU, the uffd monitor if any.
fn prepare(
    runner: &mut Rc<Runner>,
    ex: &mut Executor<WaitOn>,
    ntasks: usize,
    case: &Case,
    mutant: Mutant,
    trace: bool,
    features: bool,
) -> (TaskId, TaskId, Option<TaskId>) {
    let r = Rc::get_mut(runner).expect("a new or spare runner is not shared");
    let nthreads = case.threads.len();
    r.reset(case, mutant, trace, ntasks);
    let k = &mut r.k;
    if features {
        k.sched.get_mut().enable_features();
    }
    r.threads
        .extend((0..nthreads).map(|i| ex.spawn(&k.sched, thread_name(i), false)));
    r.main = ex.spawn(&k.sched, "main", false);
    let io = ex.spawn(&k.sched, "swap_io", true);
    let rcu = ex.spawn(&k.sched, "rcu", true);
    let monitor = case
        .uffd_monitor
        .then(|| ex.spawn(&k.sched, "uffd_monitor", true));
    let s = k.st.get_mut();
    s.new_mm(0);
    s.mm_mut(0).visible = true;
    s.rcu_daemon = Some(rcu);
    (io, rcu, monitor)
}

fn start_daemons(
    r: &Rc<Runner>,
    ex: &mut Executor<WaitOn>,
    io: TaskId,
    rcu: TaskId,
    monitor: Option<TaskId>,
) {
    let rr = Rc::clone(r);
    ex.start(&r.k.sched, io, async move {
        rr.k.resume();
        rr.settle(swap_io_daemon(&rr.k).await);
    });
    let rr = Rc::clone(r);
    ex.start(&r.k.sched, rcu, async move {
        rr.k.resume();
        rr.settle(rcu_daemon(&rr.k).await);
    });
    if let Some(m) = monitor {
        let rr = Rc::clone(r);
        ex.start(&r.k.sched, m, async move {
            rr.k.resume();
            rr.settle(uffd_monitor(&rr.k).await);
        });
    }
}

/// The three phases; the run's status.
fn run_phases(r: &Rc<Runner>, ex: &mut Executor<WaitOn>, case: &Case) -> &'static str {
    // The ops are in case order: setup, each thread's in turn, post; each part is a range.
    let setup = 0..case.setup.len();
    let post = r.ops.len() - case.post.len()..r.ops.len();
    start_user(r, ex, r.main, setup.clone(), None);
    let mut status = r.run_phase(ex);
    if status == STATUS_OK && !r.aborted() {
        let mut at = setup.end;
        for (t, (&tid, ops)) in r.threads.iter().zip(&case.threads).enumerate() {
            start_user(r, ex, tid, at..at + ops.len(), Some(t));
            at += ops.len();
        }
        let s = &case.schedule;
        let ntasks = r.k.sched.borrow().tasks.len();
        r.k.sched.borrow_mut().policy = Policy::make(
            s.strategy.code(),
            s.seed,
            u64::from(s.depth),
            u64::from(s.steps),
            &s.choices,
            ntasks,
        );
        status = r.run_phase(ex);
    }
    if status == STATUS_OK && !r.aborted() {
        r.k.sched.borrow_mut().policy = Policy::Serial;
        start_user(r, ex, r.main, post, None);
        status = r.run_phase(ex);
    }
    status
}

fn start_user(
    r: &Rc<Runner>,
    ex: &mut Executor<WaitOn>,
    tid: TaskId,
    ops: Range<usize>,
    thread: Option<usize>,
) {
    let rr = Rc::clone(r);
    let body = async move {
        rr.k.resume();
        let res = rr.user_body(tid, ops, thread).await;
        rr.settle(res);
    };
    ex.start(&r.k.sched, tid, body);
}

impl Runner {
    /// A runner for no case yet: [`Runner::reset`] makes it one for a case.
    fn empty() -> Self {
        Self {
            k: Kernel::new(0, false, 0, false, Mutant::None),
            ops: Vec::new(),
            book: RefCell::default(),
            serial: false,
            threads: Vec::new(),
            main: 0,
        }
    }

    /// Make this the runner of `case` with `ntasks` task slots, as if new, keeping the
    /// buffers; the tasks are spawned next (`threads` and `main` are theirs to fill).
    fn reset(&mut self, case: &Case, mutant: Mutant, trace: bool, ntasks: usize) {
        let Self {
            k,
            ops,
            book,
            serial,
            threads,
            main,
        } = self;
        k.reset(
            u32::from(case.nr_pages),
            case.swap_async,
            ntasks,
            trace,
            mutant,
        );
        index_ops(ops, case);
        *serial = case.schedule.strategy == Strategy::Serial;
        book.get_mut().reset(ops.len(), case.threads.len(), *serial);
        threads.clear();
        *main = 0;
    }

    fn aborted(&self) -> bool {
        self.book.borrow().abort.is_some()
    }

    /// A task body ended: an `Abort` stops the whole run at once.
    fn settle(&self, res: KResult<()>) {
        if let Err(e) = res {
            let mut book = self.book.borrow_mut();
            if book.abort.is_none() {
                book.abort = Some(e);
            }
            // Nothing else may run: the budget ends with this step.
            let mut sched = self.k.sched.borrow_mut();
            sched.max_steps = sched.step;
        }
    }

    async fn user_body(
        &self,
        tid: TaskId,
        ops: Range<usize>,
        thread: Option<usize>,
    ) -> KResult<()> {
        for idx in ops {
            let op = self.ops[idx].3;
            self.k.yield_now("op:start").await;
            self.take_pending_snapshot();
            {
                let mut s = self.k.st();
                if s.cur[tid].killed {
                    break; // a killed task stops: its remaining ops are not run
                }
                s.cur[tid].op_index = Some(idx);
            }
            let invoke = self.k.sched.borrow_mut().op_begin(tid);
            {
                let mut book = self.book.borrow_mut();
                book.owner[idx] = Some(tid);
                // Pending: no result until it returns.
                book.results[idx] = [step_i64(invoke), -1, 0];
            }
            let mut result = if op.kind == OpKind::Kill {
                self.kill(usize::from(op.target()))
            } else {
                do_op(&self.k, op).await?
            };
            {
                let mut s = self.k.st();
                if s.cur[tid].killed {
                    result = RES_KILLED;
                }
                assert_no_locks_held(&mut s, tid, op.kind.name(), "lock.held-at-return");
            }
            let response = self.k.sched.borrow_mut().op_end(tid);
            let mut book = self.book.borrow_mut();
            book.results[idx][1] = step_i64(response);
            book.results[idx][2] = result;
            book.pending_snapshot = Some(idx);
        }
        if let Some(t) = thread {
            self.book.borrow_mut().finished[t] = true;
        }
        Ok(())
    }

    /// `kill(t, SIGKILL)`: wake `t` if it sleeps killably (MODEL.md §5).
    fn kill(&self, target: usize) -> i64 {
        if target >= self.threads.len() || self.book.borrow().finished[target] {
            return ESRCH;
        }
        let tid = self.threads[target];
        let killable = {
            let mut s = self.k.st();
            s.cur[tid].killed = true;
            s.cur[tid].killable
        };
        let mut sched = self.k.sched.borrow_mut();
        if sched.tasks[tid].state() == TaskState::Blocked && killable {
            sched.wake(tid);
        }
        0
    }

    fn take_pending_snapshot(&self) {
        if !self.serial {
            return; // snapshots are taken under the serial strategy only
        }
        let pending = self.book.borrow_mut().pending_snapshot.take();
        if let Some(after) = pending {
            let snap = take_snapshot(&self.k.st.borrow(), after);
            self.book.borrow_mut().snapshots.push(snap);
        }
    }

    /// Run until nothing can run; settle hung tasks; detect deadlock and livelock.
    fn run_phase(&self, ex: &mut Executor<WaitOn>) -> &'static str {
        let st = &self.k.st;
        loop {
            let outcome = ex.run_with(&self.k.sched, |tid| st.borrow().cur[tid].locks);
            if self.aborted() {
                return STATUS_OK;
            }
            if outcome == RunOutcome::Livelock {
                return STATUS_LIVELOCK;
            }
            let blocked: Vec<TaskId> = {
                let sched = self.k.sched.borrow();
                let stuck = sched.unfinished();
                stuck
                    .into_iter()
                    .filter(|&t| sched.tasks[t].state() == TaskState::Blocked)
                    .collect()
            };
            if blocked.is_empty() {
                return STATUS_OK;
            }
            let all_uffd = {
                let sched = self.k.sched.borrow();
                let in_uffd = |t: &TaskId| matches!(sched.tasks[*t].wait, Some(WaitOn::Uffd(..)));
                blocked.iter().all(in_uffd)
            };
            if !all_uffd {
                return STATUS_DEADLOCK;
            }
            // ... and the run goes on: other tasks may still have ops to run.
            for t in blocked {
                self.hang(t);
            }
        }
    }

    /// A user task asleep in `handle_userfault` that nothing can serve: its op is hung.
    fn hang(&self, tid: TaskId) {
        {
            let mut s = self.k.st.borrow_mut();
            let ctx = match self.k.sched.borrow().tasks[tid].wait {
                Some(WaitOn::Uffd(ctx, _)) => Some(ctx),
                _ => None,
            };
            if let Some(ctx) = ctx {
                s.mm_mut(ctx).uffd.waiters.retain(|w| w.tid != tid);
            }
        }
        {
            let mut book = self.book.borrow_mut();
            for i in 0..book.owner.len() {
                if book.owner[i] == Some(tid) && book.results[i][0] >= 0 && book.results[i][1] < 0 {
                    book.results[i][2] = RES_HUNG;
                    book.pending_snapshot = Some(i);
                }
            }
            if let Some(t) = self.threads.iter().position(|&x| x == tid) {
                book.finished[t] = true;
            }
        }
        let mut sched = self.k.sched.borrow_mut();
        sched.set_state(tid, TaskState::Done);
        sched.tasks[tid].wait = None;
        sched.active_ops -= 1;
        if sched.active == Some(tid) {
            sched.active = None;
        }
    }

    fn task_of(&self, part: Part, thread: usize) -> TaskId {
        if part == Part::Thread {
            self.threads[thread]
        } else {
            self.main
        }
    }
}

/// Quiescence checks and the record.
fn finish(r: &Runner, mut status: &'static str) -> Result<RunRecord, EngineError> {
    if let Some(Abort::Model(msg)) = &r.book.borrow().abort {
        return Err(EngineError(msg.clone()));
    }
    let stopped = r.aborted();
    let mut wait_for = Vec::new();
    if !stopped && status == STATUS_OK {
        r.take_pending_snapshot();
        let mut s = r.k.st.borrow_mut();
        s.tid = r.main;
        s.step = r.k.sched.borrow().step;
        check_quiescence(&mut s);
    }
    if stopped {
        status = STATUS_OK;
    } else if status == STATUS_DEADLOCK {
        wait_for = crate::waiton::wait_for_graph(&r.k.st.borrow(), &r.k.sched.borrow());
    }
    Ok(build_record(r, status, wait_for, stopped))
}

fn build_record(
    r: &Runner,
    status: &'static str,
    wait_for: Vec<WaitEdge>,
    stopped: bool,
) -> RunRecord {
    let mut book = r.book.borrow_mut();
    let ops: Vec<OpRecord> = r
        .ops
        .iter()
        .map(|&(i, part, t, op)| {
            let [invoke, response, result] = book.results[i];
            let task = r.task_of(part, t);
            OpRecord {
                index: i,
                part: part.name(),
                task,
                op,
                invoke,
                response,
                result,
            }
        })
        .collect();
    let snapshots = std::mem::take(&mut book.snapshots);
    let mut s = r.k.st.borrow_mut();
    let mut sched = r.k.sched.borrow_mut();
    crate::record::build_record(
        &mut s, &mut sched, ops, snapshots, status, wait_for, stopped,
    )
}
