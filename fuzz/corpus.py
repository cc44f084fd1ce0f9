"""Corpus bundles: a set of canonical cases in one lz4 file (bundle format version 1).

A bundle is **one lz4 frame** (`lz4.frame`, content checksum on) whose payload is::

    off     size  field
    0       4     magic b"VFCB" (vmafuzz corpus bundle)
    4       2     bundle format version, u16 LE (`BUNDLE_VERSION`, 1)
    6       2     case format version of every record, u16 LE (`fuzz.case.FORMAT_VERSION`)
    8       4     record count N, u32 LE
    12      ...   N records, each a u32 LE length L and L bytes of a canonical case
                  (`fuzz.case.encode`), sorted by their bytes, no two equal
    end-32  32    sha256 of everything before it (header and records)

Because the records are sorted and unique, a bundle is a set: the same cases always give the same
payload. A record's **name** is the first 12 hex digits of the sha256 of its bytes; test ids,
``unpack``'s file names and seed-corpus entries use it.

Reading is strict: a corrupt or truncated frame, bytes after the frame, a wrong magic, an
unknown bundle or case format version, a record count or length that does not add up, records out
of order or repeated, a checksum mismatch, or a record `fuzz.case.decode_strict` rejects each
raise `CorpusError` with a one-line message that starts with the file name. Writing is atomic (a
temporary file beside the target, then `os.replace`), so a failed write leaves any existing
file as it was. ``corpora/README.md`` documents the format and its bump policy for users.

Case *files* (what ``pack`` reads and ``unpack`` writes) are either canonical bytes (the first
byte is `fuzz.case.MAGIC`, which cannot start UTF-8 text) or the text form of
`fuzz.case.parse_case`. A text file may hold several ``schedule`` lines: it is a **scenario**,
one case per schedule line (every other line shared), so one file can pin a race under the
serial schedule, explicit choices and a few pct seeds. ``# reaches:`` comment lines name the
paths the scenario must reach (see `Scenario`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import os
import pathlib
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import lz4.frame

from fuzz.argtypes import fraction, nonnegative_int
from fuzz.case import (
    FORMAT_VERSION,
    MAGIC,
    STRATEGY_NAMES,
    Case,
    CaseFormatError,
    decode,
    decode_strict,
    encode,
    format_schedule,
    parse_case,
)

__all__ = [
    "BUNDLE_MAGIC",
    "BUNDLE_VERSION",
    "CorpusError",
    "Entry",
    "Scenario",
    "add_arguments",
    "atomic_write",
    "bundle_paths",
    "case_files",
    "decode_payload",
    "encode_payload",
    "export_seeds",
    "load_case_file",
    "load_dir",
    "ls_lines",
    "main",
    "merge",
    "pack",
    "parse_scenario",
    "read_bundle",
    "read_entries",
    "read_records",
    "record_name",
    "seed_zip",
    "summary",
    "unpack",
    "write_bundle",
    "write_files",
]

BUNDLE_MAGIC = b"VFCB"
BUNDLE_VERSION = 1
NAME_LEN = 12
COMPRESSION_LEVEL = 9  # lz4 HC: a corpus is written rarely and read at every campaign start

_HEADER = struct.Struct("<4sHHI")
_LEN = struct.Struct("<I")
_DIGEST = hashlib.sha256().digest_size
_LZ4_MAGIC = b"\x04\x22\x4d\x18"  # the lz4 frame format's magic number, 0x184D2204 LE
# Seed-corpus zip entries: a fixed timestamp and mode, so the same bundle gives the same zip.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o100644 << 16

PathArg = str | os.PathLike[str]


class CorpusError(ValueError):
    """A bundle or case file that cannot be used; the message is one line naming the file."""


class Entry(NamedTuple):
    """One record of a bundle: its name, canonical bytes and decoded case."""

    name: str
    data: bytes
    case: Case


def record_name(data: bytes) -> str:
    """A record's name: the first 12 hex digits of the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()[:NAME_LEN]


# ---------------------------------------------------------------------------------------------
# The payload


def encode_payload(records: Iterable[bytes]) -> bytes:
    """The uncompressed payload of a bundle holding `records` (sorted and deduplicated here)."""
    recs = sorted(set(records))
    out = bytearray(_HEADER.pack(BUNDLE_MAGIC, BUNDLE_VERSION, FORMAT_VERSION, len(recs)))
    for r in recs:
        out += _LEN.pack(len(r))
        out += r
    out += hashlib.sha256(out).digest()
    return bytes(out)


def _check_header(payload: bytes, label: str) -> int:
    if len(payload) < _HEADER.size + _DIGEST:
        raise CorpusError(f"{label}: bundle is truncated ({len(payload)} bytes of payload)")
    magic, version, case_version, count = _HEADER.unpack_from(payload)
    if magic != BUNDLE_MAGIC:
        raise CorpusError(f"{label}: not a vmafuzz corpus bundle (magic {magic!r})")
    if version != BUNDLE_VERSION:
        raise CorpusError(
            f"{label}: unknown bundle format version {version} "
            f"(this build reads version {BUNDLE_VERSION})"
        )
    if case_version != FORMAT_VERSION:
        raise CorpusError(
            f"{label}: holds case format version {case_version}, this build reads version "
            f"{FORMAT_VERSION}; re-pack the bundle from its sources"
        )
    body = len(payload) - _DIGEST
    if hashlib.sha256(payload[:body]).digest() != payload[body:]:
        raise CorpusError(f"{label}: checksum mismatch (the records are damaged)")
    return int(count)


def decode_payload(payload: bytes, label: str) -> list[bytes]:
    """The records of a bundle payload; `CorpusError` (naming `label`) if it is not valid."""
    count = _check_header(payload, label)
    end = len(payload) - _DIGEST
    pos = _HEADER.size
    records: list[bytes] = []
    while pos < end:
        if pos + _LEN.size > end:
            raise CorpusError(f"{label}: record {len(records)} is truncated")
        (n,) = _LEN.unpack_from(payload, pos)
        pos += _LEN.size
        if pos + n > end:
            raise CorpusError(f"{label}: record {len(records)} is truncated")
        rec = payload[pos : pos + n]
        if records and rec <= records[-1]:
            raise CorpusError(f"{label}: record {len(records)} is out of order or repeated")
        records.append(rec)
        pos += n
    if len(records) != count:
        raise CorpusError(f"{label}: header says {count} records, found {len(records)}")
    return records


def _decompress(blob: bytes, label: str) -> bytes:
    if blob[:4] != _LZ4_MAGIC:
        raise CorpusError(f"{label}: not a corpus bundle (not an lz4 frame)")
    dec = lz4.frame.LZ4FrameDecompressor()
    try:
        payload = dec.decompress(blob)
    except RuntimeError as e:
        raise CorpusError(f"{label}: corrupt lz4 frame ({e})") from None
    if not dec.eof:
        raise CorpusError(f"{label}: lz4 frame is truncated")
    if dec.unused_data:
        raise CorpusError(f"{label}: {len(dec.unused_data)} bytes after the lz4 frame")
    return bytes(payload)


def _compress(payload: bytes) -> bytes:
    data: bytes = lz4.frame.compress(
        payload, compression_level=COMPRESSION_LEVEL, content_checksum=True
    )
    return data


# ---------------------------------------------------------------------------------------------
# Reading and writing bundles


def _read_file(path: PathArg) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CorpusError(f"{os.fspath(path)}: {e.strerror}") from None


def check_records(records: Sequence[bytes], label: str) -> None:
    """`CorpusError` (naming `label` and the record) unless every record is a canonical case.
    The check is the Rust engine's strict decoder, the mirror of `fuzz.case.decode_strict`
    (kept in agreement by the shared test vectors) and a hundred times faster."""
    from optimized import decode_strict_ok

    for i, rec in enumerate(records):
        try:
            decode_strict_ok(rec)
        except ValueError as e:
            raise CorpusError(f"{label}: record {i} ({record_name(rec)}): {e}") from None


def read_records(path: PathArg) -> list[bytes]:
    """The canonical case bytes of every record, sorted, checked strictly (see the module
    docstring). The fast way to load a corpus: no `Case` objects are built."""
    label = os.fspath(path)
    records = decode_payload(_decompress(_read_file(path), label), label)
    check_records(records, label)
    return records


def read_entries(path: PathArg) -> list[Entry]:
    """Every record of the bundle at `path` with its name and decoded case."""
    return [Entry(record_name(r), r, decode(r)) for r in read_records(path)]


def read_bundle(path: PathArg) -> list[Case]:
    """The cases of the bundle at `path`, in record order."""
    return [decode(r) for r in read_records(path)]


def _canonical(items: Sequence[Case | bytes]) -> set[bytes]:
    """The canonical bytes of `items` (Cases are encoded, bytes are checked)."""
    encoded = {encode(c) for c in items if isinstance(c, Case)}
    given = sorted({b for b in items if not isinstance(b, Case)})
    check_records(given, "new records")
    return encoded | set(given)


def atomic_write(path: PathArg, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and `os.replace` (all or nothing)."""
    target = pathlib.Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise CorpusError(f"{target}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CorpusError(f"{target}: cannot write ({e.strerror})") from None


def write_bundle(path: PathArg, cases: Iterable[Case | bytes]) -> int:
    """Write a bundle of `cases` (Cases, or canonical bytes) atomically; return the number of
    records (duplicates count once)."""
    records = _canonical(list(cases))
    atomic_write(path, _compress(encode_payload(records)))
    return len(records)


def merge(out: PathArg, inputs: Sequence[PathArg]) -> int:
    """Write the union of the bundles `inputs` to `out` (which may be one of them); every input
    is read, and checked, before `out` is touched. Returns the number of records."""
    records: set[bytes] = set()
    for path in inputs:
        records.update(read_records(path))
    return write_bundle(out, records)


def bundle_paths(root: PathArg | None = None) -> list[pathlib.Path]:
    """The bundles (``*.lz4``) in `root`, by default the installed ``corpora`` package."""
    if root is None:
        import corpora

        root = pathlib.Path(corpora.__file__).parent
    return sorted(pathlib.Path(root).glob("*.lz4"))


# ---------------------------------------------------------------------------------------------
# Case files and scenarios


@dataclass(frozen=True)
class Scenario:
    """A text case file with one case per ``schedule`` line. ``reaches`` maps ``both``,
    ``reference`` or ``optimized`` to the `landmarks` that some variant must reach in that
    engine (in each engine, for ``both``), from comment lines ``# reaches: L...`` and
    ``# reaches optimized: L...``."""

    cases: tuple[Case, ...]
    reaches: dict[str, frozenset[str]] = field(default_factory=dict)


def _is_schedule_line(line: str) -> bool:
    return line.split("#", 1)[0].split()[:1] == ["schedule"]


def _reaches(lines: list[str]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for line in lines:
        head, sep, rest = line.strip().lstrip("#").partition(":")
        words = head.split()
        if sep and words[:1] == ["reaches"] and len(words) <= 2:
            engine = words[1] if len(words) == 2 else "both"
            out[engine] = out.get(engine, frozenset()) | frozenset(rest.split())
    return out


def parse_scenario(text: str) -> Scenario:
    """Parse a text case file: one case per ``schedule`` line (a file without one is a single
    serial case). Raises `CaseFormatError` naming the line, as `parse_case` does."""
    lines = text.splitlines()
    where = [i for i, line in enumerate(lines) if _is_schedule_line(line)]
    variants = []
    for keep in where or [-1]:
        kept = [line if i == keep or i not in where else "" for i, line in enumerate(lines)]
        variants.append(parse_case("\n".join(kept)))
    comments = [line for line in lines if line.lstrip().startswith("#")]
    return Scenario(tuple(variants), _reaches(comments))


def load_case_file(path: PathArg) -> list[Case]:
    """The cases in one file: canonical bytes (one case) or text (one per schedule line)."""
    data = _read_file(path)
    label = os.fspath(path)
    try:
        if data[:1] == bytes([MAGIC]):
            return [decode_strict(data)]
        return list(parse_scenario(data.decode("utf-8")).cases)
    except CaseFormatError as e:
        raise CorpusError(f"{label}: {e}") from None
    except UnicodeDecodeError:
        raise CorpusError(f"{label}: neither a case in text form nor canonical bytes") from None


def case_files(folder: PathArg) -> list[pathlib.Path]:
    """The files `pack` reads: every regular file directly in `folder` whose name does not
    start with a dot, sorted by name (subdirectories are not entered)."""
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise CorpusError(f"{root}: not a directory")
    return sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))


def load_dir(folder: PathArg) -> list[bytes]:
    """The canonical bytes of every case in the case files of `folder` (see `case_files`)."""
    return [encode(c) for path in case_files(folder) for c in load_case_file(path)]


# ---------------------------------------------------------------------------------------------
# What the subcommands do


def pack(folder: PathArg, out: PathArg) -> tuple[int, int]:
    """Pack the case files of `folder` into the bundle `out`; nothing is written unless every
    file is valid. Returns (records, files)."""
    return write_bundle(out, load_dir(folder)), len(case_files(folder))


def _unique_names(entries: list[Entry], label: str) -> None:
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise CorpusError(f"{label}: two records share a {NAME_LEN}-digit name")


def unpack(bundle: PathArg, folder: PathArg, binary: bool = False) -> int:
    """One file per record in `folder` (created if needed): ``<name>.case`` in text form, or
    ``<name>`` holding the canonical bytes with `binary`. An existing file with other contents
    is an error, raised before anything is written. Returns the number of files written."""
    entries = read_entries(bundle)
    _unique_names(entries, os.fspath(bundle))
    out = pathlib.Path(folder)
    files = [
        (out / e.name, e.data) if binary else (out / f"{e.name}.case", str(e.case).encode())
        for e in entries
    ]
    return write_files(out, files)


def write_files(folder: pathlib.Path, files: list[tuple[pathlib.Path, bytes]]) -> int:
    """Create `folder` if needed and write `files` into it, each atomically, skipping those
    already there with the same contents. A file there with other contents is an error raised
    before anything is written. Returns the number of files written."""
    todo = [(p, d) for p, d in files if not (p.is_file() and p.read_bytes() == d)]
    for path, _ in todo:
        if path.exists():
            raise CorpusError(f"{path}: exists with other contents; not overwriting it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CorpusError(f"{folder}: cannot create the directory ({e.strerror})") from None
    for path, data in todo:
        atomic_write(path, data)
    return len(todo)


def seed_zip(entries: list[Entry]) -> bytes:
    """An OSS-Fuzz ``<fuzzer>_seed_corpus.zip``: one stored entry per record, named by the
    record and holding its canonical bytes, in name order, with fixed timestamps and modes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for e in sorted(entries, key=lambda e: e.name):
            info = zipfile.ZipInfo(e.name, date_time=_ZIP_TIME)
            info.create_system = 3  # Unix, whatever the host
            info.external_attr = _ZIP_MODE
            zf.writestr(info, e.data)
    return buf.getvalue()


def export_seeds(bundle: PathArg, out: PathArg) -> int:
    """Write the seed-corpus zip of `bundle` to `out` (atomically); return the entry count."""
    entries = read_entries(bundle)
    _unique_names(entries, os.fspath(bundle))
    atomic_write(out, seed_zip(entries))
    return len(entries)


def summary(case: Case) -> str:
    """``threads x ops  strategy  setting: ops per thread`` for `ls` (one line)."""
    ops = sum(len(t) for t in case.threads)
    setting = f"{case.nr_pages}p {'async' if case.swap_async else 'sync'}"
    setting += " monitor" if case.uffd_monitor else ""
    threads = " | ".join(" ".join(op.kind.name.lower() for op in t) or "-" for t in case.threads)
    strategy = STRATEGY_NAMES[case.schedule.strategy]
    text = f"{len(case.threads)}x{ops:<3} {strategy:<8} {setting}: {threads}"
    return text if len(text) <= 100 else text[:97] + "..."


def ls_lines(bundle: PathArg) -> list[str]:
    """One line per record of `bundle`: its name and `summary`."""
    return [f"{e.name}  {summary(e.case)}" for e in read_entries(bundle)]


# ---------------------------------------------------------------------------------------------
# ``vmafuzz corpus``: the subcommands (`fuzz.cli` builds the parser with `add_arguments` and
# calls `main`; a `CorpusError` becomes one line on stderr and exit status 2)


def _cmd_pack(args: argparse.Namespace) -> int:
    records, files = pack(args.dir, args.out)
    print(f"{args.out}: {records} cases from {files} files in {args.dir}")
    return 0


def _cmd_unpack(args: argparse.Namespace) -> int:
    written = unpack(args.bundle, args.dir, args.binary)
    print(f"{args.dir}: {written} files written")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    print(f"{args.out}: {merge(args.out, args.inputs)} cases")
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    for line in ls_lines(args.bundle):
        print(line)
    return 0


def _cmd_export_seeds(args: argparse.Namespace) -> int:
    print(f"{args.out}: {export_seeds(args.bundle, args.out)} seeds")
    return 0


def _cmd_harvest(args: argparse.Namespace) -> int:
    from fuzz.harvest import harvest

    out = pathlib.Path(args.dir)
    kept = harvest(range(args.first, args.first + args.seeds), args.rare, args.benign)
    files = [(out / f"seed-{h.seed:06d}.case", h.text().encode()) for h in kept]
    write_files(out, files)
    for h, (path, _) in zip(kept, files, strict=True):
        print(f"{path}: {' '.join(h.reasons)}")
    return 0


def _cmd_seek(args: argparse.Namespace) -> int:
    from fuzz.harvest import seek

    cases = load_case_file(args.file)
    found = seek(cases[0], frozenset(args.landmarks), args.engine, args.tries)
    shown = 0
    for sched in itertools.islice(found, args.max):
        print(format_schedule(sched))
        shown += 1
    if not shown:
        raise CorpusError(
            f"no schedule in {args.tries} tries reaches {' '.join(sorted(args.landmarks))} "
            "(a misspelled landmark reaches nothing)"
        )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``corpus`` subcommands, added to `parser` (the ``vmafuzz corpus`` parser)."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("pack", help="pack a directory of case files into a bundle")
    p.add_argument("dir", metavar="DIR", help="case files: text form (*.case) or canonical bytes")
    p.add_argument("out", metavar="OUT.lz4", help="the bundle to write (replaced atomically)")
    p.set_defaults(corpus_func=_cmd_pack)
    p = sub.add_parser("unpack", help="write one case file per record of a bundle")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("dir", metavar="DIR", help="created if missing; other files are kept")
    p.add_argument("--binary", action="store_true", help="canonical bytes (libFuzzer corpora)")
    p.set_defaults(corpus_func=_cmd_unpack)
    p = sub.add_parser("merge", help="write the union of bundles")
    p.add_argument("out", metavar="OUT.lz4", help="the bundle to write (may be an input)")
    p.add_argument("inputs", metavar="IN.lz4", nargs="+")
    p.set_defaults(corpus_func=_cmd_merge)
    p = sub.add_parser("ls", help="list a bundle: name, threads x ops, strategy, summary")
    p.add_argument("bundle", metavar="BUNDLE")
    p.set_defaults(corpus_func=_cmd_ls)
    p = sub.add_parser("export-seeds", help="write an OSS-Fuzz <fuzzer>_seed_corpus.zip")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("out", metavar="OUT_seed_corpus.zip")
    p.set_defaults(corpus_func=_cmd_export_seeds)
    p = sub.add_parser("harvest", help="keep interesting generated cases, shrunk, as case files")
    p.add_argument("dir", metavar="DIR", help="where the case files go (seed-NNNNNN.case)")
    p.add_argument(
        "--seeds", type=nonnegative_int, default=3000, metavar="N", help="seeds to try (3000)"
    )
    p.add_argument("--first", type=nonnegative_int, default=0, metavar="S", help="first seed (0)")
    p.add_argument("--rare", type=fraction, default=0.02, metavar="F", help="rare (0.02)")
    p.add_argument(
        "--benign", type=nonnegative_int, default=12, metavar="K", help="divergences (12)"
    )
    p.set_defaults(corpus_func=_cmd_harvest)
    p = sub.add_parser("seek", help="find schedules under which a case reaches some landmarks")
    p.add_argument("file", metavar="FILE", help="a case file (its first case; schedule ignored)")
    p.add_argument("landmarks", metavar="LANDMARK", nargs="+", help="e.g. VMA_LOCK_MISS")
    p.add_argument("--engine", choices=("both", "reference", "optimized"), default="both")
    p.add_argument(
        "--tries", type=nonnegative_int, default=500, metavar="N", help="seeds to try (500)"
    )
    p.add_argument(
        "--max", type=nonnegative_int, default=5, metavar="K", help="schedules to print (5)"
    )
    p.set_defaults(corpus_func=_cmd_seek)


def main(args: argparse.Namespace) -> int:
    """Run the ``corpus`` subcommand `args` names; `CorpusError` on unusable input."""
    status: int = args.corpus_func(args)
    return status
