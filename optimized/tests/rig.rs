//! The test machine the primitive-level groups share: a kernel with `ntasks` tasks and mm 0,
//! hand-made VMAs, task bodies that call kernel functions directly, and an interleaving fixed
//! by explicit scheduler choices (or the serial policy).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use _native::mutant::Mutant;
use _native::objects::{Kernel, MmId, Page, VmaId, VmaLockEvent, WaitOn};
use _native::sched::{Executor, Policy, RunOutcome};
use _native::snapshot::check_quiescence;
use _native::vma::vma_iter_store;

pub const MM: MmId = 0;

/// A machine with `ntasks` tasks, mm 0 (8 pages), and a log the task bodies append to.
pub struct Rig {
    pub k: Rc<Kernel>,
    pub ex: Executor<WaitOn>,
    pub log: Rc<RefCell<Vec<String>>>,
}

impl Rig {
    pub fn new(ntasks: usize) -> Self {
        let k = Rc::new(Kernel::new(8, false, ntasks, true, Mutant::None));
        let mut ex = Executor::new();
        for i in 0..ntasks {
            ex.spawn(&k.sched, format!("t{i}"), false);
        }
        {
            let mut s = k.st.borrow_mut();
            s.new_mm(MM);
            s.mm_mut(MM).visible = true;
        }
        Self {
            k,
            ex,
            log: Rc::new(RefCell::new(Vec::new())),
        }
    }

    /// An anonymous read-write VMA `[start, end)` in the tree, with an `anon_vma` if `anon`.
    pub fn vma(&self, start: Page, end: Page, anon: bool) -> VmaId {
        let mut s = self.k.st.borrow_mut();
        let v = s.alloc_vma(MM, start, end, 3);
        if anon {
            s.vmas[v].anon_vma = Some(1);
            s.vmas[v].anon_vma_chain_len = 1;
        }
        vma_iter_store(&mut s, MM, v);
        v
    }

    /// Task `tid` runs `body(kernel, log)`.
    pub fn start<F, Fut>(&mut self, tid: usize, body: F)
    where
        F: FnOnce(Rc<Kernel>, Rc<RefCell<Vec<String>>>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let k = Rc::clone(&self.k);
        let fut = body(Rc::clone(&self.k), Rc::clone(&self.log));
        self.ex.start(&self.k.sched, tid, async move {
            k.resume();
            fut.await;
        });
    }

    /// Run with `choices` until nothing can run; the contract layer must stay quiet.
    pub fn run(&mut self, choices: &[u8]) -> Vec<String> {
        assert_eq!(self.run_explicit(choices), RunOutcome::Idle);
        let s = self.k.st.borrow();
        assert!(
            s.contract.violations.is_empty(),
            "{:?}",
            s.contract.violations
        );
        self.log.borrow().clone()
    }

    /// Run with `choices` until nothing can run, whatever the contract layer says.
    pub fn run_explicit(&mut self, choices: &[u8]) -> RunOutcome {
        self.k.sched.borrow_mut().policy = Policy::Explicit {
            choices: choices.to_vec(),
            pos: 0,
        };
        self.ex.run(&self.k.sched)
    }

    /// Run the tasks one after another (the serial policy) until nothing can run.
    pub fn run_serial(&mut self) -> RunOutcome {
        self.k.sched.borrow_mut().policy = Policy::Serial;
        self.ex.run(&self.k.sched)
    }

    /// The end-of-run checks (`check_quiescence`), as the run engine makes them.
    pub fn quiesce(&self) {
        check_quiescence(&mut self.k.st.borrow_mut());
    }

    /// Every violation so far as `(rule, kernel function)`, in order.
    pub fn violations(&self) -> Vec<(&'static str, String)> {
        let s = self.k.st.borrow();
        let v = &s.contract.violations;
        v.iter().map(|x| (x.rule, x.function.clone())).collect()
    }

    pub fn counter(&self, e: VmaLockEvent) -> u64 {
        self.k.st.borrow().counters[e as usize]
    }
}

/// `(rule, function)` pairs, as [`Rig::violations`] gives them.
pub fn pairs(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    list.iter().map(|&(r, f)| (r, f.to_owned())).collect()
}

pub fn note(log: &RefCell<Vec<String>>, line: impl Into<String>) {
    log.borrow_mut().push(line.into());
}
