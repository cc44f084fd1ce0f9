"""Stubs for the compiled module built from ``optimized/src/py.rs``; keep the two in step."""

from collections.abc import Sequence
from typing import Any, Final

from fuzz.record import OpRecord, PageImage, StackGrowth

__all__ = [
    "FORMAT_VERSION",
    "LOCK_FIELDS",
    "MUTANTS",
    "OP_NAMES",
    "CaseFormatError",
    "EngineError",
    "UnknownMutant",
    "canonicalize",
    "decode_strict_ok",
    "feature_bucket",
    "linearizable",
    "run_bytes",
    "toy_features",
    "toy_run",
]

FORMAT_VERSION: Final[int]
"""The case format version this build reads (``fuzz.case.FORMAT_VERSION``)."""

OP_NAMES: Final[tuple[str, ...]]
"""Operation names indexed by op code (``fuzz.case.OP_NAMES``)."""

LOCK_FIELDS: Final[tuple[str, ...]]
"""The lock classes of a task's lock summary, in field order (``reference.sched.LOCK_FIELDS``)."""

MUTANTS: Final[tuple[str, ...]]
"""The zoo mutants `run_bytes` accepts by name (ZOO.md)."""

class CaseFormatError(ValueError):
    """Bytes that are not a canonical vmafuzz case; the message is one line."""

class UnknownMutant(ValueError):  # noqa: N818 (the name the harness uses)
    """A mutant name that is not in `MUTANTS`; the message lists the known names."""

class EngineError(RuntimeError):
    """A broken internal invariant of the optimized engine (an engine bug, never an outcome)."""

def run_bytes(
    data: bytes,
    mutant: str | None = None,
    trace: bool = False,
    lenient: bool = False,
    features: bool = True,
) -> tuple[Any, ...]:
    """Run the case in `data` (canonical bytes, or any bytes with `lenient`) through the
    optimized engine; the nested tuples ``fuzz.record.RunRecord.from_native`` reads. With
    `features`, the record carries the interleaving features. The GIL is released while the
    engine runs."""

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

def toy_features(
    name: str,
    strategy: int,
    seed: int,
    depth: int,
    steps: int,
    choices: bytes,
    stall_steps: int,
) -> list[int]:
    """The interleaving feature buckets of a toy run, as ``reference.sched.toy_features``."""

def feature_bucket(site: str, locks: int, prev: str | None) -> int:
    """The bucket of one interleaving feature: `site` reached holding `locks`, after a switch
    from a task standing at `prev` (None: no switch), as ``reference.sched.feature_bucket``."""

def linearizable(
    nr_pages: int,
    ops: tuple[OpRecord, ...],
    growths: tuple[StackGrowth, ...],
    image: tuple[Sequence[PageImage] | None, ...],
    budget: int,
) -> tuple[str, int, int] | None:
    """The verdict of ``fuzz.linearize.check_record`` on a record (its case's `nr_pages`, the
    record's `ops`, `growths` and `image`), without the explanation: ``(status, page, nodes)``,
    where page is the first failing page, else the first undecided one, else -1, and nodes
    counts the search's memo entries over the pages searched, as Python counts them. None when
    the record is beyond the native mirror (a field of an unexpected type or range, an image
    shorter than the case): Python decides. The GIL is released during the search."""
