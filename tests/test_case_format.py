"""The case format: the shared vectors, the round-trip properties, and Python/Rust agreement.

The vectors in ``tests/vectors/case_vectors.json`` come from `tests/vectors/make_case_vectors.py`;
`optimized/tests/codec.rs` checks the Rust codec against the same file.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import optimized
from fuzz import case as pycase
from fuzz.case import (
    Case,
    CaseFormatError,
    decode,
    decode_strict,
    encode,
    format_case,
    parse_case,
)
from fuzz.strategies import cases, ops, schedules
from optimized import _native

VECTORS_PATH = pathlib.Path(__file__).parent / "vectors" / "case_vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text())["vectors"]


def by_name(vectors: list[dict[str, Any]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("vec", vectors, ids=[v["name"] for v in vectors])


def raw(vec: dict[str, Any], key: str = "input_hex") -> bytes:
    return bytes.fromhex(vec[key])


# ---------------------------------------------------------------------------------------------
# The vectors


def test_vectors_are_for_this_format_version() -> None:
    assert json.loads(VECTORS_PATH.read_text())["format_version"] == pycase.FORMAT_VERSION
    assert len(VECTORS) >= 30


@by_name(VECTORS)
def test_python_lenient_decode_matches_vector(vec: dict[str, Any]) -> None:
    assert encode(decode(raw(vec))).hex() == vec["canonical_hex"]


@by_name(VECTORS)
def test_python_strict_decode_matches_vector(vec: dict[str, Any]) -> None:
    data = raw(vec)
    if vec["strict_error"] is None:
        assert encode(decode_strict(data)) == data
    else:
        with pytest.raises(CaseFormatError) as exc:
            decode_strict(data)
        assert str(exc.value) == vec["strict_error"]


@by_name(VECTORS)
def test_python_text_form_matches_vector(vec: dict[str, Any]) -> None:
    case = decode(raw(vec))
    assert format_case(case) == vec["text"]
    assert parse_case(vec["text"]) == case


@by_name(VECTORS)
def test_rust_canonicalize_matches_vector(vec: dict[str, Any]) -> None:
    assert _native.canonicalize(raw(vec)).hex() == vec["canonical_hex"]


@by_name(VECTORS)
def test_rust_strict_decode_matches_vector(vec: dict[str, Any]) -> None:
    data = raw(vec)
    if vec["strict_error"] is None:
        assert _native.decode_strict_ok(data) == data
    else:
        with pytest.raises(optimized.CaseFormatError) as exc:
            _native.decode_strict_ok(data)
        assert str(exc.value) == vec["strict_error"]


# ---------------------------------------------------------------------------------------------
# The two engines declare the same format


def test_native_format_version_matches_python() -> None:
    assert _native.FORMAT_VERSION == pycase.FORMAT_VERSION


def test_native_op_names_match_python() -> None:
    assert _native.OP_NAMES == pycase.OP_NAMES
    assert [pycase.OpKind[name.upper()] for name in _native.OP_NAMES] == list(pycase.OpKind)


def test_native_error_is_a_value_error_of_its_own() -> None:
    assert issubclass(optimized.CaseFormatError, ValueError)
    assert optimized.CaseFormatError is not ValueError
    assert optimized.CaseFormatError.__module__ == "optimized"


def test_native_rejects_garbage_with_its_declared_error() -> None:
    with pytest.raises(optimized.CaseFormatError, match="magic byte 0x00"):
        _native.decode_strict_ok(bytes(64))


# ---------------------------------------------------------------------------------------------
# Properties of canonical cases


@given(cases())
def test_decode_inverts_encode(case: Case) -> None:
    assert decode(encode(case)) == case


@given(cases())
def test_decode_strict_inverts_encode(case: Case) -> None:
    assert decode_strict(encode(case)) == case


@given(cases())
def test_parse_case_inverts_format_case(case: Case) -> None:
    assert parse_case(format_case(case)) == case


@given(cases())
def test_rust_keeps_canonical_bytes(case: Case) -> None:
    data = encode(case)
    assert _native.canonicalize(data) == data
    assert _native.decode_strict_ok(data) == data


@given(st.integers(1, pycase.MAX_PAGES).flatmap(lambda n: st.tuples(st.just(n), ops(n))))
def test_drawn_ops_are_canonical(pages_and_op: tuple[int, pycase.Op]) -> None:
    nr_pages, op = pages_and_op
    Case(threads=((op,),), nr_pages=nr_pages).validate()


def _canonical_by_normalizing(op: pycase.Op, nr_pages: int) -> bool:
    """The definition `fuzz.case._canonical_op` computes without building an op."""
    canon = pycase.normalize_op(op.kind, op.mm, op.page, op.npages, op.prot, op.value, nr_pages)
    return canon == op and (
        0 <= op.mm < pycase.MAX_MMS
        and 0 <= op.page < nr_pages
        and (1 <= op.npages <= nr_pages if op.kind in pycase._RANGE_KINDS else op.npages == 0)
        and 0 <= op.value <= 0xFFFF
    )


FIELD = st.integers(-2, 9) | st.integers(-(1 << 17), 1 << 17)


@given(st.sampled_from(pycase.OpKind), FIELD, FIELD, FIELD, FIELD, FIELD, st.integers(1, 16))
def test_canonical_op_check_matches_normalize_op(
    kind: pycase.OpKind, mm: int, page: int, npages: int, prot: int, value: int, nr_pages: int
) -> None:
    op = pycase.Op(kind, mm, page, npages, prot, value)
    assert pycase._canonical_op(op, nr_pages) == _canonical_by_normalizing(op, nr_pages)


@given(schedules())
def test_drawn_schedules_are_canonical(schedule: pycase.Schedule) -> None:
    Case(threads=((),), schedule=schedule).validate()


# ---------------------------------------------------------------------------------------------
# Arbitrary bytes: totality, and Python and Rust agree


@st.composite
def near_canonical(draw: st.DrawFn) -> bytes:
    """Canonical bytes with one byte changed, cut short, or extended: the strict paths."""
    data = bytearray(encode(draw(cases(max_threads=3, max_ops=3))))
    how = draw(st.sampled_from(["patch", "cut", "extend"]))
    if how == "patch":
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif how == "cut":
        del data[draw(st.integers(0, len(data) - 1)) :]
    else:
        data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


ANY_BYTES = st.one_of(st.binary(max_size=600), near_canonical())


def strict_outcome(decode_ok: Any, error: type[Exception], data: bytes) -> tuple[str, Any]:
    """("ok", bytes) or ("error", message); any other exception propagates and fails."""
    try:
        return ("ok", decode_ok(data))
    except error as e:
        return ("error", str(e))


@given(ANY_BYTES)
def test_decode_is_total(data: bytes) -> None:
    case = decode(data).validate()
    assert decode_strict(encode(case)) == case


@given(ANY_BYTES)
def test_rust_canonicalize_agrees_with_python(data: bytes) -> None:
    assert _native.canonicalize(data) == encode(decode(data))


@given(ANY_BYTES)
def test_rust_strict_decode_agrees_with_python(data: bytes) -> None:
    # Only the declared exception may come out: a Rust panic would surface as a BaseException.
    rust = strict_outcome(_native.decode_strict_ok, optimized.CaseFormatError, data)
    python = strict_outcome(lambda d: encode(decode_strict(d)), CaseFormatError, data)
    assert rust == python


def test_the_text_form_refuses_another_format_version() -> None:
    case = pycase.parse_case("pages 2\nsetup:\n  mmap mm0 0+2 rw\nthread 0:\n  read mm0 0\n")
    text = pycase.format_case(case)
    assert f"# vmafuzz case, format {pycase.FORMAT_VERSION}" in text
    assert pycase.parse_case(text) == case
    newer = text.replace(f"format {pycase.FORMAT_VERSION}", f"format {pycase.FORMAT_VERSION + 1}")
    with pytest.raises(pycase.CaseFormatError, match="line 1: case file of format version"):
        pycase.parse_case(newer)
