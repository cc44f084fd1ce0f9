"""The findings directory: one subdirectory per finding signature, written atomically.

Layout (``findings/`` by default)::

    findings/<oracle>-<rule>-<hash>/     hash: the first 12 hex digits of sha256(signature)
        finding.json    signature, oracle, rule, engine, function, op kinds, message, token
        token           the replay token, one line (``vmafuzz repro`` takes this directory,
                        this file, or the token itself)
        case.txt        the case in text form, schedule resolved
        report.txt      the report as `vmafuzz repro` prints it
        hits/<hash>     one empty file per distinct case that produced this signature

A finding is assembled in a private temporary directory beside its final place and renamed into
place in one step, so a process killed half-way leaves at most a ``.tmp-*`` directory (never a
half-written finding), and when two processes find the same signature the first rename wins and
the second only adds its hit.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DIR = "findings"


def signature_hash(signature: str) -> str:
    return hashlib.sha256(signature.encode()).hexdigest()[:12]


def finding_dirname(oracle: str, rule: str, signature: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", f"{oracle}-{rule}").strip("-")
    return f"{slug}-{signature_hash(signature)}"


@dataclass(frozen=True)
class Saved:
    path: pathlib.Path
    new: bool


def _hit(path: pathlib.Path, case_key: str) -> None:
    hits = path / "hits"
    hits.mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(hits / case_key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


def save_finding(
    root: str | os.PathLike[str],
    meta: Mapping[str, object],
    token: str,
    case_text: str,
    report: str,
) -> Saved:
    """Store a finding under `root`; `meta` must hold ``signature``, ``oracle`` and ``rule``."""
    root_path = pathlib.Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    signature = str(meta["signature"])
    final = root_path / finding_dirname(str(meta["oracle"]), str(meta["rule"]), signature)
    case_key = hashlib.sha256(case_text.encode()).hexdigest()[:16]
    if final.exists():
        _hit(final, case_key)
        return Saved(final, False)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".tmp-", dir=root_path))
    keep = False
    try:
        (tmp / "finding.json").write_text(json.dumps({**meta, "token": token}, indent=1) + "\n")
        (tmp / "token").write_text(token + "\n")
        (tmp / "case.txt").write_text(case_text)
        (tmp / "report.txt").write_text(report)
        _hit(tmp, case_key)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                keep = True  # the assembled finding stays in `tmp`; the error says where
                raise OSError(e.errno, f"{e.strerror}; the finding is kept in {tmp}") from e
            # Another process stored this signature first: count the hit there.
            _hit(final, case_key)
            return Saved(final, False)
        return Saved(final, True)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def list_findings(root: str | os.PathLike[str]) -> list[pathlib.Path]:
    """Complete findings under `root`, by name (temporary directories are skipped)."""
    root_path = pathlib.Path(root)
    if not root_path.is_dir():
        return []
    return sorted(
        p
        for p in root_path.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "token").is_file()
    )


def hit_count(path: pathlib.Path) -> int:
    hits = path / "hits"
    return sum(1 for _ in hits.iterdir()) if hits.is_dir() else 0
