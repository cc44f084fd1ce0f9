//! The Python face of the crate: the only file that touches PyO3.
//!
//! Every entry point runs its Rust work inside [`guard`], so a panic comes out as a
//! `RuntimeError` naming the bug rather than as PyO3's `PanicException`, which derives from
//! `BaseException` and would slip past `except Exception` in the harness. Malformed input is
//! `optimized.CaseFormatError`, a `ValueError`.

use std::any::Any;
use std::panic::{self, UnwindSafe};

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
use crate::record::{MmSnap, OpRecord, PageImage, RunRecord, Snapshot};
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

    fn int(
        &self,
        v: impl TryInto<usize> + IntoPyObject<'py> + Copy,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(obj) = v.try_into().ok().and_then(|i| self.small.get(i)) {
            return Ok(obj.bind(self.py).clone());
        }
        v.into_pyobject(self.py)
            .map(|obj| obj.into_any().into_bound())
            .map_err(Into::into)
    }
}

/// `RunRecord` as the nested tuples of `RunRecord.from_native` (same field order). Every
/// sequence the record keeps as a tuple is built as one here, so the conversion copies nothing.
fn record_to_py<'py>(py: Python<'py>, r: &RunRecord) -> PyResult<Bound<'py, PyTuple>> {
    let n = Ints::new(py);
    let ops = ops_to_py(&n, &r.ops)?;
    let mut made = Vec::new();
    let image = r
        .image
        .iter()
        .map(|m| image_to_py(&n, m.as_deref(), &mut made))
        .collect::<PyResult<Vec<_>>>()?;
    let image = PyTuple::new(py, image)?;
    let viol = r.violations.iter().map(|v| {
        (
            v.rule,
            v.function.as_str(),
            v.message.as_str(),
            v.step,
            v.task,
        )
    });
    let snaps = snapshots_to_py(&n, &r.snapshots)?;
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
    let items: [Bound<'_, PyAny>; 16] = [
        fixed_str(py, r.engine).into_any(),
        fixed_str(py, r.status).into_any(),
        PyTuple::new(py, ops)?.into_any(),
        image.into_any(),
        PyTuple::new(py, viol)?.into_any(),
        snaps.into_any(),
        PyTuple::new(py, locks)?.into_any(),
        PyTuple::new(py, &r.trace)?.into_any(),
        PyTuple::new(py, wait)?.into_any(),
        PyTuple::new(py, migr)?.into_any(),
        PyTuple::new(py, r.counters.map(|(name, c)| (fixed_str(py, name), c)))?.into_any(),
        schedule_bytes(py, &r.schedule)?.into_any(),
        PyBytes::new(py, &r.choices).into_any(),
        n.int(r.steps)?,
        PyTuple::new(py, &r.features)?.into_any(),
        extra.into_any(),
    ];
    PyTuple::new(py, items)
}

/// The op records: `(index, part, task, (kind, mm, page, npages, prot, value), invoke,
/// response, result)` each.
fn ops_to_py<'py>(n: &Ints<'_, 'py>, ops: &[OpRecord]) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    let mut out = Vec::with_capacity(ops.len());
    for o in ops {
        let op = &o.op;
        let fields = (
            n.int(op.kind.code())?,
            n.int(op.mm)?,
            n.int(op.page)?,
            n.int(op.npages)?,
            n.int(op.prot)?,
            n.int(op.value)?,
        );
        let item = (
            n.int(o.index)?,
            fixed_str(n.py, o.part),
            n.int(o.task)?,
            fields,
            n.int(o.invoke)?,
            n.int(o.response)?,
            n.int(o.result)?,
        );
        out.push(item.into_pyobject(n.py)?);
    }
    Ok(out)
}

/// One mm's memory image: None, or a tuple of per-page field tuples. Equal pages (most
/// unmapped or untouched pages look alike) share one tuple.
fn image_to_py<'py>(
    n: &Ints<'_, 'py>,
    pages: Option<&[PageImage]>,
    made: &mut Vec<(PageImage, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = n.py;
    let Some(pages) = pages else {
        return Ok(py.None().into_bound(py));
    };
    let mut rows = Vec::with_capacity(pages.len());
    for p in pages {
        let row = if let Some((_, obj)) = made.iter().find(|(q, _)| q == p) {
            obj.clone()
        } else {
            let obj = (
                p.mapped,
                n.int(p.prot)?,
                p.uffd,
                p.populated,
                n.int(p.value)?,
            )
                .into_pyobject(py)?
                .into_any();
            made.push((*p, obj.clone()));
            obj
        };
        rows.push(row);
    }
    Ok(PyTuple::new(py, rows)?.into_any())
}

/// One mm snapshot as Python objects: the `(vmas, ptes)` pair and its parts.
struct MmObjs<'a, 'py> {
    snap: &'a MmSnap,
    pair: Bound<'py, PyAny>,
    vmas: Bound<'py, PyAny>,
    ptes: Vec<Bound<'py, PyAny>>,
}

/// `m` as Python objects, reusing those of `prev` (the same mm's previous snapshot) for equal
/// parts.
fn mm_to_py<'a, 'py>(
    n: &Ints<'_, 'py>,
    m: &'a MmSnap,
    prev: Option<&MmObjs<'_, 'py>>,
) -> PyResult<MmObjs<'a, 'py>> {
    let py = n.py;
    let vmas = if let Some(p) = prev.filter(|p| p.snap.vmas == m.vmas) {
        p.vmas.clone()
    } else {
        let rows = m
            .vmas
            .iter()
            .map(|v| (v.start, v.end, v.prot, v.uffd, v.growsdown, v.anon_vma));
        PyTuple::new(py, rows)?.into_any()
    };
    let mut ptes = Vec::with_capacity(m.ptes.len());
    for (i, p) in m.ptes.iter().enumerate() {
        let same = prev.filter(|q| q.snap.ptes.get(i) == Some(p));
        ptes.push(match same {
            Some(q) => q.ptes[i].clone(),
            None => (n.int(p.kind)?, n.int(p.data)?, p.writable, n.int(p.ref_)?)
                .into_pyobject(py)?
                .into_any(),
        });
    }
    let pair = (vmas.clone(), PyTuple::new(py, &ptes)?)
        .into_pyobject(py)?
        .into_any();
    Ok(MmObjs {
        snap: m,
        pair,
        vmas,
        ptes,
    })
}

/// The snapshots as `from_native` reads them. Consecutive snapshots mostly repeat an mm's
/// VMAs and PTEs, the folio counts and the swap slots unchanged: each such part reuses the
/// previous snapshot's Python object (an unchanged mm, its whole `(vmas, ptes)` pair).
fn snapshots_to_py<'py>(n: &Ints<'_, 'py>, snaps: &[Snapshot]) -> PyResult<Bound<'py, PyTuple>> {
    let py = n.py;
    let mut prev: Vec<Option<MmObjs<'_, 'py>>> = Vec::new();
    let mut prev_counts: Option<(&Snapshot, Bound<'py, PyTuple>, Bound<'py, PyTuple>)> = None;
    let mut out = Vec::with_capacity(snaps.len());
    for snap in snaps {
        let mut mms = Vec::with_capacity(snap.mms.len());
        prev.resize_with(snap.mms.len(), || None);
        for (i, m) in snap.mms.iter().enumerate() {
            let Some(m) = m else {
                mms.push(py.None().into_bound(py));
                continue;
            };
            if let Some(p) = prev[i].as_ref().filter(|p| p.snap == m) {
                mms.push(p.pair.clone());
                continue;
            }
            let objs = mm_to_py(n, m, prev[i].as_ref())?;
            mms.push(objs.pair.clone());
            prev[i] = Some(objs);
        }
        let (folios, swap) = match &prev_counts {
            Some((p, folios, swap)) if p.folios == snap.folios && p.swap == snap.swap => {
                (folios.clone(), swap.clone())
            }
            _ => (
                PyTuple::new(py, &snap.folios)?,
                PyTuple::new(py, &snap.swap)?,
            ),
        };
        let item = (
            n.int(snap.after)?,
            PyTuple::new(py, mms)?,
            folios.clone(),
            swap.clone(),
            PyTuple::new(py, &snap.locks)?,
        );
        out.push(item.into_pyobject(py)?);
        prev_counts = Some((snap, folios, swap));
    }
    PyTuple::new(py, out)
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
