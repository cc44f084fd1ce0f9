"""The optimized engine: Linux v6.6 ``mm/`` with ``CONFIG_PER_VMA_LOCK=y``, written in Rust.

The compiled module `optimized._native` is built by maturin from ``optimized/Cargo.toml`` when
the project is installed (``pip install .`` or ``pip install -e .``; after a Rust edit, run
``pip install -e .`` again). This package re-exports its public names; ``_native.pyi`` holds their
signatures. Malformed input raises `CaseFormatError` (a `ValueError`), an unknown mutant name
`UnknownMutant` (a `ValueError` listing `MUTANTS`), a broken engine invariant `EngineError`; a
panic inside the engine comes out as `RuntimeError`, never as PyO3's ``PanicException``.

``run(case)`` is the facade every oracle uses; ``run_bytes(data)`` is the harness's hot path: it
takes the encoded case and returns the nested tuples `fuzz.record.RunRecord.from_native` reads.
"""

from __future__ import annotations

from itertools import chain

from fuzz.case import Case, encode
from fuzz.record import RunRecord
from optimized._native import (
    FORMAT_VERSION,
    MUTANTS,
    OP_NAMES,
    CaseFormatError,
    EngineError,
    UnknownMutant,
    canonicalize,
    decode_strict_ok,
    run_bytes,
)

__all__ = [
    "FORMAT_VERSION",
    "MUTANTS",
    "OP_NAMES",
    "CaseFormatError",
    "EngineError",
    "UnknownMutant",
    "canonicalize",
    "decode_strict_ok",
    "run",
    "run_bytes",
]


def run(
    case: Case,
    mutant: str | None = None,
    trace: bool = False,
    features: bool = True,
    encoded: bytes | None = None,
) -> RunRecord:
    """Run `case` through the optimized engine (with the named zoo `mutant`, if any); the
    same case gives the same record. With `trace`, lock events and the step trace are kept;
    with `features`, the interleaving features. `encoded`: ``encode(case)``, if the caller
    has it already."""
    # encode() only ever produces canonical bytes: skip the strict decoder's re-encoding check.
    data = encode(case) if encoded is None else encoded
    raw = run_bytes(data, mutant, trace, True, features)
    # The record's operations are the case's, in case order (`Case.all_ops`).
    return RunRecord.from_native(raw, tuple(chain(case.setup, *case.threads, case.post)))
