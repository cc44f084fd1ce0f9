"""The Python face of the optimized engine: `optimized.run`, `run_bytes`, errors, mutants."""

from __future__ import annotations

import pytest

import optimized
from fuzz.case import encode, parse_case
from fuzz.gen import random_case
from fuzz.record import VMA_LOCK_COUNTERS, RunRecord

ASYNC_SWAPIN = """
pages 2
swap async
setup:
  mmap mm0 0+1 rw
  write mm0 0 0x2a
  madvise_pageout mm0 0+1
  read mm0 0
  madvise_pageout mm0 0+1
thread 0:
  read mm0 0
schedule serial
"""


def test_run_returns_a_record_with_the_vma_lock_counters() -> None:
    rec = optimized.run(parse_case(ASYNC_SWAPIN))
    assert isinstance(rec, RunRecord)
    assert rec.engine == "optimized"
    assert rec.status == "ok"
    assert rec.violations == ()
    assert [o.result for o in rec.ops] == [0, 0, 0, 0x2A, 0, 0x2A]
    assert tuple(name for name, _ in rec.counters) == VMA_LOCK_COUNTERS
    # The swap-in under the VMA lock drops it to wait for the I/O and retries.
    assert rec.counter("VMA_LOCK_RETRY") == 1
    assert len(rec.snapshots) == 6  # serial: one after every operation


def test_run_bytes_is_the_same_run() -> None:
    case = random_case(7)
    assert RunRecord.from_native(optimized.run_bytes(encode(case))) == optimized.run(case)


def test_runs_are_deterministic() -> None:
    for seed in range(20):
        case = random_case(seed)
        assert optimized.run(case, trace=True) == optimized.run(case, trace=True)


def test_trace_carries_lock_events_with_sequence_numbers() -> None:
    rec = optimized.run(parse_case(ASYNC_SWAPIN), trace=True)
    assert rec.trace
    vm = [e for e in rec.lock_events if e.obj.endswith(".vm_lock")]
    mmap = [e for e in rec.lock_events if e.obj.endswith(".mmap_lock")]
    assert vm and all(len(e.seq) == 2 for e in vm)  # (mm_lock_seq, vm_lock_seq)
    assert mmap and all(len(e.seq) == 1 for e in mmap)  # (mm_lock_seq,)
    assert optimized.run(parse_case(ASYNC_SWAPIN)).lock_events == ()


def test_malformed_bytes_raise_case_format_error() -> None:
    data = encode(random_case(3))
    with pytest.raises(optimized.CaseFormatError):
        optimized.run_bytes(data[:5])
    with pytest.raises(ValueError, match="magic"):
        optimized.run_bytes(b"\x00" + data[1:])
    # Lenient decoding accepts any bytes, as the fuzzers feed them.
    assert optimized.run_bytes(b"\x00\x01\x02", lenient=True)[1] == "ok"


def test_mutants() -> None:
    assert optimized.MUTANTS[0] == "Z18_double_vma_end_read"
    assert len(set(optimized.MUTANTS)) == len(optimized.MUTANTS) == 8
    with pytest.raises(optimized.UnknownMutant, match="Z18_double_vma_end_read"):
        optimized.run(random_case(1), mutant="Z99_nothing")
    assert issubclass(optimized.UnknownMutant, ValueError)
    assert issubclass(optimized.EngineError, Exception)


def test_z18_is_caught_by_the_contract_layer() -> None:
    case = parse_case(ASYNC_SWAPIN)
    assert optimized.run(case).violations == ()
    rec = optimized.run(case, mutant="Z18_double_vma_end_read")
    assert "lock.release-unheld" in {v.rule for v in rec.violations}
