//! The run record the engine returns: the Rust side of `fuzz.record.RunRecord`, field for
//! field (`RunRecord.from_native` documents the tuple layout `py.rs` builds from it).

use crate::case::{Op, OpKind};
use crate::migrate::MigrationFailure;
use crate::objects::{State, WaitOn};
use crate::primitives::{LockEvent, Violation};
use crate::sched::features::FEATURE_BITS;
use crate::sched::{Sched, TaskId};
use crate::snapshot::memory_image;

pub const RES_SIGSEGV: i64 = -1011;
pub const RES_SIGBUS: i64 = -1007;
pub const RES_KILLED: i64 = -2001;
pub const RES_HUNG: i64 = -2002;
pub const RES_NOT_RUN: i64 = -2003;

/// The optimized engine's tag on its interleaving features (`fuzz.record.FEATURE_TAG_OPTIMIZED`).
pub const FEATURE_TAG: u32 = 2;

pub const STATUS_OK: &str = "ok";
pub const STATUS_DEADLOCK: &str = "deadlock";
pub const STATUS_LIVELOCK: &str = "livelock";

pub const VMA_LOCK_COUNTERS: [&str; 4] = [
    "VMA_LOCK_SUCCESS",
    "VMA_LOCK_ABORT",
    "VMA_LOCK_RETRY",
    "VMA_LOCK_MISS",
];

/// One operation as it ran (`fuzz.record.OpRecord`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    pub index: usize,
    pub part: &'static str,
    pub task: TaskId,
    pub op: Op,
    pub invoke: i64,
    pub response: i64,
    pub result: i64,
}

/// `fuzz.record.PageImage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageImage {
    pub mapped: bool,
    pub prot: u32,
    pub uffd: bool,
    pub populated: bool,
    pub value: u32,
}

/// `fuzz.record.VmaSnap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmaSnap {
    pub start: u32,
    pub end: u32,
    pub prot: u32,
    pub uffd: bool,
    pub growsdown: bool,
    pub anon_vma: bool,
}

/// `fuzz.record.PteSnap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PteSnap {
    pub kind: u8,
    pub data: u32,
    pub writable: bool,
    pub ref_: i64,
}

/// `fuzz.record.MmSnap`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MmSnap {
    pub vmas: Vec<VmaSnap>,
    pub ptes: Vec<PteSnap>,
}

/// `fuzz.record.Snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub after: usize,
    pub mms: Vec<Option<MmSnap>>,
    pub folios: Vec<(i32, i32)>,
    pub swap: Vec<(usize, i32, bool)>,
    pub locks: Vec<String>,
}

/// `fuzz.record.WaitEdge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitEdge {
    pub task: TaskId,
    pub site: &'static str,
    pub obj: String,
    pub holders: Vec<TaskId>,
}

/// `fuzz.record.RunRecord`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub engine: &'static str,
    pub status: &'static str,
    pub ops: Vec<OpRecord>,
    pub image: Vec<Option<Vec<PageImage>>>,
    pub violations: Vec<Violation>,
    pub snapshots: Vec<Snapshot>,
    pub lock_events: Vec<LockEvent>,
    pub trace: Vec<(u64, TaskId, &'static str)>,
    pub wait_for: Vec<WaitEdge>,
    pub migration_failures: Vec<MigrationFailure>,
    pub counters: [(&'static str, u64); 4],
    pub schedule: Vec<TaskId>,
    pub choices: Vec<u8>,
    pub steps: u64,
    /// The run stopped early on a violation that would corrupt the model.
    pub stopped: bool,
    /// Every stack growth (`fuzz.record.StackGrowth` fields).
    pub growths: Vec<crate::objects::Growth>,
    /// The interleaving features, `FEATURE_TAG << 16 | bucket`, sorted.
    pub features: Vec<u32>,
}

/// A scheduler step as the record's signed step fields hold it.
pub fn step_i64(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

/// The record of a finished run: the case's `ops` (in case order), then the monitor's
/// replies, and everything the state and the scheduler collected (moved out of them).
pub fn build_record(
    s: &mut State,
    sched: &mut Sched<WaitOn>,
    mut ops: Vec<OpRecord>,
    snapshots: Vec<Snapshot>,
    status: &'static str,
    wait_for: Vec<WaitEdge>,
    stopped: bool,
) -> RunRecord {
    let monitor = sched.tasks.iter().position(|t| t.name == "uffd_monitor");
    let first = ops.len();
    for (n, &(mm, page, value, invoke, response, result)) in s.monitor_records.iter().enumerate() {
        let op = Op {
            mm: u8::try_from(mm).unwrap_or(0),
            page: u8::try_from(page).unwrap_or(0),
            value: u16::try_from(value).unwrap_or(0),
            ..Op::new(OpKind::UffdCopy)
        };
        ops.push(OpRecord {
            index: first + n,
            part: "monitor",
            task: monitor.unwrap_or(0),
            op,
            invoke: step_i64(invoke),
            response: response.map_or(-1, step_i64),
            result: i64::from(result),
        });
    }
    let counters = [0, 1, 2, 3].map(|i| (VMA_LOCK_COUNTERS[i], s.counters[i]));
    RunRecord {
        engine: "optimized",
        status,
        ops,
        image: memory_image(s),
        violations: std::mem::take(&mut s.contract.violations),
        snapshots,
        lock_events: s.contract.events.take().unwrap_or_default(),
        trace: sched.trace.take().unwrap_or_default(),
        wait_for,
        migration_failures: std::mem::take(&mut s.migration_failures),
        counters,
        schedule: std::mem::take(&mut sched.chosen),
        choices: std::mem::take(&mut sched.choice_log),
        steps: sched.step,
        stopped,
        growths: std::mem::take(&mut s.growths),
        features: sched
            .feature_buckets()
            .into_iter()
            .map(|b| FEATURE_TAG << FEATURE_BITS | u32::from(b))
            .collect(),
    }
}
