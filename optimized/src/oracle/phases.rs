//! The phases of `fuzz/spec.py` (its "Phases" and "Stack growth" paragraphs): the steps a
//! fault, a munmap's VMA detach and a stack growth take on a page apart from an op's own.
//! Part of the Rust mirror of `fuzz.spec` (see [`super::spec`]); change both together.

use super::case::{Kind, Op, PROT_MASK};
use super::record::RES_HUNG;
use super::spec::{access_result, page, same, set, set_page, State, Succ, ESRCH};

/// The phases an op may take before its main step (`fuzz.spec.FAULT`, `DETACH`, `GROW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Fault,
    Detach,
    Grow,
}

/// `fuzz.spec.observes_population`.
pub fn observes_population(op: &Op) -> bool {
    matches!(
        op.kind,
        Kind::UffdCopy | Kind::Migrate | Kind::ToDevice | Kind::Fork
    )
}

/// `fuzz.spec.is_access`.
pub fn is_access(op: &Op) -> bool {
    matches!(op.kind, Kind::Read | Kind::Write)
}

/// `fuzz.spec.phases`: the phase `op` (result `r`; `weak`: killed or pending) takes before
/// its main step, if any (Python's tuple has at most one); `observed`: an op that can tell
/// population runs concurrently.
pub fn phases(op: &Op, r: i64, weak: bool, observed: bool) -> Option<Phase> {
    if is_access(op) && r != ESRCH {
        if r == RES_HUNG || (op.kind == Kind::Write && weak) {
            return Some(Phase::Fault);
        }
        // A weak read's own step covers its fault; so does a completed access's, unobserved.
        let completed = if op.kind == Kind::Read {
            r >= 0
        } else {
            r == 0
        };
        if weak || (completed && !observed) {
            return None;
        }
        return Some(Phase::Fault);
    }
    if op.kind == Kind::Munmap && (weak || r == 0) {
        return Some(Phase::Detach);
    }
    None
}

/// `fuzz.spec.phase_successors`: the successors of phase `phase` of `op`.
pub fn phase_successors(s: &State, op: &Op, phase: Phase, weak: bool) -> Succ {
    let Some(pg) = s[op.mm] else {
        return same(s);
    };
    match phase {
        Phase::Fault => {
            if pg.populated || access_result(pg, op) < 0 {
                return same(s);
            }
            let faulted = set(s, op.mm, Some(page(true, pg.prot, pg.uffd, true, 0)));
            Succ::two(*s, faulted)
        }
        Phase::Grow => {
            if pg.mapped {
                return Succ::NONE;
            }
            let grown = page(true, op.prot & PROT_MASK, op.value != 0, false, 0);
            set_page(s, op.mm, grown)
        }
        Phase::Detach => {
            if !pg.mapped {
                return same(s);
            }
            let detached = set(
                s,
                op.mm,
                Some(page(false, 0, false, pg.populated, pg.value)),
            );
            if weak {
                Succ::two(*s, detached)
            } else {
                Succ::one(detached)
            }
        }
    }
}
