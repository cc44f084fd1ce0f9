"""The optimized engine: Linux v6.6 ``mm/`` with ``CONFIG_PER_VMA_LOCK=y``, written in Rust.

The compiled module `optimized._native` is built by maturin from ``optimized/Cargo.toml`` when
the project is installed (``pip install .`` or ``pip install -e .``; after a Rust edit, run
``pip install -e .`` again). This package re-exports its public names; ``_native.pyi`` holds their
signatures. Malformed input raises `CaseFormatError` (a `ValueError`); a panic inside the engine
comes out as `RuntimeError`, never as PyO3's ``PanicException``.
"""

from optimized._native import (
    FORMAT_VERSION,
    OP_NAMES,
    CaseFormatError,
    canonicalize,
    decode_strict_ok,
)

__all__ = [
    "FORMAT_VERSION",
    "OP_NAMES",
    "CaseFormatError",
    "canonicalize",
    "decode_strict_ok",
]
