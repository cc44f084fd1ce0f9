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
use pyo3::types::{PyBytes, PyTuple};

use crate::case;
use crate::sched::toys::{run_toy, Toy, ToyWait};
use crate::sched::RunOutcome;

pyo3::create_exception!(
    optimized,
    CaseFormatError,
    PyValueError,
    "Bytes that are not a canonical vmafuzz case; the message is one line."
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

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("FORMAT_VERSION", case::FORMAT_VERSION)?;
    m.add("OP_NAMES", PyTuple::new(py, case::OP_NAMES)?)?;
    m.add("CaseFormatError", py.get_type::<CaseFormatError>())?;
    m.add_function(wrap_pyfunction!(canonicalize, m)?)?;
    m.add_function(wrap_pyfunction!(decode_strict_ok, m)?)?;
    m.add_function(wrap_pyfunction!(toy_run, m)?)?;
    Ok(())
}
