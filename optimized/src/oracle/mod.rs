//! The outcome-linearizability oracle (DESIGN.md §2.2), decision only: a native fast path for
//! `fuzz.linearize.check_record`, which stays normative. `spec` and `phases` mirror
//! `fuzz/spec.py`, `linearize` and `search` mirror `fuzz/linearize.py` (`case` and `record`
//! hold what the oracle reads of `fuzz/case.py` and `fuzz/record.py`); change each with its
//! Python module.
//!
//! An oracle judges the engine, so nothing here uses an engine module: only std.
//! `fuzz.linearize.check_record` asks [`check_record`] first and takes its "ok" as final (with
//! the same node count); on a failure or an undecided search it runs the Python checker, which
//! builds the explanation.

pub mod bits;
pub mod case;
pub mod linearize;
pub mod phases;
pub mod record;
pub mod search;
pub mod spec;

pub use record::{OpRecord, Record, StackGrowth};
pub use search::Status;

/// `fuzz.linearize.DEFAULT_BUDGET`.
pub const DEFAULT_BUDGET: i64 = 1_000_000;

/// The verdict on a record: its status, the page it names (the first failing page, else the
/// first undecided one; -1 when ok), and the memo entries of every page searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub page: i64,
    pub nodes: u64,
}

/// `fuzz.linearize.check_record` without the explanation: every page in order, stopping at
/// the first that fails. None when the record is beyond the mirror (`linearize::representable`,
/// a page history wider than `search::MAX_SUB_OPS`): ask Python.
pub fn check_record(rec: &Record, budget: i64) -> Option<Verdict> {
    if !linearize::representable(rec) {
        return None;
    }
    let hists = linearize::page_histories(rec);
    if hists.iter().any(|h| h.len() > search::MAX_SUB_OPS) {
        return None;
    }
    let mut nodes = 0;
    let mut undecided = None;
    for (page, hist) in (0i64..).zip(&hists) {
        let (status, n) = search::search(hist, spec::INITIAL, budget)?;
        nodes += n;
        match status {
            Status::Fail => {
                return Some(Verdict {
                    status,
                    page,
                    nodes,
                })
            }
            Status::Undecided => {
                undecided.get_or_insert(page);
            }
            Status::Ok => {}
        }
    }
    Some(Verdict {
        status: if undecided.is_some() {
            Status::Undecided
        } else {
            Status::Ok
        },
        page: undecided.unwrap_or(-1),
        nodes,
    })
}
