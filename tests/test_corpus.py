"""Corpus bundles (`fuzz.corpus`): the format, strict reading, atomic writing, and the
pack / unpack / merge / export operations on files."""

from __future__ import annotations

import hashlib
import io
import pathlib
import struct
import zipfile
from collections.abc import Callable

import lz4.frame
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz import corpus
from fuzz.case import FORMAT_VERSION, Case, Op, OpKind, Schedule, decode_strict, encode
from fuzz.corpus import BUNDLE_MAGIC, BUNDLE_VERSION, CorpusError
from fuzz.strategies import cases

SCENARIO = """\
# A tiny scenario with two schedules.
# reaches: read=ok
# reaches optimized: VMA_LOCK_ABORT
pages 2
setup:
  mmap mm0 0+2 rw
thread 0:
  write mm0 0 0x5
thread 1:
  read mm0 0
schedule serial
schedule pct seed=0x1 depth=2 steps=20
"""


def small_cases() -> list[Case]:
    base = Case(threads=((Op(OpKind.READ, 0, 0),),), setup=(Op(OpKind.MMAP, 0, 0, 2, 3),))
    return [
        base,
        Case(threads=base.threads, setup=base.setup, schedule=Schedule.random(7)),
        Case(threads=((Op(OpKind.WRITE, 0, 1, value=9),), ()), nr_pages=2),
    ]


def payload(
    records: list[bytes],
    *,
    magic: bytes = BUNDLE_MAGIC,
    version: int = BUNDLE_VERSION,
    case_version: int = FORMAT_VERSION,
    count: int | None = None,
) -> bytes:
    """A payload built by hand, records in the given order, with a valid checksum."""
    n = len(records) if count is None else count
    out = bytearray(struct.pack("<4sHHI", magic, version, case_version, n))
    for r in records:
        out += struct.pack("<I", len(r)) + r
    return bytes(out + hashlib.sha256(out).digest())


def frame(data: bytes) -> bytes:
    blob: bytes = lz4.frame.compress(data, content_checksum=True)
    return blob


# ---------------------------------------------------------------------------------------------
# Format


def test_record_name_is_12_hex_of_sha256() -> None:
    data = encode(small_cases()[0])
    assert corpus.record_name(data) == hashlib.sha256(data).hexdigest()[:12]


def test_round_trip_sorts_and_deduplicates(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "b.lz4"
    items: list[Case | bytes] = [*small_cases(), small_cases()[0], encode(small_cases()[1])]
    assert corpus.write_bundle(path, items) == 3
    records = corpus.read_records(path)
    assert records == sorted({encode(c) for c in small_cases()})
    assert corpus.read_bundle(path) == [decode_strict(r) for r in records]
    names = [e.name for e in corpus.read_entries(path)]
    assert names == [corpus.record_name(r) for r in records]


def test_same_set_same_bytes(tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a.lz4", tmp_path / "b.lz4"
    corpus.write_bundle(a, small_cases())
    corpus.write_bundle(b, list(reversed(small_cases())) * 2)
    assert a.read_bytes() == b.read_bytes()
    assert lz4.frame.decompress(a.read_bytes()) == corpus.encode_payload(
        encode(c) for c in small_cases()
    )


@given(st.lists(cases(max_threads=3, max_ops=4), max_size=8))
def test_payload_round_trip(items: list[Case]) -> None:
    records = [encode(c) for c in items]
    assert corpus.decode_payload(corpus.encode_payload(records), "x") == sorted(set(records))


def test_empty_bundle(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.lz4"
    assert corpus.write_bundle(path, []) == 0
    assert corpus.read_bundle(path) == []


# ---------------------------------------------------------------------------------------------
# Strict reading: every defect is a one-line CorpusError naming the file


def _good() -> bytes:
    return corpus.encode_payload(encode(c) for c in small_cases())


def _flip_last_record_byte(p: bytes) -> bytes:
    b = bytearray(p)
    b[-33] ^= 0xFF
    return bytes(b)


RECS = sorted(encode(c) for c in small_cases())


def _corrupt_frame(blob: bytes) -> bytes:
    b = bytearray(blob)
    b[len(b) // 2] ^= 0x55
    return bytes(b)


def _truncated_record() -> bytes:
    """A payload whose last record claims more bytes than there are, checksum valid."""
    body = bytearray(struct.pack("<4sHHI", BUNDLE_MAGIC, BUNDLE_VERSION, FORMAT_VERSION, 1))
    body += struct.pack("<I", 500) + RECS[0]
    return bytes(body + hashlib.sha256(body).digest())


BAD_BUNDLES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "not a corpus bundle (not an lz4 frame)"),
    "text": (lambda: b"hello\n", "not a corpus bundle (not an lz4 frame)"),
    "truncated-frame": (lambda: frame(_good())[:-6], "lz4 frame is truncated"),
    "bit-flip": (lambda: _corrupt_frame(frame(_good())), "corrupt lz4 frame"),
    "trailing": (lambda: frame(_good()) + b"xx", "2 bytes after the lz4 frame"),
    "magic": (lambda: frame(payload(RECS, magic=b"NOPE")), "not a vmafuzz corpus bundle"),
    "version": (lambda: frame(payload(RECS, version=9)), "unknown bundle format version 9"),
    "case-version": (
        lambda: frame(payload(RECS, case_version=FORMAT_VERSION + 1)),
        f"holds case format version {FORMAT_VERSION + 1}",
    ),
    "checksum": (lambda: frame(_flip_last_record_byte(_good())), "checksum mismatch"),
    "short": (lambda: frame(b"VFCB"), "bundle is truncated"),
    "count": (lambda: frame(payload(RECS, count=5)), "header says 5 records, found 3"),
    "record-length": (lambda: frame(_truncated_record()), "record 0 is truncated"),
    "unsorted": (lambda: frame(payload(RECS[::-1])), "record 1 is out of order or repeated"),
    "repeated": (lambda: frame(payload([RECS[0], RECS[0]])), "out of order or repeated"),
    "bad-record": (lambda: frame(payload([b"\xa5\x01junk"])), "record 0 ("),
}


@pytest.mark.parametrize("kind", sorted(BAD_BUNDLES))
def test_bad_bundle_is_one_line_error(tmp_path: pathlib.Path, kind: str) -> None:
    make, message = BAD_BUNDLES[kind]
    path = tmp_path / f"{kind}.lz4"
    path.write_bytes(make())
    with pytest.raises(CorpusError) as info:
        corpus.read_bundle(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_missing_bundle(tmp_path: pathlib.Path) -> None:
    with pytest.raises(CorpusError, match=r"nope\.lz4: No such file or directory$"):
        corpus.read_bundle(tmp_path / "nope.lz4")


# ---------------------------------------------------------------------------------------------
# Writing never loses data


def test_write_rejects_non_canonical_bytes_and_keeps_old_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "b.lz4"
    corpus.write_bundle(path, small_cases())
    before = path.read_bytes()
    with pytest.raises(CorpusError, match="case is truncated"):
        corpus.write_bundle(path, [b"\xa5\x01"])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.lz4"]  # no temporary left


def test_write_into_missing_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(CorpusError, match=r"cannot write \(No such file or directory\)"):
        corpus.write_bundle(tmp_path / "no" / "b.lz4", small_cases())


# ---------------------------------------------------------------------------------------------
# Case files, scenarios, pack / unpack / merge / export


def test_parse_scenario_gives_one_case_per_schedule() -> None:
    sc = corpus.parse_scenario(SCENARIO)
    assert [c.schedule for c in sc.cases] == [Schedule.serial(), Schedule.pct(1, 2, 20)]
    assert sc.cases[0].threads == sc.cases[1].threads
    assert sc.reaches == {
        "both": frozenset({"read=ok"}),
        "optimized": frozenset({"VMA_LOCK_ABORT"}),
    }


def test_parse_scenario_keeps_line_numbers() -> None:
    bad = SCENARIO.replace("read mm0 0", "frobnicate mm0 0")
    with pytest.raises(ValueError, match=r"^line 10: unknown op 'frobnicate'"):
        corpus.parse_scenario(bad)


def test_scenario_without_schedule_is_serial() -> None:
    text = "\n".join(line for line in SCENARIO.splitlines() if "schedule" not in line)
    (case,) = corpus.parse_scenario(text).cases
    assert case.schedule == Schedule.serial()


def make_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    d = tmp_path / "cases"
    d.mkdir()
    (d / "a.case").write_text(SCENARIO)
    (d / "raw").write_bytes(encode(small_cases()[2]))
    (d / ".hidden").write_text("ignored")
    (d / "sub").mkdir()
    return d


def test_pack_reads_text_scenarios_and_binary_files(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "b.lz4"
    assert corpus.pack(make_dir(tmp_path), out) == (3, 2)
    want = [*corpus.parse_scenario(SCENARIO).cases, small_cases()[2]]
    assert corpus.read_records(out) == sorted(encode(c) for c in want)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("bad.case", b"pages 4\nthread 0:\n  frobnicate mm0 1\n", "line 3: unknown op"),
        ("bad.bin", b"\xa5\x01\x00", "case is truncated"),
        ("latin1.case", b"\xff\xfe", "neither a case in text form nor canonical bytes"),
    ],
)
def test_pack_bad_file_writes_nothing(
    tmp_path: pathlib.Path, name: str, data: bytes, message: str
) -> None:
    d = make_dir(tmp_path)
    (d / name).write_bytes(data)
    out = tmp_path / "b.lz4"
    out.write_bytes(b"precious")
    with pytest.raises(CorpusError) as info:
        corpus.pack(d, out)
    assert str(info.value).startswith(f"{d / name}: ") and message in str(info.value)
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("binary", [False, True])
def test_unpack_then_pack_round_trips(tmp_path: pathlib.Path, binary: bool) -> None:
    bundle, again = tmp_path / "b.lz4", tmp_path / "again.lz4"
    corpus.write_bundle(bundle, small_cases())
    out = tmp_path / "out"
    assert corpus.unpack(bundle, out, binary) == 3
    names = sorted(p.name for p in out.iterdir())
    suffix = "" if binary else ".case"
    assert names == sorted(e.name + suffix for e in corpus.read_entries(bundle))
    assert corpus.unpack(bundle, out, binary) == 0  # identical files are left alone
    corpus.pack(out, again)
    assert again.read_bytes() == bundle.read_bytes()


def test_unpack_refuses_to_overwrite_other_contents(tmp_path: pathlib.Path) -> None:
    bundle = tmp_path / "b.lz4"
    corpus.write_bundle(bundle, small_cases())
    out = tmp_path / "out"
    out.mkdir()
    last = corpus.read_entries(bundle)[-1].name
    (out / f"{last}.case").write_text("mine")
    with pytest.raises(CorpusError, match="exists with other contents"):
        corpus.unpack(bundle, out)
    assert [p.name for p in out.iterdir()] == [f"{last}.case"]  # nothing else written
    assert (out / f"{last}.case").read_text() == "mine"


def test_merge_is_a_union_and_may_write_an_input(tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a.lz4", tmp_path / "b.lz4"
    one, two, three = small_cases()
    corpus.write_bundle(a, [one, two])
    corpus.write_bundle(b, [two, three])
    assert corpus.merge(a, [a, b]) == 3
    assert corpus.read_records(a) == sorted(encode(c) for c in (one, two, three))


def test_merge_with_a_bad_input_leaves_the_output(tmp_path: pathlib.Path) -> None:
    a, bad = tmp_path / "a.lz4", tmp_path / "bad.lz4"
    corpus.write_bundle(a, small_cases()[:1])
    bad.write_bytes(b"junk")
    before = a.read_bytes()
    with pytest.raises(CorpusError, match=r"bad\.lz4: not a corpus bundle"):
        corpus.merge(a, [a, bad])
    assert a.read_bytes() == before


def test_seed_zip_is_deterministic_and_canonical(tmp_path: pathlib.Path) -> None:
    bundle, z1, z2 = tmp_path / "b.lz4", tmp_path / "x_seed_corpus.zip", tmp_path / "y.zip"
    corpus.write_bundle(bundle, small_cases())
    assert corpus.export_seeds(bundle, z1) == 3
    corpus.export_seeds(bundle, z2)
    assert z1.read_bytes() == z2.read_bytes()
    with zipfile.ZipFile(io.BytesIO(z1.read_bytes())) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == sorted(e.name for e in corpus.read_entries(bundle))
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        for info in infos:
            data = zf.read(info)
            assert corpus.record_name(data) == info.filename
            decode_strict(data)


def test_ls_lines() -> None:
    case = corpus.parse_scenario(SCENARIO).cases[1]
    assert corpus.summary(case) == "2x2   pct      2p sync: write | read"
