//! Outcome linearizability, the decision only: the Rust mirror of `fuzz/linearize.py`'s
//! `page_histories` and `search` (its module docstring is the specification). Change both in
//! the same commit; `tests/test_linearize_native.py` holds them together, verdict for verdict
//! and node count for node count.
//!
//! The mirror is exact down to the search's memo: the same sub-ops in the same order, the same
//! candidates tried in the same order, the same inert shortcut, so the number of memo entries,
//! and with it the budget at which a search gives up, is Python's. An explanation of a failure
//! is not mirrored: `fuzz.linearize` builds it, and stays normative for every verdict but ok.

use super::case::{Kind, Op};
use super::phases::{self, Phase};
use super::record::{OpRecord, Record, RES_HUNG, RES_KILLED, RES_NOT_RUN};
use super::spec::{self, ImageState, State, Succ};

/// `fuzz.linearize.INF`: the response of a pending op.
pub const INF: i64 = 1 << 62;
/// `fuzz.linearize.GROWTH_INDEX`: the indices of stack growths count down from here.
pub const GROWTH_INDEX: i64 = -(1 << 40);
/// `fuzz.case.MAP_GROWSDOWN`.
const MAP_GROWSDOWN: i64 = 4;

/// `fuzz.linearize.SubOp`, without the labels only an explanation prints; `image` borrows
/// the record's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOp<'r> {
    pub index: i64,
    pub op: Option<Op>,
    pub invoke: i64,
    pub response: i64,
    pub result: i64,
    pub maybe: bool,
    pub image: Option<&'r ImageState>,
    pub phase: Option<Phase>,
}

impl SubOp<'_> {
    /// `SubOp.inert`.
    pub fn inert(&self) -> bool {
        match &self.op {
            None => true,
            Some(op) => !self.maybe && self.phase.is_none() && spec::is_inert(op, self.result),
        }
    }

    /// `SubOp.successors`.
    pub fn successors(&self, s: &State) -> Succ {
        let Some(op) = &self.op else {
            return match (self.image, self.maybe) {
                (Some(image), false) => spec::observe(s, image),
                _ => Succ::one(*s),
            };
        };
        if let Some(phase) = self.phase {
            return phases::phase_successors(s, op, phase, self.maybe);
        }
        if self.maybe {
            return spec::maybe_successors(s, op);
        }
        spec::successors(s, op, self.result)
    }
}

/// Step numbers and indices beyond these are left to Python, whose ints do not overflow.
const STEP_LIMIT: i64 = 1 << 61;
const INDEX_LIMIT: i64 = 1 << 50;

/// Whether the mirror computes exactly what Python does on `rec`: no arithmetic near the
/// limits of i64, and no negative page, which Python would read as an index from the end.
pub fn representable(rec: &Record) -> bool {
    let small = |v: i64, limit: i64| (-limit..limit).contains(&v);
    let ops_ok = rec.ops.iter().all(|r| {
        small(r.index, INDEX_LIMIT)
            && small(r.invoke, STEP_LIMIT)
            && small(r.response, STEP_LIMIT)
            && small(r.op.page, STEP_LIMIT)
            && small(r.op.npages, STEP_LIMIT)
            && (r.op.page >= 0 || !is_live(r))
    });
    let growths_ok = rec.growths.len() < (1 << 20)
        && rec.growths.iter().all(|g| {
            small(g.step, STEP_LIMIT)
                && (0..STEP_LIMIT).contains(&g.start)
                && small(g.end, STEP_LIMIT)
        });
    ops_ok && growths_ok
}

fn is_live(rec: &OpRecord) -> bool {
    rec.result != RES_NOT_RUN && rec.op.kind != Kind::Kill
}

/// `fuzz.linearize._end`.
fn end(rec: &OpRecord) -> i64 {
    if rec.response < 0 {
        INF
    } else {
        rec.response
    }
}

/// `fuzz.linearize._pages`: the pages below `n` that `op` has a sub-op on.
fn pages(op: &Op, n: i64) -> std::ops::Range<i64> {
    if op.kind == Kind::Fork {
        return 0..n;
    }
    let stop = if op.kind.is_range() {
        op.page + op.npages
    } else {
        op.page + 1
    };
    op.page..stop.min(n)
}

type Live<'a> = Vec<(&'a OpRecord, std::ops::Range<i64>)>;

/// Whether `other`'s interval overlaps `rec`'s, `other` not being `rec` (the test of
/// `fuzz.linearize._overlapping`).
fn overlaps(other: &OpRecord, rec: &OpRecord) -> bool {
    other.invoke <= end(rec) && rec.invoke <= end(other) && other.index != rec.index
}

/// `_overlapping(_observers(live).get((-1, page)), rec)` for an access `rec` on `page`: how
/// many ops that can tell population on the page (`_observers`; `uffd`: the pages some
/// `uffd_register` names) overlap it. Python lists one span per op and page; so does this
/// count. `watching`: the live ops that may watch some page (a superset).
fn watchers(watching: &Live<'_>, uffd: &[bool], rec: &OpRecord) -> usize {
    let page = rec.op.page;
    let registered = usize::try_from(page)
        .ok()
        .and_then(|p| uffd.get(p).copied())
        .unwrap_or(false);
    let watches = |o: &OpRecord| {
        phases::observes_population(&o.op) || (phases::is_access(&o.op) && registered)
    };
    watching
        .iter()
        .filter(|(o, pages)| pages.contains(&page) && watches(o) && overlaps(o, rec))
        .count()
}

/// `_overlapping(_zaps(live).get((mm, page)), rec)` for an access `rec`: how many ops that
/// may empty its page in its mm overlap it. `zapping`: the live mmap, munmap and DONTNEED ops.
fn zappers(zapping: &Live<'_>, rec: &OpRecord) -> usize {
    zapping
        .iter()
        .filter(|(o, pages)| {
            o.op.mm == rec.op.mm && pages.contains(&rec.op.page) && overlaps(o, rec)
        })
        .count()
}

/// `fuzz.linearize._sub_ops`: an op's phases, then its own sub-op (none if hung), onto `out`.
fn sub_ops(rec: &OpRecord, observed: bool, again: usize, out: &mut Vec<SubOp<'_>>) {
    let pending = rec.response < 0;
    let weak = pending || rec.result == RES_KILLED || rec.result == RES_HUNG;
    let phase = phases::phases(&rec.op, rec.result, weak, observed);
    let faults = if again > 0 && (phase == Some(Phase::Fault) || (weak && observed)) {
        again
    } else {
        0
    };
    let sub = |index: i64, phase: Option<Phase>| SubOp {
        index,
        op: Some(rec.op),
        invoke: rec.invoke,
        response: if pending { INF } else { rec.response },
        result: rec.result,
        maybe: weak,
        image: None,
        phase,
    };
    let phases = phase
        .into_iter()
        .chain(std::iter::repeat_n(Phase::Fault, faults));
    out.extend(phases.map(|p| sub(-2 - rec.index, Some(p))));
    if rec.result != RES_HUNG {
        out.push(sub(rec.index, None));
    }
}

/// `fuzz.linearize.page_histories`: the per-page histories of a record.
pub fn page_histories(rec: &Record) -> Vec<Vec<SubOp<'_>>> {
    let n = i64::try_from(rec.nr_pages).unwrap_or(i64::MAX);
    let mut hists: Vec<Vec<SubOp<'_>>> = vec![Vec::new(); rec.nr_pages];
    let live: Live<'_> = rec
        .ops
        .iter()
        .filter(|r| is_live(r))
        .map(|r| (r, pages(&r.op, n)))
        .collect();
    let mut uffd = vec![false; rec.nr_pages];
    for (r, pages) in &live {
        if r.op.kind == Kind::UffdRegister {
            for p in pages.clone() {
                uffd[page_index(p)] = true;
            }
        }
    }
    let any_uffd = uffd.contains(&true);
    let watching: Live<'_> = live
        .iter()
        .filter(|(r, _)| {
            phases::observes_population(&r.op) || (any_uffd && phases::is_access(&r.op))
        })
        .cloned()
        .collect();
    let zapping: Live<'_> = live
        .iter()
        .filter(|(r, _)| matches!(r.op.kind, Kind::Mmap | Kind::Munmap | Kind::MadviseDontneed))
        .cloned()
        .collect();
    let mut last = 0;
    let mut subs = Vec::new();
    for &(r, ref pages) in &live {
        last = last.max(r.invoke + 1).max(r.response + 1);
        subs.clear();
        if phases::is_access(&r.op) {
            // An access names one page; only accesses' phases depend on what watches them.
            let watched = watchers(&watching, &uffd, r);
            sub_ops(r, watched > 0, zappers(&zapping, r), &mut subs);
        } else {
            sub_ops(r, true, 0, &mut subs);
        }
        for p in pages.clone() {
            hists[page_index(p)].extend_from_slice(&subs);
        }
    }
    for (k, g) in (0i64..).zip(&rec.growths) {
        let op = Op {
            kind: Kind::Mmap,
            mm: g.mm,
            page: g.start,
            npages: g.end - g.start,
            prot: g.prot | MAP_GROWSDOWN,
            value: g.uffd,
        };
        let grow = SubOp {
            index: GROWTH_INDEX - k,
            op: Some(op),
            invoke: g.step,
            response: g.step,
            result: g.start,
            maybe: false,
            image: None,
            phase: Some(Phase::Grow),
        };
        for p in g.start..g.end.min(n) {
            hists[page_index(p)].push(grow);
        }
        last = last.max(g.step + 1);
    }
    if let Some(image) = &rec.image {
        for (hist, state) in hists.iter_mut().zip(image) {
            hist.push(SubOp {
                index: -1,
                op: None,
                invoke: last,
                response: last,
                result: 0,
                maybe: false,
                image: Some(state),
                phase: None,
            });
        }
    }
    hists
}

/// A page number already known to be in `0..nr_pages` (`representable`, `pages`).
fn page_index(p: i64) -> usize {
    usize::try_from(p).unwrap_or(usize::MAX)
}
