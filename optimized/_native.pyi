"""Stubs for the compiled module built from ``optimized/src/py.rs``; keep the two in step."""

from typing import Final

__all__ = [
    "FORMAT_VERSION",
    "OP_NAMES",
    "CaseFormatError",
    "canonicalize",
    "decode_strict_ok",
    "toy_run",
]

FORMAT_VERSION: Final[int]
"""The case format version this build reads (``fuzz.case.FORMAT_VERSION``)."""

OP_NAMES: Final[tuple[str, ...]]
"""Operation names indexed by op code (``fuzz.case.OP_NAMES``)."""

class CaseFormatError(ValueError):
    """Bytes that are not a canonical vmafuzz case; the message is one line."""

def canonicalize(data: bytes) -> bytes:
    """The canonical bytes of `data`: lenient decode, then encode. Never fails."""

def decode_strict_ok(data: bytes) -> bytes:
    """Strict decode, then encode; raises `CaseFormatError` unless `data` is canonical."""

def toy_run(
    name: str,
    strategy: int,
    seed: int,
    depth: int,
    steps: int,
    choices: bytes,
    stall_steps: int,
) -> tuple[
    str, int, list[int], list[int], list[int], list[int], list[tuple[int, str, str, list[int]]]
]:
    """Run a scheduler toy task set, as ``reference.sched.run_toy`` does with the same arguments."""
