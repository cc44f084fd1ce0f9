//! The sequential specification of one page: the Rust mirror of `fuzz/spec.py`, whose module
//! docstring is the specification (states, the per-kind table, unknown results, killed and
//! pending ops, phases, stack growth, the image observe). Change both in the same commit;
//! `tests/test_linearize_native.py` holds them together, result for result and node for node.
//!
//! Only the part the linearizability search uses is mirrored: states, `successors`,
//! `maybe_successors`, `observe`, `natural_result` and the predicates here, the phases in
//! [`super::phases`]. A state holds plain values, so it compares and hashes like the Python
//! tuple it mirrors (``True == 1``: the image, which may hold ints where the spec holds bools,
//! is compared field by field as integers in [`observe`]).

use super::case::{Kind, Op, MAX_MMS, PROT_MASK, PROT_WRITE};
use super::record::{RES_HUNG, RES_SIGSEGV};

// Linux errno values, negated as the records carry them (`fuzz.spec` takes them from `errno`).
pub const ENOENT: i64 = -2;
pub const ESRCH: i64 = -3;
pub const EAGAIN: i64 = -11;
pub const ENOMEM: i64 = -12;
pub const EACCES: i64 = -13;
pub const EFAULT: i64 = -14;
pub const EBUSY: i64 = -16;
pub const EEXIST: i64 = -17;
pub const EINVAL: i64 = -22;

/// `fuzz.spec.Page`: ``(mapped, prot, uffd, populated, value)``.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Page {
    pub mapped: bool,
    pub prot: i64,
    pub uffd: bool,
    pub populated: bool,
    pub value: i64,
}

/// `fuzz.spec.State`: page p in every mm (None: that mm does not exist).
pub type State = [Option<Page>; MAX_MMS];

/// One page of the final image as `fuzz.spec.image_state` builds it, each field an integer
/// (a bool is 0 or 1), prot already masked with `PROT_MASK`.
pub type ImagePage = [i64; 5];
pub type ImageState = [Option<ImagePage>; MAX_MMS];

pub const UNMAPPED: Page = page(false, 0, false, false, 0);
pub const INITIAL: State = [Some(UNMAPPED), None, None, None];

pub const fn page(mapped: bool, prot: i64, uffd: bool, populated: bool, value: i64) -> Page {
    Page {
        mapped,
        prot,
        uffd,
        populated,
        value,
    }
}

/// `fuzz.spec.is_known`: whether the table constrains result `r` of `op`.
pub fn is_known(op: &Op, r: i64) -> bool {
    let listed = match op.kind {
        Kind::Read => matches!(r, ESRCH | RES_SIGSEGV),
        Kind::Write => matches!(r, 0 | ESRCH | RES_SIGSEGV),
        Kind::Mmap => r == ESRCH,
        Kind::Munmap => matches!(r, 0 | ESRCH),
        Kind::Mprotect | Kind::MadviseDontneed => matches!(r, 0 | ENOMEM | ESRCH),
        Kind::MadvisePageout => matches!(r, 0 | ESRCH),
        Kind::Migrate => matches!(r, 0 | 1 | EBUSY | EACCES | ENOENT | EFAULT | ESRCH),
        Kind::ToDevice => matches!(r, 0 | EBUSY | ENOENT | EFAULT | ESRCH),
        Kind::UffdRegister | Kind::UffdUnregister => matches!(r, 0 | EINVAL | ESRCH),
        Kind::UffdCopy => matches!(r, 0 | EEXIST | ENOENT | ESRCH),
        Kind::Fork => is_child(r) || r == ESRCH,
        Kind::Kill => false,
    };
    listed || (r >= 0 && op.kind == Kind::Read) || (op.kind == Kind::Mmap && r == op.page)
}

/// `fuzz.spec._CHILDREN`: the mms a fork can create.
fn is_child(r: i64) -> bool {
    (1..4).contains(&r)
}

/// `fuzz.spec.is_inert`: `op` with result `r` leaves every state it can be linearized at
/// unchanged.
pub fn is_inert(op: &Op, r: i64) -> bool {
    let effect = match op.kind {
        Kind::Mmap => return r != op.page,
        Kind::Read
        | Kind::Write
        | Kind::Munmap
        | Kind::UffdRegister
        | Kind::UffdUnregister
        | Kind::UffdCopy => r == 0,
        Kind::Mprotect | Kind::MadviseDontneed => r == 0 || r == ENOMEM,
        Kind::Fork => is_child(r),
        Kind::MadvisePageout | Kind::Migrate | Kind::ToDevice | Kind::Kill => false,
    };
    !effect
}

/// The states a transition may lead to, in order: at most three (a killed fork: itself, the
/// child with the page, the child without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Succ {
    len: usize,
    states: [State; 3],
}

impl Succ {
    pub const NONE: Succ = Succ {
        len: 0,
        states: [INITIAL; 3],
    };

    pub fn one(s: State) -> Succ {
        Succ::NONE.with(s)
    }

    pub fn two(a: State, b: State) -> Succ {
        Succ::NONE.with(a).with(b)
    }

    #[must_use]
    fn with(mut self, s: State) -> Succ {
        self.states[self.len] = s;
        self.len += 1;
        self
    }

    pub fn as_slice(&self) -> &[State] {
        &self.states[..self.len]
    }
}

impl std::ops::Deref for Succ {
    type Target = [State];

    fn deref(&self) -> &[State] {
        self.as_slice()
    }
}

pub(super) fn set(s: &State, mm: usize, pg: Option<Page>) -> State {
    let mut out = *s;
    out[mm] = pg;
    out
}

pub(super) fn set_page(s: &State, mm: usize, pg: Page) -> Succ {
    Succ::one(set(s, mm, Some(pg)))
}

pub(super) fn same(s: &State) -> Succ {
    Succ::one(*s)
}

/// The successors of a check: `(s,)` if it holds, else none.
pub(super) fn same_if(s: &State, ok: bool) -> Succ {
    if ok {
        same(s)
    } else {
        Succ::NONE
    }
}

/// `fuzz.spec._read`.
fn read(s: &State, pg: Page, op: &Op, r: i64) -> Succ {
    if !pg.mapped && pg.populated {
        // Detached: the PTE still serves loads, or is a swap entry.
        return same_if(s, r == pg.value || r == RES_SIGSEGV);
    }
    if !pg.mapped || pg.prot == 0 {
        return same_if(s, r == RES_SIGSEGV);
    }
    if r != pg.value || (pg.uffd && !pg.populated) {
        return Succ::NONE;
    }
    if pg.populated {
        return same(s);
    }
    set_page(s, op.mm, page(true, pg.prot, pg.uffd, true, pg.value))
}

/// `fuzz.spec._write`.
fn write(s: &State, pg: Page, op: &Op, r: i64) -> Succ {
    if !pg.mapped && pg.populated {
        // Detached: the PTE may still take the store.
        if r == RES_SIGSEGV {
            return same(s);
        }
        return set_page(s, op.mm, page(false, 0, false, true, op.value));
    }
    if !pg.mapped || pg.prot & PROT_WRITE == 0 {
        return same_if(s, r == RES_SIGSEGV);
    }
    if r != 0 || (pg.uffd && !pg.populated) {
        return Succ::NONE;
    }
    set_page(s, op.mm, page(true, pg.prot, pg.uffd, true, op.value))
}

/// `fuzz.spec._mprotect`.
fn mprotect(s: &State, pg: Page, op: &Op, r: i64) -> Succ {
    if !pg.mapped {
        return same_if(s, r != 0);
    }
    let changed = set(
        s,
        op.mm,
        Some(page(true, op.prot, pg.uffd, pg.populated, pg.value)),
    );
    if r == 0 || changed == *s {
        Succ::one(changed)
    } else {
        Succ::two(*s, changed)
    }
}

/// `fuzz.spec._dontneed`.
fn dontneed(s: &State, pg: Page, op: &Op, r: i64) -> Succ {
    if !pg.mapped {
        return same_if(s, r != 0);
    }
    set_page(s, op.mm, page(true, pg.prot, pg.uffd, false, 0))
}

/// `fuzz.spec._migrate`.
fn migrate(s: &State, pg: Page, r: i64) -> Succ {
    if r == EFAULT {
        // No VMA, or FOLL_DUMP found a hole or the zero page.
        return same_if(s, !(pg.mapped && pg.populated) || pg.value == 0);
    }
    same_if(s, pg.mapped && pg.populated)
}

/// `fuzz.spec._to_device`.
fn to_device(s: &State, pg: Page, r: i64) -> Succ {
    if r == EFAULT {
        return same_if(s, !pg.mapped);
    }
    same_if(s, pg.mapped && (pg.populated || r != 0))
}

/// `fuzz.spec._uffd_register` (`uffd` true) and `_uffd_unregister` (false).
fn uffd_register(s: &State, pg: Page, op: &Op, r: i64, uffd: bool) -> Succ {
    if !pg.mapped {
        return same(s);
    }
    if r == EINVAL {
        return Succ::NONE;
    }
    set_page(s, op.mm, page(true, pg.prot, uffd, pg.populated, pg.value))
}

/// `fuzz.spec._uffd_copy`.
fn uffd_copy(s: &State, pg: Page, op: &Op, r: i64) -> Succ {
    if !(pg.mapped && pg.uffd) {
        return same_if(s, r == ENOENT);
    }
    if r != (if pg.populated { EEXIST } else { 0 }) {
        return Succ::NONE;
    }
    if pg.populated {
        return same(s);
    }
    set_page(s, op.mm, page(true, pg.prot, true, true, op.value))
}

/// `fuzz.spec._fork`; `child` is the result, a known one (1..=3).
fn fork(s: &State, pg: Page, child: usize) -> Succ {
    if s[child].is_some() {
        return Succ::NONE;
    }
    if !pg.mapped {
        // dup_mmap copies VMAs: a detached page's PTE stays behind.
        return set_page(s, child, UNMAPPED);
    }
    let copy = set_page(s, child, page(true, pg.prot, false, pg.populated, pg.value));
    if pg.populated && pg.value == 0 {
        let empty = set(s, child, Some(page(true, pg.prot, false, false, 0)));
        return Succ::two(copy[0], empty);
    }
    copy
}

/// `fuzz.spec.successors`: the states `op`, recorded with result `r`, may leave `s` in.
pub fn successors(s: &State, op: &Op, r: i64) -> Succ {
    let Some(pg) = s[op.mm] else {
        // A range error may be found before the mm is: -ENOMEM constrains nothing then.
        return same_if(s, r == ESRCH || r == ENOMEM);
    };
    if r == ESRCH {
        return Succ::NONE;
    }
    if !is_known(op, r) {
        return same(s);
    }
    match op.kind {
        Kind::Read => read(s, pg, op, r),
        Kind::Write => write(s, pg, op, r),
        Kind::Mmap => set_page(s, op.mm, page(true, op.prot & PROT_MASK, false, false, 0)),
        Kind::Munmap => set_page(s, op.mm, UNMAPPED),
        Kind::Mprotect => mprotect(s, pg, op, r),
        Kind::MadviseDontneed => dontneed(s, pg, op, r),
        Kind::MadvisePageout => same_if(s, pg.mapped),
        Kind::Migrate => migrate(s, pg, r),
        Kind::ToDevice => to_device(s, pg, r),
        Kind::UffdRegister => uffd_register(s, pg, op, r, true),
        Kind::UffdUnregister => uffd_register(s, pg, op, r, false),
        Kind::UffdCopy => uffd_copy(s, pg, op, r),
        // A known fork result is a child mm.
        Kind::Fork => fork(s, pg, usize::try_from(r).unwrap_or(0)),
        // Never reached: no result of kill is known (and kill has no sub-op).
        Kind::Kill => same(s),
    }
}

/// `fuzz.spec.maybe_successors`: a killed or pending op: `s` itself, or whatever its natural
/// result at `s` leads to (duplicates dropped, first occurrence kept).
pub fn maybe_successors(s: &State, op: &Op) -> Succ {
    let mut out = same(s);
    for &n in successors(s, op, natural_result(s, op)).as_slice() {
        if !out.contains(&n) {
            out = out.with(n);
        }
    }
    out
}

/// `fuzz.spec.observe`: `(s,)` if `s` is the image, else none. Python compares the tuples
/// with ``==``, under which a bool equals its integer.
pub fn observe(s: &State, image: &ImageState) -> Succ {
    let matches = s.iter().zip(image).all(|(pg, im)| match (pg, im) {
        (None, None) => true,
        (Some(p), Some(i)) => {
            let fields = [
                i64::from(p.mapped),
                p.prot,
                i64::from(p.uffd),
                i64::from(p.populated),
                p.value,
            ];
            fields == *i
        }
        _ => false,
    });
    same_if(s, matches)
}

/// `fuzz.spec.natural_result`: what `op` returns when it runs alone at `s`.
pub fn natural_result(s: &State, op: &Op) -> i64 {
    if op.kind == Kind::Kill {
        return 0;
    }
    let Some(pg) = s[op.mm] else {
        return ESRCH;
    };
    match op.kind {
        Kind::Fork => (1..MAX_MMS)
            .find(|&c| s[c].is_none())
            .map_or(EAGAIN, |c| i64::try_from(c).unwrap_or(EAGAIN)),
        Kind::Read | Kind::Write => access_result(pg, op),
        Kind::Migrate | Kind::ToDevice => lookup_result(pg, op),
        Kind::UffdCopy => copy_result(pg),
        _ => range_result(pg, op),
    }
}

/// `fuzz.spec._access_result`.
pub(super) fn access_result(pg: Page, op: &Op) -> i64 {
    let need = if op.kind == Kind::Write {
        PROT_WRITE
    } else {
        PROT_MASK
    };
    if !pg.mapped || pg.prot & need == 0 {
        return RES_SIGSEGV;
    }
    if pg.uffd && !pg.populated {
        return RES_HUNG;
    }
    if op.kind == Kind::Write {
        0
    } else {
        pg.value
    }
}

/// `fuzz.spec._lookup_result`.
fn lookup_result(pg: Page, op: &Op) -> i64 {
    if !pg.mapped || (op.kind == Kind::Migrate && !pg.populated) {
        return EFAULT;
    }
    if pg.populated {
        0
    } else {
        ENOENT
    }
}

/// `fuzz.spec._copy_result`.
fn copy_result(pg: Page) -> i64 {
    if !(pg.mapped && pg.uffd) {
        return ENOENT;
    }
    if pg.populated {
        EEXIST
    } else {
        0
    }
}

/// `fuzz.spec._range_result`.
fn range_result(pg: Page, op: &Op) -> i64 {
    match op.kind {
        Kind::Mmap => op.page,
        Kind::Munmap | Kind::UffdRegister | Kind::UffdUnregister => 0,
        _ if pg.mapped => 0,
        _ => ENOMEM,
    }
}
