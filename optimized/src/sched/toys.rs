//! Toy task sets for testing the scheduler against `reference/sched.py`: the same tasks with
//! the same yield points, so both languages must make the same decisions (checked by the
//! shared vectors in `tests/vectors/sched_vectors.json` and by `tests/test_sched.py`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::{block_on, sleep_tick, yield_now, Executor, Policy, RunOutcome, Sched, TaskId};

/// What a toy task waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToyWait {
    Mutex(&'static str, Option<TaskId>),
    Queue,
}

type ToySched = RefCell<Sched<ToyWait>>;

/// The result of running a toy task set: the outcome, the step count, the decisions, and the
/// toy's own log (ids or items in the order the critical sections ran).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToyRun {
    pub outcome: RunOutcome,
    pub steps: u64,
    pub chosen: Vec<TaskId>,
    pub choice_log: Vec<u8>,
    pub log: Vec<u64>,
    pub unfinished: Vec<TaskId>,
    pub wait_for: Vec<(TaskId, &'static str, ToyWait)>,
    /// The interleaving feature buckets (`reference.sched.toy_features`).
    pub features: Vec<u16>,
}

#[derive(Debug)]
struct ToyMutex {
    name: &'static str,
    owner: Option<TaskId>,
    waiters: VecDeque<TaskId>,
}

impl ToyMutex {
    fn new(name: &'static str) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self {
            name,
            owner: None,
            waiters: VecDeque::new(),
        }))
    }
}

async fn mutex_lock(sched: &ToySched, m: &RefCell<ToyMutex>) {
    let tid = sched.borrow().cur();
    let wait = {
        let mut mu = m.borrow_mut();
        if mu.owner.is_none() {
            mu.owner = Some(tid);
            return;
        }
        mu.waiters.push_back(tid);
        ToyWait::Mutex(mu.name, mu.owner)
    };
    block_on(sched, wait, "mutex_lock:wait").await;
}

fn mutex_unlock(sched: &ToySched, m: &RefCell<ToyMutex>) {
    let mut mu = m.borrow_mut();
    mu.owner = mu.waiters.pop_front();
    if let Some(next) = mu.owner {
        sched.borrow_mut().wake(next);
    }
}

#[derive(Debug, Default)]
struct ToyQueue {
    items: VecDeque<u64>,
    blocked: Vec<TaskId>,
}

fn queue_wake_all(sched: &ToySched, q: &mut ToyQueue) {
    let mut s = sched.borrow_mut();
    for t in q.blocked.drain(..) {
        s.wake(t);
    }
}

async fn queue_put(sched: &ToySched, q: &RefCell<ToyQueue>, item: u64) {
    loop {
        {
            let mut qq = q.borrow_mut();
            if qq.items.len() < 2 {
                qq.items.push_back(item);
                queue_wake_all(sched, &mut qq);
                return;
            }
            let tid = sched.borrow().cur();
            qq.blocked.push(tid);
        }
        block_on(sched, ToyWait::Queue, "queue_put:wait").await;
    }
}

async fn queue_get(sched: &ToySched, q: &RefCell<ToyQueue>, out: &RefCell<Vec<u64>>) {
    loop {
        {
            let mut qq = q.borrow_mut();
            if let Some(item) = qq.items.pop_front() {
                out.borrow_mut().push(item);
                queue_wake_all(sched, &mut qq);
                return;
            }
            let tid = sched.borrow().cur();
            qq.blocked.push(tid);
        }
        block_on(sched, ToyWait::Queue, "queue_get:wait").await;
    }
}

/// Which toy task set to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toy {
    PingPong,
    RwQueue,
    Deadlock,
    Spin,
    Poll,
}

impl Toy {
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ping_pong" => Some(Toy::PingPong),
            "rw_queue" => Some(Toy::RwQueue),
            "deadlock" => Some(Toy::Deadlock),
            "spin" => Some(Toy::Spin),
            "poll" => Some(Toy::Poll),
            _ => None,
        }
    }
}

fn spawn_ping_pong(ex: &mut Executor<ToyWait>, sched: &Rc<ToySched>, log: &Rc<RefCell<Vec<u64>>>) {
    let mutex = ToyMutex::new("mutex");
    for i in 0..3 {
        let tid = ex.spawn(sched, format!("ping{i}"), false);
        let (s, m, l) = (sched.clone(), mutex.clone(), log.clone());
        ex.start(sched, tid, async move {
            for _ in 0..3 {
                yield_now(&s, "ping:before_lock").await;
                mutex_lock(&s, &m).await;
                yield_now(&s, "ping:critical").await;
                l.borrow_mut().push(tid as u64);
                mutex_unlock(&s, &m);
            }
            s.borrow_mut().op_end(tid);
        });
        sched.borrow_mut().op_begin(tid);
    }
}

fn spawn_rw_queue(ex: &mut Executor<ToyWait>, sched: &Rc<ToySched>, log: &Rc<RefCell<Vec<u64>>>) {
    let queue = Rc::new(RefCell::new(ToyQueue::default()));
    for i in 0..4 {
        let tid = ex.spawn(sched, format!("rw{i}"), false);
        let (s, q, l) = (sched.clone(), queue.clone(), log.clone());
        if i < 2 {
            ex.start(sched, tid, async move {
                for n in 0..3 {
                    yield_now(&s, "producer:step").await;
                    queue_put(&s, &q, tid as u64 * 100 + n).await;
                }
                s.borrow_mut().op_end(tid);
            });
        } else {
            ex.start(sched, tid, async move {
                for _ in 0..3 {
                    yield_now(&s, "consumer:step").await;
                    queue_get(&s, &q, &l).await;
                }
                s.borrow_mut().op_end(tid);
            });
        }
        sched.borrow_mut().op_begin(tid);
    }
}

fn spawn_deadlock(ex: &mut Executor<ToyWait>, sched: &Rc<ToySched>) {
    let (a, b) = (ToyMutex::new("A"), ToyMutex::new("B"));
    for (i, (x, y)) in [(a.clone(), b.clone()), (b, a)].into_iter().enumerate() {
        let tid = ex.spawn(sched, format!("dl{i}"), false);
        let s = sched.clone();
        ex.start(sched, tid, async move {
            yield_now(&s, "dl:start").await;
            mutex_lock(&s, &x).await;
            yield_now(&s, "dl:holding_first").await;
            mutex_lock(&s, &y).await;
            mutex_unlock(&s, &y);
            mutex_unlock(&s, &x);
            s.borrow_mut().op_end(tid);
        });
        sched.borrow_mut().op_begin(tid);
    }
}

fn spawn_spin(ex: &mut Executor<ToyWait>, sched: &Rc<ToySched>) {
    for i in 0..2 {
        let tid = ex.spawn(sched, format!("spin{i}"), false);
        let s = sched.clone();
        ex.start(sched, tid, async move {
            loop {
                yield_now(&s, "spin").await;
            }
        });
    }
}

fn spawn_poll(ex: &mut Executor<ToyWait>, sched: &Rc<ToySched>, log: &Rc<RefCell<Vec<u64>>>) {
    let flag = Rc::new(RefCell::new(false));
    for i in 0..3 {
        let tid = ex.spawn(sched, format!("poll{i}"), false);
        let (s, f, l) = (sched.clone(), flag.clone(), log.clone());
        if i < 2 {
            ex.start(sched, tid, async move {
                while !*f.borrow() {
                    yield_now(&s, "poll:check").await;
                    sleep_tick(&s, "poll:sleep").await;
                }
                l.borrow_mut().push(tid as u64);
                s.borrow_mut().op_end(tid);
            });
        } else {
            ex.start(sched, tid, async move {
                for _ in 0..3 {
                    yield_now(&s, "set:work").await;
                }
                *f.borrow_mut() = true;
                l.borrow_mut().push(tid as u64);
                s.borrow_mut().op_end(tid);
            });
        }
        sched.borrow_mut().op_begin(tid);
    }
}

/// Run a toy task set under a policy built by [`Policy::make`] from the same parameters the
/// Python side uses.
#[must_use]
pub fn run_toy(
    toy: Toy,
    strategy: u8,
    seed: u64,
    depth: u64,
    steps: u64,
    choices: &[u8],
    stall_steps: u64,
) -> ToyRun {
    let sched = Rc::new(RefCell::new(Sched::new(
        super::DEFAULT_MAX_STEPS,
        stall_steps,
        false,
    )));
    sched.borrow_mut().enable_features();
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut ex = Executor::new();
    match toy {
        Toy::PingPong => spawn_ping_pong(&mut ex, &sched, &log),
        Toy::RwQueue => spawn_rw_queue(&mut ex, &sched, &log),
        Toy::Deadlock => spawn_deadlock(&mut ex, &sched),
        Toy::Spin => spawn_spin(&mut ex, &sched),
        Toy::Poll => spawn_poll(&mut ex, &sched, &log),
    }
    let ntasks = sched.borrow().tasks.len();
    sched.borrow_mut().policy = Policy::make(strategy, seed, depth, steps, choices, ntasks);
    let outcome = ex.run(&sched);
    let s = sched.borrow();
    let log = log.borrow().clone();
    ToyRun {
        outcome,
        steps: s.step,
        chosen: s.chosen.clone(),
        choice_log: s.choice_log.clone(),
        log,
        unfinished: s.unfinished(),
        wait_for: s.wait_for_graph(),
        features: s.feature_buckets(),
    }
}
