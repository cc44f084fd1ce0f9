//! The Python face of the crate: the only file that touches PyO3.
//!
//! Every entry point runs its Rust work inside [`guard`], so a panic comes out as a
//! `RuntimeError` naming the bug rather than as PyO3's `PanicException`, which derives from
//! `BaseException` and would slip past `except Exception` in the harness. Malformed input is
//! `optimized.CaseFormatError`, a `ValueError`.

use std::any::Any;
use std::convert::Infallible;
use std::panic::{self, UnwindSafe};
use std::sync::{Mutex, MutexGuard, TryLockError};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyString, PyTuple};
use pyo3::BoundObject;

use crate::case;
use crate::mutant::{Mutant, MUTANTS};
use crate::oracle::case::{Kind, Op, MAX_MMS, PROT_MASK};
use crate::oracle::spec::{ImagePage, ImageState};
use crate::oracle::{self, Record, StackGrowth};
use crate::record::{
    MmSnap, OpRecord, PageImage, PteSnap, RunRecord, Snapshot, VmaSnap, VMA_LOCK_COUNTERS,
};
use crate::run::{self, run_with};
use crate::sched::toys::{run_toy, Toy, ToyWait};
use crate::sched::{features, RunOutcome};

pyo3::create_exception!(
    optimized,
    CaseFormatError,
    PyValueError,
    "Bytes that are not a canonical vmafuzz case; the message is one line."
);

pyo3::create_exception!(
    optimized,
    UnknownMutant,
    PyValueError,
    "A mutant name that is not in `MUTANTS`; the message lists the known names."
);

pyo3::create_exception!(
    optimized,
    EngineError,
    PyRuntimeError,
    "A broken internal invariant of the optimized engine (an engine bug, never an outcome)."
);

impl From<case::CaseFormatError> for PyErr {
    fn from(err: case::CaseFormatError) -> PyErr {
        CaseFormatError::new_err(err.to_string())
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        return s;
    }
    payload
        .downcast_ref::<String>()
        .map_or("(no message)", String::as_str)
}

/// Run `work`, turning a panic into a `RuntimeError` that says it is an engine bug.
fn guard<T>(work: impl FnOnce() -> T + UnwindSafe) -> PyResult<T> {
    panic::catch_unwind(work).map_err(|payload| {
        let msg = panic_message(payload.as_ref());
        PyRuntimeError::new_err(format!("bug in optimized._native: panic: {msg}"))
    })
}

/// The canonical bytes of `data`: lenient decode, then encode. Never fails on any bytes.
#[pyfunction]
fn canonicalize<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let out = guard(|| case::canonicalize(data))?;
    Ok(PyBytes::new(py, &out))
}

/// Strict decode, then encode; raises `CaseFormatError` unless `data` is canonical.
#[pyfunction]
fn decode_strict_ok<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let out = guard(|| case::decode_strict(data).and_then(|c| case::encode(&c)))??;
    Ok(PyBytes::new(py, &out))
}

/// The toy outcome, steps, decisions and log as `reference.sched.run_toy` returns them.
type ToyTuple = (
    &'static str,
    u64,
    Vec<usize>,
    Vec<u64>,
    Vec<u64>,
    Vec<usize>,
    Vec<(usize, &'static str, &'static str, Vec<usize>)>,
);

/// Run a scheduler toy task set (`reference.sched.run_toy` with the same arguments).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn toy_run(
    name: &str,
    strategy: u8,
    seed: u64,
    depth: u64,
    steps: u64,
    choices: &[u8],
    stall_steps: u64,
) -> PyResult<ToyTuple> {
    let run = toy_named(name, strategy, seed, depth, steps, choices, stall_steps)?;
    let outcome = match run.outcome {
        RunOutcome::Idle => "idle",
        RunOutcome::Livelock => "livelock",
    };
    let wait_for = run
        .wait_for
        .iter()
        .map(|(tid, site, w)| match w {
            ToyWait::Mutex(obj, owner) => (*tid, *site, *obj, owner.iter().copied().collect()),
            ToyWait::Queue => (*tid, *site, "queue", Vec::new()),
        })
        .collect();
    Ok((
        outcome,
        run.steps,
        run.chosen,
        run.choice_log.iter().map(|&c| u64::from(c)).collect(),
        run.log,
        run.unfinished,
        wait_for,
    ))
}

/// The interleaving feature buckets of a toy run (`reference.sched.toy_features` with the same
/// arguments), sorted.
#[pyfunction]
fn toy_features(
    name: &str,
    strategy: u8,
    seed: u64,
    depth: u64,
    steps: u64,
    choices: &[u8],
    stall_steps: u64,
) -> PyResult<Vec<u16>> {
    Ok(toy_named(name, strategy, seed, depth, steps, choices, stall_steps)?.features)
}

/// Run the toy task set called `name` (a `ValueError` if there is none).
fn toy_named(
    name: &str,
    strategy: u8,
    seed: u64,
    depth: u64,
    steps: u64,
    choices: &[u8],
    stall_steps: u64,
) -> PyResult<crate::sched::toys::ToyRun> {
    let toy = Toy::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("unknown toy task set {name:?}")))?;
    let choices = choices.to_vec();
    guard(move || run_toy(toy, strategy, seed, depth, steps, &choices, stall_steps))
}

/// The bucket of one interleaving feature (`reference.sched.feature_bucket`).
#[pyfunction]
fn feature_bucket(site: &str, locks: u32, prev: Option<&str>) -> u16 {
    let prev_h = prev.map_or(0, features::site_hash);
    features::feature_bucket(features::site_hash(site), locks, prev_h)
}

impl From<crate::mutant::UnknownMutant> for PyErr {
    fn from(err: crate::mutant::UnknownMutant) -> PyErr {
        UnknownMutant::new_err(err.to_string())
    }
}

impl From<run::EngineError> for PyErr {
    fn from(err: run::EngineError) -> PyErr {
        EngineError::new_err(err.to_string())
    }
}

/// Run the case in `data` (canonical bytes, or any bytes with `lenient`) through the optimized
/// engine; the nested tuples `fuzz.record.RunRecord.from_native` reads. With `features`, the
/// record carries the interleaving features. The GIL is released while the engine runs.
#[pyfunction]
#[pyo3(signature = (data, mutant=None, trace=false, lenient=false, features=true))]
fn run_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    mutant: Option<&str>,
    trace: bool,
    lenient: bool,
    features: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let mutant = Mutant::from_name(mutant)?;
    let case = if lenient {
        case::decode(data)
    } else {
        case::decode_strict(data)?
    };
    let record = py.detach(move || guard(move || run_with(&case, mutant, trace, features)))??;
    record_to_py(py, &record)
}

/// The chosen task ids as bytes (`tuple()` of it is the id sequence; ids are below 16).
fn schedule_bytes<'py>(py: Python<'py>, chosen: &[usize]) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, chosen.len(), |buf| {
        for (b, &t) in buf.iter_mut().zip(chosen) {
            *b = u8::try_from(t).unwrap_or(u8::MAX);
        }
        Ok(())
    })
}

/// The Python string of one of the record's fixed names (op parts, engine, status, counter
/// names): created once per interpreter, not per record.
fn fixed_str<'py>(py: Python<'py>, s: &'static str) -> Bound<'py, PyString> {
    let cached = match s {
        "setup" => intern!(py, "setup"),
        "thread" => intern!(py, "thread"),
        "post" => intern!(py, "post"),
        "monitor" => intern!(py, "monitor"),
        "optimized" => intern!(py, "optimized"),
        "ok" => intern!(py, "ok"),
        "deadlock" => intern!(py, "deadlock"),
        "livelock" => intern!(py, "livelock"),
        "VMA_LOCK_SUCCESS" => intern!(py, "VMA_LOCK_SUCCESS"),
        "VMA_LOCK_ABORT" => intern!(py, "VMA_LOCK_ABORT"),
        "VMA_LOCK_RETRY" => intern!(py, "VMA_LOCK_RETRY"),
        "VMA_LOCK_MISS" => intern!(py, "VMA_LOCK_MISS"),
        _ => return PyString::intern(py, s),
    };
    cached.clone()
}

/// The Python ints `0..SMALL_INTS` (steps, ids, page numbers, small values), made once per
/// interpreter: a record holds hundreds of such ints, and taking a reference to a ready one
/// costs a fraction of converting each.
const SMALL_INTS: usize = 1024;

static SMALL_INT_OBJECTS: PyOnceLock<Vec<Py<PyAny>>> = PyOnceLock::new();

/// Converts the record's integers, small ones from the shared table.
struct Ints<'a, 'py> {
    py: Python<'py>,
    small: &'a [Py<PyAny>],
}

impl<'py> Ints<'_, 'py> {
    fn new(py: Python<'py>) -> Self {
        let small = SMALL_INT_OBJECTS.get_or_init(py, || {
            (0..SMALL_INTS)
                .map(|i| {
                    let Ok(obj) = i.into_pyobject(py);
                    obj.into_any().unbind()
                })
                .collect()
        });
        Self { py, small }
    }

    /// Every integer type of the record converts without error, so neither does this: the
    /// callers build tuples from iterators of plain objects, with no `PyResult` to unwrap.
    fn int<T>(&self, v: T) -> Bound<'py, PyAny>
    where
        T: TryInto<usize> + IntoPyObject<'py, Error = Infallible> + Copy,
    {
        if let Some(obj) = v.try_into().ok().and_then(|i| self.small.get(i)) {
            return obj.bind(self.py).clone();
        }
        let Ok(obj) = v.into_pyobject(self.py);
        obj.into_any().into_bound()
    }
}

/// A tuple of `items`, or for none the empty tuple (a singleton, which `PyTuple::new` returns
/// too, at the price of a trip through its iterator machinery): most records have no
/// violations, lock events, trace, wait edges or migration failures.
fn tuple_of<'py, T, I>(py: Python<'py>, items: I) -> PyResult<Bound<'py, PyTuple>>
where
    T: IntoPyObject<'py>,
    I: ExactSizeIterator<Item = T>,
{
    if items.len() == 0 {
        return Ok(PyTuple::empty(py));
    }
    PyTuple::new(py, items)
}

/// `RunRecord` as the nested tuples of `RunRecord.from_native` (same field order). Every
/// sequence the record keeps as a tuple is built as one here, so the conversion copies nothing.
fn record_to_py<'py>(py: Python<'py>, r: &RunRecord) -> PyResult<Bound<'py, PyTuple>> {
    let n = Ints::new(py);
    let mut shared = SharedRows::lock();
    let ops = ops_to_py(&n, &mut shared, &r.ops)?;
    let image = image_to_py(&n, &mut shared, &r.image)?;
    let viol = r.violations.iter().map(|v| {
        (
            v.rule,
            v.function.as_str(),
            v.message.as_str(),
            v.step,
            v.task,
        )
    });
    let snaps = snapshots_to_py(&n, &mut shared, &r.snapshots)?;
    let locks = r
        .lock_events
        .iter()
        .map(|e| -> PyResult<_> {
            let seq = PyTuple::new(py, &e.seq)?;
            Ok((
                e.step,
                e.task,
                e.action,
                e.primitive,
                e.obj.as_str(),
                e.mode,
                seq,
            ))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let wait = r
        .wait_for
        .iter()
        .map(|w| -> PyResult<_> {
            let holders = PyTuple::new(py, &w.holders)?;
            Ok((w.task, w.site, w.obj.as_str(), holders))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let migr = r
        .migration_failures
        .iter()
        .map(|m| -> PyResult<_> {
            let holders = PyTuple::new(py, &m.holders)?;
            Ok((
                m.step,
                m.task,
                m.folio.as_str(),
                m.expected,
                m.actual,
                holders,
            ))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let extra = PyDict::new(py);
    extra.set_item(intern!(py, "stopped"), r.stopped)?;
    if !r.growths.is_empty() {
        extra.set_item(intern!(py, "growths"), PyTuple::new(py, &r.growths)?)?;
    }
    let counters = r.counters.map(|(name, c)| {
        let make = || (fixed_str(py, name), n.int(c)).into_pyobject(py);
        match VMA_LOCK_COUNTERS.iter().position(|&known| known == name) {
            Some(i) => shared.get(
                py,
                Row::Counter(u8::try_from(i).unwrap_or(u8::MAX), c),
                make,
            ),
            None => make().map(Bound::into_any),
        }
    });
    let counters = try_tuple(py, counters.into_iter())?;
    let items: [Bound<'_, PyAny>; 16] = [
        fixed_str(py, r.engine).into_any(),
        fixed_str(py, r.status).into_any(),
        ops.into_any(),
        image.into_any(),
        tuple_of(py, viol)?.into_any(),
        snaps.into_any(),
        tuple_of(py, locks.into_iter())?.into_any(),
        tuple_of(py, r.trace.iter())?.into_any(),
        tuple_of(py, wait.into_iter())?.into_any(),
        tuple_of(py, migr.into_iter())?.into_any(),
        counters.into_any(),
        schedule_bytes(py, &r.schedule)?.into_any(),
        PyBytes::new(py, &r.choices).into_any(),
        n.int(r.steps),
        tuple_of(py, r.features.iter())?.into_any(),
        extra.into_any(),
    ];
    PyTuple::new(py, items)
}

/// The op records: `(index, part, task, (kind, mm, page, npages, prot, value), invoke,
/// response, result)` each. Consecutive ops mostly belong to one part, whose name is looked up
/// once per run of them.
fn ops_to_py<'py>(
    n: &Ints<'_, 'py>,
    shared: &mut SharedRows,
    ops: &[OpRecord],
) -> PyResult<Bound<'py, PyTuple>> {
    let py = n.py;
    let mut part: Option<(&'static str, Bound<'py, PyString>)> = None;
    let rows = ops.iter().map(|o| -> PyResult<_> {
        let name = match &part {
            Some((s, obj)) if std::ptr::eq(*s, o.part) => obj.clone(),
            _ => part.insert((o.part, fixed_str(py, o.part))).1.clone(),
        };
        let op = o.op;
        let fields = shared.get(py, Row::Op(op), || {
            let fields = (
                n.int(op.kind.code()),
                n.int(op.mm),
                n.int(op.page),
                n.int(op.npages),
                n.int(op.prot),
                n.int(op.value),
            );
            fields.into_pyobject(py)
        })?;
        let row = (
            n.int(o.index),
            name,
            n.int(o.task),
            fields,
            n.int(o.invoke),
            n.int(o.response),
            n.int(o.result),
        );
        Ok(row.into_pyobject(py)?.into_any())
    });
    try_tuple(py, rows)
}

/// A row of a record (an op's fields, a page of the image, a VMA, a PTE, a counter) by the
/// values that make its tuple: equal rows, of one record or of any, can be one tuple.
#[derive(Clone, Copy)]
enum Row {
    Op(case::Op),
    Page(PageImage),
    Vma(VmaSnap),
    Pte(PteSnap),
    /// The index of the name in `VMA_LOCK_COUNTERS`, and the count.
    Counter(u8, u64),
}

impl Row {
    /// The row's fields packed into words, the first naming the kind of row: one key a row,
    /// and a different key for every other row (each field has bits of its own). Comparing
    /// keys is a fraction of comparing the rows field by field.
    fn key(&self) -> RowKey {
        match *self {
            Row::Op(op) => [
                0,
                u64::from(op.kind.code())
                    | u64::from(op.mm) << 8
                    | u64::from(op.page) << 16
                    | u64::from(op.npages) << 24
                    | u64::from(op.prot) << 32
                    | u64::from(op.value) << 40,
                0,
            ],
            Row::Page(p) => [
                1,
                u64::from(p.prot) | u64::from(p.value) << 32,
                u64::from(p.mapped) | u64::from(p.uffd) << 1 | u64::from(p.populated) << 2,
            ],
            Row::Vma(v) => [
                2,
                u64::from(v.start) | u64::from(v.end) << 32,
                u64::from(v.prot)
                    | u64::from(v.uffd) << 32
                    | u64::from(v.growsdown) << 33
                    | u64::from(v.anon_vma) << 34,
            ],
            Row::Pte(p) => [
                3,
                u64::from(p.kind) | u64::from(p.data) << 8 | u64::from(p.writable) << 40,
                u64::from_ne_bytes(p.ref_.to_ne_bytes()),
            ],
            Row::Counter(i, c) => [4, u64::from(i), c],
        }
    }
}

/// A packed [`Row`] (`Row::key`).
type RowKey = [u64; 3];

/// The slot of `key` in `SHARED_ROWS`: the top bits of a multiplicative hash.
fn row_slot(key: &RowKey) -> usize {
    let hash = key.iter().fold(0_u64, |h, &w| {
        (h.rotate_left(23) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    usize::try_from(hash >> (64 - SHARED_ROW_BITS)).unwrap_or(0)
}

/// `SHARED_ROWS` has `1 << SHARED_ROW_BITS` slots.
const SHARED_ROW_BITS: u32 = 13;

type RowSlot = Option<(RowKey, Py<PyAny>)>;

/// The row tuples of earlier records, for later ones to share, as `fuzz.record.interned`
/// shares the row objects it builds. Rows repeat across records far more than within one (the
/// 3,000 cases of the throughput set hold some 2,100 distinct rows in 200,000), and taking a
/// reference to a ready tuple saves building it and, later, freeing it. The table is
/// direct-mapped (a newer row takes the slot of an older one with the same hash) and holds at
/// most one tuple a slot, so it stays small however many records pass.
static SHARED_ROWS: Mutex<Vec<RowSlot>> = Mutex::new(Vec::new());

/// `SHARED_ROWS`, locked for one record's conversion.
struct SharedRows {
    /// None if another conversion holds the table: possible when building a tuple runs the
    /// garbage collector, whose finalizers may convert a record, or on a free-threaded build.
    /// Its rows are then built anew (`try_lock`, never `lock`, which would deadlock).
    slots: Option<MutexGuard<'static, Vec<RowSlot>>>,
}

impl SharedRows {
    fn lock() -> Self {
        let slots = match SHARED_ROWS.try_lock() {
            Ok(slots) => Some(slots),
            // A panic while the table was held left it consistent: every slot is one write.
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        let slots = slots.map(|mut slots| {
            if slots.is_empty() {
                slots.resize_with(1 << SHARED_ROW_BITS, || None);
            }
            slots
        });
        Self { slots }
    }

    /// The tuple of `row`: the shared one, or the one `make` builds (which then is shared).
    fn get<'py>(
        &mut self,
        py: Python<'py>,
        row: Row,
        make: impl FnOnce() -> PyResult<Bound<'py, PyTuple>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some(slots) = self.slots.as_mut() else {
            return make().map(Bound::into_any);
        };
        let key = row.key();
        let Some(slot) = slots.get_mut(row_slot(&key)) else {
            return make().map(Bound::into_any);
        };
        if let Some((made, obj)) = slot {
            if *made == key {
                return Ok(obj.bind(py).clone());
            }
        }
        let obj = make()?.into_any();
        *slot = Some((key, obj.clone().unbind()));
        Ok(obj)
    }
}

/// A tuple of `items` built in place, though making an item may fail (pyo3's constructor
/// takes plain items only): an item that failed stands as None until the tuple is dropped and
/// the first error returned.
fn try_tuple<'py>(
    py: Python<'py>,
    items: impl ExactSizeIterator<Item = PyResult<Bound<'py, PyAny>>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let mut failed = None;
    let tuple = tuple_of(
        py,
        items.map(|item| {
            item.unwrap_or_else(|err| {
                failed.get_or_insert(err);
                py.None().into_bound(py)
            })
        }),
    )?;
    failed.map_or(Ok(tuple), Err)
}

/// The memory image: per mm None, or a tuple of per-page field tuples. Equal pages (most
/// unmapped or untouched pages look alike) share one tuple.
fn image_to_py<'py>(
    n: &Ints<'_, 'py>,
    shared: &mut SharedRows,
    image: &[Option<Vec<PageImage>>],
) -> PyResult<Bound<'py, PyTuple>> {
    let py = n.py;
    let mut page = |p: &PageImage| {
        shared.get(py, Row::Page(*p), || {
            let row = (p.mapped, n.int(p.prot), p.uffd, p.populated, n.int(p.value));
            row.into_pyobject(py)
        })
    };
    try_tuple(
        py,
        image.iter().map(|pages| match pages {
            None => Ok(py.None().into_bound(py)),
            Some(pages) => try_tuple(py, pages.iter().map(&mut page)).map(Bound::into_any),
        }),
    )
}

/// One mm snapshot as Python objects: the `(vmas, ptes)` pair and its parts.
struct MmObjs<'a, 'py> {
    snap: &'a MmSnap,
    pair: Bound<'py, PyAny>,
    vmas: Bound<'py, PyTuple>,
    ptes: Bound<'py, PyTuple>,
}

/// `m` as Python objects, reusing those of `prev` (the same mm's previous snapshot) for equal
/// parts.
fn mm_to_py<'a, 'py>(
    n: &Ints<'_, 'py>,
    shared: &mut SharedRows,
    m: &'a MmSnap,
    prev: Option<&MmObjs<'_, 'py>>,
) -> PyResult<MmObjs<'a, 'py>> {
    let py = n.py;
    let vmas = if let Some(p) = prev.filter(|p| p.snap.vmas == m.vmas) {
        p.vmas.clone()
    } else {
        let rows = m.vmas.iter().map(|v| {
            shared.get(py, Row::Vma(*v), || {
                let row = (
                    n.int(v.start),
                    n.int(v.end),
                    n.int(v.prot),
                    v.uffd,
                    v.growsdown,
                    v.anon_vma,
                );
                row.into_pyobject(py)
            })
        });
        try_tuple(py, rows)?
    };
    let ptes = if let Some(p) = prev.filter(|p| p.snap.ptes == m.ptes) {
        p.ptes.clone()
    } else {
        let rows = m.ptes.iter().map(|p| {
            shared.get(py, Row::Pte(*p), || {
                let row = (n.int(p.kind), n.int(p.data), p.writable, n.int(p.ref_));
                row.into_pyobject(py)
            })
        });
        try_tuple(py, rows)?
    };
    let pair = (vmas.clone(), ptes.clone()).into_pyobject(py)?.into_any();
    Ok(MmObjs {
        snap: m,
        pair,
        vmas,
        ptes,
    })
}

/// The snapshots as `from_native` reads them. Consecutive snapshots mostly repeat an mm's
/// VMAs and PTEs, the folio counts and the swap slots unchanged: each such part reuses the
/// previous snapshot's Python object (an unchanged mm, its whole `(vmas, ptes)` pair; when no
/// mm changed, the tuple of them).
fn snapshots_to_py<'s, 'py>(
    n: &Ints<'_, 'py>,
    shared: &mut SharedRows,
    snaps: &'s [Snapshot],
) -> PyResult<Bound<'py, PyTuple>> {
    let py = n.py;
    let mut prev: Vec<Option<MmObjs<'s, 'py>>> = Vec::new();
    let mut prev_mms: Option<Bound<'py, PyTuple>> = None;
    let mut prev_counts: Option<(&Snapshot, Bound<'py, PyTuple>, Bound<'py, PyTuple>)> = None;
    let mut snapshot = |snap: &'s Snapshot| -> PyResult<Bound<'py, PyAny>> {
        // Whether every mm is as in the previous snapshot (None stays None).
        let same = snap.mms.len() == prev.len()
            && snap.mms.iter().zip(&prev).all(|(m, p)| match (m, p) {
                (None, None) => true,
                (Some(m), Some(p)) => p.snap == m,
                _ => false,
            });
        let mms = match &prev_mms {
            Some(mms) if same => mms.clone(),
            _ => {
                prev.resize_with(snap.mms.len(), || None);
                let items = snap.mms.iter().zip(prev.iter_mut()).map(|(m, p)| {
                    let Some(m) = m else {
                        *p = None;
                        return Ok(py.None().into_bound(py));
                    };
                    if let Some(p) = p.as_ref().filter(|p| p.snap == m) {
                        return Ok(p.pair.clone());
                    }
                    let objs = mm_to_py(n, shared, m, p.as_ref())?;
                    let pair = objs.pair.clone();
                    *p = Some(objs);
                    Ok(pair)
                });
                let mms = try_tuple(py, items)?;
                prev_mms = Some(mms.clone());
                mms
            }
        };
        let (folios, swap) = match &prev_counts {
            Some((p, folios, swap)) if p.folios == snap.folios && p.swap == snap.swap => {
                (folios.clone(), swap.clone())
            }
            _ => (
                tuple_of(py, snap.folios.iter())?,
                tuple_of(py, snap.swap.iter())?,
            ),
        };
        let item = (
            n.int(snap.after),
            mms,
            folios.clone(),
            swap.clone(),
            tuple_of(py, snap.locks.iter())?,
        );
        prev_counts = Some((snap, folios, swap));
        Ok(item.into_pyobject(py)?.into_any())
    };
    try_tuple(py, snaps.iter().map(&mut snapshot))
}

/// The verdict of `fuzz.linearize.check_record` on a record, without its explanation:
/// `(status, page, nodes)` (see `oracle::Verdict`), or None when the record is beyond the
/// native mirror (a field that is not an int of the expected kind, an mm outside 0..=3, an
/// image too short, ...): then Python decides. The GIL is released during the search.
#[pyfunction]
fn linearizable(
    py: Python<'_>,
    nr_pages: &Bound<'_, PyAny>,
    ops: &Bound<'_, PyAny>,
    growths: &Bound<'_, PyAny>,
    image: &Bound<'_, PyAny>,
    budget: &Bound<'_, PyAny>,
) -> PyResult<Option<(&'static str, i64, u64)>> {
    let (Ok(nr_pages), Ok(budget)) = (nr_pages.extract::<usize>(), budget.extract::<i64>()) else {
        return Ok(None);
    };
    let Some(rec) = lin_record(nr_pages, ops, growths, image) else {
        return Ok(None);
    };
    let verdict = py.detach(move || guard(move || oracle::check_record(&rec, budget)))?;
    Ok(verdict.map(|v| (v.status.name(), v.page, v.nodes)))
}

/// What the checker reads of a record: `RunRecord.ops`, `.growths` and `.image` as tuples of
/// `OpRecord` (a named tuple, read by position), `StackGrowth` and `PageImage` (read by
/// attribute); nothing is copied in Python.
fn lin_record(
    nr_pages: usize,
    ops: &Bound<'_, PyAny>,
    growths: &Bound<'_, PyAny>,
    image: &Bound<'_, PyAny>,
) -> Option<Record> {
    let ops = ops.cast::<PyTuple>().ok()?;
    let growths = growths.cast::<PyTuple>().ok()?;
    let image = image.cast::<PyTuple>().ok()?;
    Some(Record {
        nr_pages,
        ops: ops
            .iter()
            .map(|o| lin_op_record(&o))
            .collect::<Option<_>>()?,
        growths: growths
            .iter()
            .map(|g| lin_growth(&g))
            .collect::<Option<_>>()?,
        image: if image.is_empty() {
            None
        } else {
            Some(lin_image(image, nr_pages)?)
        },
    })
}

fn int_attr(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> Option<i64> {
    obj.getattr(name).ok()?.extract().ok()
}

fn mm_attr(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> Option<usize> {
    usize::try_from(int_attr(obj, name)?)
        .ok()
        .filter(|&mm| mm < MAX_MMS)
}

fn lin_op_record(o: &Bound<'_, PyAny>) -> Option<oracle::OpRecord> {
    let py = o.py();
    // `fuzz.record.OpRecord` is a named tuple: (index, part, task, op, invoke, response,
    // result). Reading it by position costs a fraction of a lookup by name.
    let rec = o.cast::<PyTuple>().ok()?;
    if rec.len() != 7 {
        return None;
    }
    let field = |i: usize| -> Option<i64> { rec.get_item(i).ok()?.extract().ok() };
    let op = rec.get_item(3).ok()?;
    let kind = op.getattr(intern!(py, "kind")).ok()?;
    // `fuzz.linearize` tests kinds by identity with `OpKind` members: a plain int is not one.
    if kind.is_exact_instance_of::<PyInt>() || kind.is_instance_of::<PyBool>() {
        return None;
    }
    Some(oracle::OpRecord {
        index: field(0)?,
        op: Op {
            kind: Kind::from_code(kind.extract().ok()?)?,
            mm: mm_attr(&op, intern!(py, "mm"))?,
            page: int_attr(&op, intern!(py, "page"))?,
            npages: int_attr(&op, intern!(py, "npages"))?,
            prot: int_attr(&op, intern!(py, "prot"))?,
            value: int_attr(&op, intern!(py, "value"))?,
        },
        invoke: field(4)?,
        response: field(5)?,
        result: field(6)?,
    })
}

fn lin_growth(g: &Bound<'_, PyAny>) -> Option<StackGrowth> {
    let py = g.py();
    Some(StackGrowth {
        step: int_attr(g, intern!(py, "step"))?,
        mm: mm_attr(g, intern!(py, "mm"))?,
        start: int_attr(g, intern!(py, "start"))?,
        end: int_attr(g, intern!(py, "end"))?,
        prot: int_attr(g, intern!(py, "prot"))?,
        uffd: int_attr(g, intern!(py, "uffd"))?,
    })
}

/// `fuzz.spec.image_state` of every page. Equal pages of an image are often one object
/// (`RunRecord.from_native` shares them): each object is read once.
fn lin_image(image: &Bound<'_, PyTuple>, nr_pages: usize) -> Option<Vec<ImageState>> {
    let py = image.py();
    let mut out = vec![[None; MAX_MMS]; nr_pages];
    let mut read: Vec<(*mut pyo3::ffi::PyObject, ImagePage)> = Vec::new();
    for (mm, pages) in image.iter().take(MAX_MMS).enumerate() {
        if pages.is_none() {
            continue;
        }
        let pages = pages.cast::<PyTuple>().ok()?;
        if pages.len() < nr_pages {
            return None;
        }
        for (state, p) in out.iter_mut().zip(pages.iter()) {
            let known = read.iter().find(|(ptr, _)| *ptr == p.as_ptr());
            let fields = if let Some(&(_, fields)) = known {
                fields
            } else {
                let fields = [
                    int_attr(&p, intern!(py, "mapped"))?,
                    int_attr(&p, intern!(py, "prot"))? & PROT_MASK,
                    int_attr(&p, intern!(py, "uffd"))?,
                    int_attr(&p, intern!(py, "populated"))?,
                    int_attr(&p, intern!(py, "value"))?,
                ];
                read.push((p.as_ptr(), fields));
                fields
            };
            state[mm] = Some(fields);
        }
    }
    Some(out)
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("FORMAT_VERSION", case::FORMAT_VERSION)?;
    m.add("OP_NAMES", PyTuple::new(py, case::OP_NAMES)?)?;
    m.add("MUTANTS", PyTuple::new(py, MUTANTS)?)?;
    m.add("LOCK_FIELDS", PyTuple::new(py, features::LOCK_FIELDS)?)?;
    m.add("CaseFormatError", py.get_type::<CaseFormatError>())?;
    m.add("UnknownMutant", py.get_type::<UnknownMutant>())?;
    m.add("EngineError", py.get_type::<EngineError>())?;
    m.add_function(wrap_pyfunction!(run_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(canonicalize, m)?)?;
    m.add_function(wrap_pyfunction!(decode_strict_ok, m)?)?;
    m.add_function(wrap_pyfunction!(toy_run, m)?)?;
    m.add_function(wrap_pyfunction!(toy_features, m)?)?;
    m.add_function(wrap_pyfunction!(feature_bucket, m)?)?;
    m.add_function(wrap_pyfunction!(linearizable, m)?)?;
    Ok(())
}
