//! What the oracle reads of a run record (`fuzz/record.py`): its special results, and the
//! fields of a `RunRecord` the linearizability checker needs.

use super::case::Op;
use super::spec::ImageState;

// `fuzz.record`'s special results.
pub const RES_SIGSEGV: i64 = -1011;
pub const RES_KILLED: i64 = -2001;
pub const RES_HUNG: i64 = -2002;
pub const RES_NOT_RUN: i64 = -2003;

/// `fuzz.record.OpRecord`, the fields the checker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRecord {
    pub index: i64,
    pub op: Op,
    pub invoke: i64,
    pub response: i64,
    pub result: i64,
}

/// `fuzz.record.StackGrowth`, the fields the checker reads (`uffd` as `int(g.uffd)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackGrowth {
    pub step: i64,
    pub mm: usize,
    pub start: i64,
    pub end: i64,
    pub prot: i64,
    pub uffd: i64,
}

/// What the checker reads of a `RunRecord` (and its case's `nr_pages`). `image`: per page,
/// `fuzz.spec.image_state` of the record's image, or None when the record has no image.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub nr_pages: usize,
    pub ops: Vec<OpRecord>,
    pub growths: Vec<StackGrowth>,
    pub image: Option<Vec<ImageState>>,
}
