//! The oracle's own copy of what it reads of an operation (`fuzz/case.py`): the op kinds and
//! fields. It keeps apart from the engine's `crate::case`: an oracle that judges the engine
//! shares no code with it.

/// `fuzz.case.MAX_MMS`: mm 0 and the children of up to three forks.
pub const MAX_MMS: usize = 4;
pub const PROT_READ: i64 = 1;
pub const PROT_WRITE: i64 = 2;
pub const PROT_MASK: i64 = PROT_READ | PROT_WRITE;

/// Operation codes (`fuzz.case.OpKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Read,
    Write,
    Mmap,
    Munmap,
    Mprotect,
    MadviseDontneed,
    MadvisePageout,
    Migrate,
    ToDevice,
    UffdRegister,
    UffdUnregister,
    UffdCopy,
    Fork,
    Kill,
}

impl Kind {
    const ALL: [Kind; 14] = [
        Kind::Read,
        Kind::Write,
        Kind::Mmap,
        Kind::Munmap,
        Kind::Mprotect,
        Kind::MadviseDontneed,
        Kind::MadvisePageout,
        Kind::Migrate,
        Kind::ToDevice,
        Kind::UffdRegister,
        Kind::UffdUnregister,
        Kind::UffdCopy,
        Kind::Fork,
        Kind::Kill,
    ];

    /// The kind of an `OpKind` code; None for any other number.
    pub fn from_code(code: i64) -> Option<Kind> {
        usize::try_from(code)
            .ok()
            .and_then(|c| Kind::ALL.get(c).copied())
    }

    /// `Op.is_range`.
    pub fn is_range(self) -> bool {
        matches!(
            self,
            Kind::Mmap
                | Kind::Munmap
                | Kind::Mprotect
                | Kind::MadviseDontneed
                | Kind::MadvisePageout
                | Kind::UffdRegister
                | Kind::UffdUnregister
        )
    }
}

/// `fuzz.case.Op`, with `mm` already known to index a state (below `MAX_MMS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub kind: Kind,
    pub mm: usize,
    pub page: i64,
    pub npages: i64,
    pub prot: i64,
    pub value: i64,
}
