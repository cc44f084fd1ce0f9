//! The Python face of the crate: the only file that touches PyO3.
//!
//! Every entry point runs its Rust work inside [`guard`], so a panic comes out as a
//! `RuntimeError` naming the bug rather than as PyO3's `PanicException`, which derives from
//! `BaseException` and would slip past `except Exception` in the harness. Malformed input is
//! `optimized.CaseFormatError`, a `ValueError`.

use std::any::Any;
use std::panic::{self, UnwindSafe};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::case;
use crate::mutant::{Mutant, MUTANTS};
use crate::record::{MmSnap, RunRecord, Snapshot};
use crate::run::{self, run};
use crate::sched::toys::{run_toy, Toy, ToyWait};
use crate::sched::RunOutcome;

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
    let toy = Toy::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("unknown toy task set {name:?}")))?;
    let choices = choices.to_vec();
    let run = guard(move || run_toy(toy, strategy, seed, depth, steps, &choices, stall_steps))?;
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
/// engine; the nested tuples `fuzz.record.RunRecord.from_native` reads. The GIL is released
/// while the engine runs.
#[pyfunction]
#[pyo3(signature = (data, mutant=None, trace=false, lenient=false))]
fn run_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    mutant: Option<&str>,
    trace: bool,
    lenient: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let mutant = Mutant::from_name(mutant)?;
    let case = if lenient {
        case::decode(data)
    } else {
        case::decode_strict(data)?
    };
    let record = py.detach(move || guard(move || run(&case, mutant, trace)))??;
    record_to_py(py, record)
}

/// The chosen task ids as bytes (`tuple()` of it is the id sequence; ids are below 16).
fn schedule_bytes<'py>(py: Python<'py>, chosen: &[usize]) -> Bound<'py, PyBytes> {
    let ids: Vec<u8> = chosen
        .iter()
        .map(|&t| u8::try_from(t).unwrap_or(u8::MAX))
        .collect();
    PyBytes::new(py, &ids)
}

/// `RunRecord` as the nested tuples of `RunRecord.from_native` (same field order).
fn record_to_py(py: Python<'_>, r: RunRecord) -> PyResult<Bound<'_, PyTuple>> {
    let ops = PyList::empty(py);
    for o in &r.ops {
        let op = &o.op;
        let fields = (op.kind.code(), op.mm, op.page, op.npages, op.prot, op.value);
        let part = PyString::intern(py, o.part);
        ops.append((
            o.index, part, o.task, fields, o.invoke, o.response, o.result,
        ))?;
    }
    let image: Vec<Option<Vec<_>>> = r
        .image
        .iter()
        .map(|m| {
            m.as_ref().map(|pages| {
                pages
                    .iter()
                    .map(|p| (p.mapped, p.prot, p.uffd, p.populated, p.value))
                    .collect()
            })
        })
        .collect();
    let viol: Vec<_> = r
        .violations
        .iter()
        .map(|v| {
            (
                v.rule,
                v.function.as_str(),
                v.message.as_str(),
                v.step,
                v.task,
            )
        })
        .collect();
    let snaps = snapshots_to_py(py, &r.snapshots)?;
    let locks: Vec<_> = r
        .lock_events
        .iter()
        .map(|e| {
            (
                e.step,
                e.task,
                e.action,
                e.primitive,
                e.obj.as_str(),
                e.mode,
                e.seq.clone(),
            )
        })
        .collect();
    let wait: Vec<_> = r
        .wait_for
        .iter()
        .map(|w| (w.task, w.site, w.obj.as_str(), w.holders.clone()))
        .collect();
    let migr: Vec<_> = r
        .migration_failures
        .iter()
        .map(|m| {
            (
                m.step,
                m.task,
                m.folio.as_str(),
                m.expected,
                m.actual,
                m.holders.clone(),
            )
        })
        .collect();
    let extra = PyDict::new(py);
    extra.set_item("stopped", r.stopped)?;
    if !r.growths.is_empty() {
        extra.set_item("growths", PyTuple::new(py, &r.growths)?)?;
    }
    let items: [Bound<'_, PyAny>; 15] = [
        PyString::intern(py, r.engine).into_any(),
        PyString::intern(py, r.status).into_any(),
        ops.into_pyobject(py)?.into_any(),
        image.into_pyobject(py)?.into_any(),
        viol.into_pyobject(py)?.into_any(),
        snaps.into_pyobject(py)?.into_any(),
        locks.into_pyobject(py)?.into_any(),
        r.trace.into_pyobject(py)?.into_any(),
        wait.into_pyobject(py)?.into_any(),
        migr.into_pyobject(py)?.into_any(),
        r.counters.to_vec().into_pyobject(py)?.into_any(),
        schedule_bytes(py, &r.schedule).into_any(),
        PyBytes::new(py, &r.choices).into_any(),
        r.steps.into_pyobject(py)?.into_any(),
        extra.into_any(),
    ];
    PyTuple::new(py, items)
}

/// The snapshots as `from_native` reads them. Consecutive snapshots mostly repeat an mm's
/// VMAs and PTEs unchanged: such an mm snapshot reuses the previous one's Python object.
fn snapshots_to_py<'py>(py: Python<'py>, snaps: &[Snapshot]) -> PyResult<Bound<'py, PyList>> {
    let mut prev: Vec<Option<(&MmSnap, Bound<'py, PyAny>)>> = Vec::new();
    let out = PyList::empty(py);
    for snap in snaps {
        let mms = PyList::empty(py);
        prev.resize(snap.mms.len(), None);
        for (i, m) in snap.mms.iter().enumerate() {
            let Some(m) = m else {
                mms.append(py.None())?;
                continue;
            };
            if let Some((_, obj)) = prev[i].as_ref().filter(|(p, _)| *p == m) {
                mms.append(obj)?;
                continue;
            }
            let vmas: Vec<_> = m
                .vmas
                .iter()
                .map(|v| (v.start, v.end, v.prot, v.uffd, v.growsdown, v.anon_vma))
                .collect();
            let ptes: Vec<_> = m
                .ptes
                .iter()
                .map(|p| (p.kind, p.data, p.writable, p.ref_))
                .collect();
            let obj = (vmas, ptes).into_pyobject(py)?.into_any();
            mms.append(&obj)?;
            prev[i] = Some((m, obj));
        }
        let item = (snap.after, mms, &snap.folios, &snap.swap, &snap.locks);
        out.append(item.into_pyobject(py)?)?;
    }
    Ok(out)
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("FORMAT_VERSION", case::FORMAT_VERSION)?;
    m.add("OP_NAMES", PyTuple::new(py, case::OP_NAMES)?)?;
    m.add("MUTANTS", PyTuple::new(py, MUTANTS)?)?;
    m.add("CaseFormatError", py.get_type::<CaseFormatError>())?;
    m.add("UnknownMutant", py.get_type::<UnknownMutant>())?;
    m.add("EngineError", py.get_type::<EngineError>())?;
    m.add_function(wrap_pyfunction!(run_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(canonicalize, m)?)?;
    m.add_function(wrap_pyfunction!(decode_strict_ok, m)?)?;
    m.add_function(wrap_pyfunction!(toy_run, m)?)?;
    Ok(())
}
