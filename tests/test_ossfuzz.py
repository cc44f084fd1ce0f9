"""The OSS-Fuzz / ClusterFuzzLite integration, as far as it can be checked without Docker.

``.clusterfuzzlite/build.sh`` runs here with stand-ins for the two commands only the build
image has (``pip3 install`` and ``compile_python_fuzzer``): what it puts in ``$OUT`` (one
fuzzer per ``fuzz/targets/*_fuzzer.py``, its dictionary and options, its seed corpus zip) is
checked for real.
"""

from __future__ import annotations

import configparser
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

from fuzz.case import decode_strict
from fuzz.corpus import bundle_paths, export_seeds

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGETS = ROOT / "fuzz" / "targets"
CFLITE = ROOT / ".clusterfuzzlite"
WORKFLOWS = ROOT / ".github" / "workflows"
FUZZERS = sorted(TARGETS.glob("*_fuzzer.py"))

# A libFuzzer dictionary line: an optional name, then a quoted string whose only escapes are
# \\, \" and \xNN.
_DICT_LINE = re.compile(r'(?:[A-Za-z_][A-Za-z0-9_]*=)?"(?:[^"\\]|\\\\|\\"|\\x[0-9A-Fa-f]{2})*"')


def test_there_is_a_fuzzer() -> None:
    assert [f.name for f in FUZZERS] == ["check_case_fuzzer.py"]


@pytest.mark.parametrize("fuzzer", FUZZERS, ids=lambda p: p.name)
def test_fuzzers_are_executable_scripts(fuzzer: pathlib.Path) -> None:
    # libFuzzer's -fork, -jobs and -minimize_crash re-run argv[0]: the script itself.
    assert fuzzer.read_text().startswith("#!/usr/bin/env python3\n")
    assert fuzzer.stat().st_mode & stat.S_IXUSR, f"chmod +x {fuzzer}"
    git = shutil.which("git")
    if git is None:
        return
    staged = subprocess.run(
        [git, "ls-files", "-s", str(fuzzer.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if staged:  # tracked: the mode a fresh clone gets
        assert staged[0] == "100755", f"git add --chmod=+x {fuzzer.relative_to(ROOT)}"


@pytest.mark.parametrize("fuzzer", FUZZERS, ids=lambda p: p.name)
def test_dictionaries_parse(fuzzer: pathlib.Path) -> None:
    entries = []
    for line in fuzzer.with_suffix(".dict").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert _DICT_LINE.fullmatch(line), line
            entries.append(line)
    assert len(entries) >= 10
    assert any(e.endswith('="\\xa5\\x01\\x00"') for e in entries), "the case header"


@pytest.mark.parametrize("fuzzer", FUZZERS, ids=lambda p: p.name)
def test_options_parse(fuzzer: pathlib.Path) -> None:
    options = configparser.ConfigParser()
    options.read_string(fuzzer.with_suffix(".options").read_text())
    assert options.sections() == ["libfuzzer"]
    section = options["libfuzzer"]
    assert section["dict"] == fuzzer.with_suffix(".dict").name
    assert int(section["max_len"]) >= 1024


@pytest.mark.parametrize("bundle", bundle_paths(), ids=lambda p: p.name)
def test_seed_corpus_zip_entries_decode_strictly(
    bundle: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "check_case_fuzzer_seed_corpus.zip"
    count = export_seeds(bundle, out)
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert len(names) == count > 0
        for name in names:
            decode_strict(zf.read(name))


def test_build_script_is_valid_bash() -> None:
    script = CFLITE / "build.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert script.read_text().startswith("#!/bin/bash -eu\n")


def _stub(folder: pathlib.Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_build_script_builds_every_fuzzer(tmp_path: pathlib.Path) -> None:
    src, out, work, bin_ = (tmp_path / d for d in ("src", "out", "work", "bin"))
    for d in (src, out, work, bin_):
        d.mkdir()
    (src / "vmafuzz").symlink_to(ROOT)
    log = tmp_path / "calls"
    flags = "RUSTFLAGS=${RUSTFLAGS-unset} CFLAGS=${CFLAGS-unset} CXXFLAGS=${CXXFLAGS-unset}"
    _stub(bin_, "pip3", f'echo "pip3 $* {flags}" >> {log}\n')
    _stub(bin_, "compile_python_fuzzer", f'echo "compile $1" >> {log}\n')
    _stub(bin_, "vmafuzz", f'exec {sys.executable} -m fuzz "$@"\n')
    env = {**os.environ, "SRC": str(src), "OUT": str(out), "WORK": str(work)}
    env["PATH"] = f"{bin_}{os.pathsep}{env['PATH']}"
    # The base image's sanitizer flags, which must not reach the extension's build.
    sanitizer = "-fsanitize=address -fsanitize=fuzzer-no-link"
    env.update(RUSTFLAGS="-Zsanitizer=address", CFLAGS=sanitizer, CXXFLAGS=sanitizer)
    subprocess.run(["bash", str(CFLITE / "build.sh")], env=env, check=True, capture_output=True)
    calls = log.read_text().splitlines()
    assert calls[0] == "pip3 install . RUSTFLAGS=unset CFLAGS=unset CXXFLAGS=unset"
    assert sorted(calls[1:]) == sorted(f"compile {f.relative_to(ROOT)}" for f in FUZZERS)
    for fuzzer in FUZZERS:
        name = fuzzer.stem
        assert (out / f"{name}.dict").read_bytes() == fuzzer.with_suffix(".dict").read_bytes()
        assert (out / f"{name}.options").is_file()
        with zipfile.ZipFile(out / f"{name}_seed_corpus.zip") as zf:
            assert len(zf.namelist()) >= 10
            for entry in zf.namelist():
                decode_strict(zf.read(entry))


def test_project_and_dockerfile() -> None:
    project = (CFLITE / "project.yaml").read_text()
    assert re.search(r"^language: python$", project, re.MULTILINE)
    assert re.search(r"^fuzzing_engines:\n  - libfuzzer$", project, re.MULTILINE)
    assert re.search(r"^sanitizers:\n  - address$", project, re.MULTILINE)
    docker = (CFLITE / "Dockerfile").read_text()
    assert re.search(r"^FROM gcr\.io/oss-fuzz-base/base-builder-python$", docker, re.MULTILINE)
    assert "rustup" in docker and "COPY .clusterfuzzlite/build.sh $SRC/" in docker


def _load_yaml(path: pathlib.Path) -> object:
    import yaml  # pyyaml is a test dependency

    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    ("workflow", "mode"), [("cflite_pr.yml", "code-change"), ("cflite_batch.yml", "batch")]
)
def test_workflows(workflow: str, mode: str) -> None:
    path = WORKFLOWS / workflow
    doc = _load_yaml(path)
    text = path.read_text()
    assert "google/clusterfuzzlite/actions/build_fuzzers@v1" in text
    assert "language: python" in text
    assert isinstance(doc, dict)
    # YAML 1.1 reads the key "on" as True.
    triggers = doc.get("on", doc.get(True))
    assert isinstance(triggers, dict)
    assert ("pull_request" in triggers) == (mode == "code-change")
    assert ("schedule" in triggers) == (mode == "batch")
    [job] = doc["jobs"].values()
    steps = {s["uses"].split("@")[0].rsplit("/", 1)[1]: s for s in job["steps"]}
    run = steps["run_fuzzers"]["with"]
    assert run["mode"] == mode
    assert 300 <= int(run["fuzz-seconds"]) <= (600 if mode == "code-change" else 86400)
    assert steps["build_fuzzers"]["with"]["language"] == "python"
