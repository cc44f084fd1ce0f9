//! The WGL search of one page's history: the Rust mirror of `fuzz.linearize.search` (with
//! `_make_dfs`, `_phases_first` and `_successor_table`). Same call order, same memo of
//! (linearized set, state) pairs, same inert shortcut, same budget: the node count of every
//! search is Python's.

use std::collections::{HashMap, HashSet};

use super::bits::{Bits, FxBuild};
use super::linearize::SubOp;
use super::spec::State;

/// `fuzz.linearize.OK`, `FAIL`, `UNDECIDED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    Undecided,
}

impl Status {
    /// The Python name of the status.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "fail",
            Status::Undecided => "undecided",
        }
    }
}

/// The widest history the mirror searches (`search` gives None beyond). Python's search
/// recurses once per sub-op linearized, and its recursion limit (1,000 frames) stops it not far
/// beyond this: wider histories stay Python's, whatever it makes of them.
pub const MAX_SUB_OPS: usize = 512;

/// `fuzz.linearize.search`: (OK | FAIL | UNDECIDED, number of memo entries), or None when the
/// history has more than `MAX_SUB_OPS` sub-ops.
pub fn search(history: &[SubOp<'_>], initial: State, budget: i64) -> Option<(Status, u64)> {
    let n = history.len();
    match n {
        0..=64 => Some(Dfs::<1>::new(history, initial, budget).run()),
        65..=128 => Some(Dfs::<2>::new(history, initial, budget).run()),
        129..=256 => Some(Dfs::<4>::new(history, initial, budget).run()),
        257..=MAX_SUB_OPS => Some(Dfs::<8>::new(history, initial, budget).run()),
        _ => None,
    }
}

/// The budget ran out (`_BudgetExhaustedError`).
struct Exhausted;

/// The search over one history, with its interned states (`_make_dfs`).
struct Dfs<'r, const W: usize> {
    /// The sub-ops by (invoke, response, index), stably.
    ops: Vec<SubOp<'r>>,
    full: Bits<W>,
    /// Per position `k` by response (stably): the op's position in `ops`, and how many ops
    /// are invoked by its response (`bisect_right(inv, limit)`).
    by_resp: Vec<(usize, usize)>,
    rules: Vec<Rule<W>>,
    seen: HashSet<(Bits<W>, u32), FxBuild>,
    budget: i64,
    /// `_successor_table`: interned states, and per state id and op (`sid * n + i`) the slot
    /// in `pool` (plus one; 0: not computed yet) of its successors: a length, then state ids.
    states: Vec<State>,
    /// State ids by state, once there are too many states to look them up one by one.
    ids: Option<HashMap<State, u32, FxBuild>>,
    cache: Vec<u32>,
    pool: Vec<u32>,
    /// Each level's candidates, stacked.
    order: Vec<u32>,
}

/// What the search knows of an op apart from its transitions.
#[derive(Debug, Clone, Copy)]
struct Rule<const W: usize> {
    inert: bool,
    /// The phases that must go first (`_phases_first`), if any.
    need: Option<Bits<W>>,
}

/// Up to this many states, interning scans the list (most pages have a handful).
const FEW_STATES: usize = 16;

impl<'r, const W: usize> Dfs<'r, W> {
    fn new(history: &[SubOp<'r>], initial: State, budget: i64) -> Self {
        let mut ops = history.to_vec();
        ops.sort_by_key(|o| (o.invoke, o.response, o.index));
        let n = ops.len();
        let mut by_resp: Vec<(usize, usize)> = (0..n).map(|i| (i, 0)).collect();
        by_resp.sort_by_key(|&(i, _)| ops[i].response);
        for (i, invoked) in &mut by_resp {
            *invoked = ops.partition_point(|o| o.invoke <= ops[*i].response);
        }
        let rules = phases_first::<W>(&ops)
            .into_iter()
            .zip(&ops)
            .map(|(need, o)| Rule {
                inert: o.inert(),
                need: (!need.is_empty()).then_some(need),
            })
            .collect();
        Dfs {
            full: Bits::below(n),
            by_resp,
            rules,
            seen: HashSet::with_capacity_and_hasher(4 * n, FxBuild::default()),
            budget,
            states: vec![initial],
            ids: None,
            cache: vec![0; n],
            pool: Vec::with_capacity(4 * n),
            order: Vec::with_capacity(2 * n),
            ops,
        }
    }

    fn run(mut self) -> (Status, u64) {
        let status = match self.dfs(Bits::empty(), 0, 0) {
            Ok(true) => Status::Ok,
            Ok(false) => Status::Fail,
            Err(Exhausted) => Status::Undecided,
        };
        (status, self.seen.len() as u64)
    }

    /// Whether the ops outside `mask` can follow state `sid`; `by_resp[first]` is the first
    /// op by response that may still be outside `mask`.
    fn dfs(&mut self, mask: Bits<W>, sid: u32, mut first: usize) -> Result<bool, Exhausted> {
        if mask == self.full {
            return Ok(true);
        }
        if !self.seen.insert((mask, sid)) {
            return Ok(false);
        }
        if i64::try_from(self.seen.len()).unwrap_or(i64::MAX) > self.budget {
            return Err(Exhausted);
        }
        while mask.has(self.by_resp[first].0) {
            first += 1;
        }
        // Candidates: ops not linearized, invoked before every such op has returned.
        let cands = Bits::<W>::below(self.by_resp[first].1).minus(&mask);
        let base = self.order.len();
        for i in cands.iter() {
            let rule = self.rules[i];
            if rule.need.is_some_and(|need| !need.minus(&mask).is_empty()) {
                continue;
            }
            let slot = self.successors(i, sid);
            if self.pool[slot] > 0 && rule.inert {
                self.order.truncate(base);
                return self.dfs(mask.with(i), sid, first); // an inert op can always go first
            }
            self.order.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        for k in base..self.order.len() {
            let i = self.order[k] as usize;
            let slot = self.successors(i, sid);
            for j in 1..=self.pool[slot] as usize {
                let next = self.pool[slot + j];
                if self.dfs(mask.with(i), next, first)? {
                    self.order.truncate(base);
                    return Ok(true);
                }
            }
        }
        self.order.truncate(base);
        Ok(false)
    }

    /// The slot in `pool` of op i's successors from state `sid`, computed once.
    fn successors(&mut self, i: usize, sid: u32) -> usize {
        let at = sid as usize * self.ops.len() + i;
        if self.cache[at] != 0 {
            return self.cache[at] as usize - 1;
        }
        let nexts = self.ops[i].successors(&self.states[sid as usize]);
        let slot = self.pool.len();
        self.pool
            .push(u32::try_from(nexts.len()).unwrap_or(u32::MAX));
        for &s in nexts.as_slice() {
            let next = self.intern(s);
            self.pool.push(next);
        }
        self.cache[at] = u32::try_from(slot + 1).unwrap_or(u32::MAX);
        slot
    }

    fn intern(&mut self, s: State) -> u32 {
        let known = match &self.ids {
            Some(ids) => ids.get(&s).copied(),
            None => self.states.iter().position(|t| *t == s).map(as_id),
        };
        if let Some(id) = known {
            return id;
        }
        let id = as_id(self.states.len());
        self.states.push(s);
        self.cache.resize(self.cache.len() + self.ops.len(), 0);
        if let Some(ids) = &mut self.ids {
            ids.insert(s, id);
        } else if self.states.len() > FEW_STATES {
            let ids = self.states.iter().enumerate();
            self.ids = Some(ids.map(|(i, &t)| (t, as_id(i))).collect());
        }
        id
    }
}

fn as_id(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// `fuzz.linearize._phases_first`: per op, the ops that must be linearized before it: its
/// phases; identical phases of one op are taken in list order.
fn phases_first<const W: usize>(ops: &[SubOp<'_>]) -> Vec<Bits<W>> {
    let mut need = vec![Bits::empty(); ops.len()];
    for (i, o) in ops.iter().enumerate() {
        let Some(phase) = o.phase else {
            continue;
        };
        // Python's dicts keep the last op of an index, and the previous twin of a phase.
        let main = ops
            .iter()
            .rposition(|m| m.phase.is_none() && m.index == -2 - o.index);
        if let Some(main) = main {
            need[main] = need[main].with(i);
        }
        let twin = ops[..i]
            .iter()
            .rposition(|t| t.index == o.index && t.phase == Some(phase));
        if let Some(twin) = twin {
            need[i] = need[i].with(twin);
        }
    }
    need
}
