"""The regression corpus: every entry of every bundle in ``corpora/`` replays through
`check_case` without a finding, one test per entry (``regression/3f2a9c1b7e00``: the bundle
and the record name), and every bundle is exactly a fresh pack of its readable sources.

Parallel-safe under ``pytest -n auto``: the tests only read the bundles.
"""

from __future__ import annotations

import pathlib

import lz4.frame
import pytest

from fuzz import corpus
from fuzz.harness import check_case
from fuzz.triage import replay_command, triage

CORPORA = pathlib.Path(corpus.__file__).resolve().parent.parent / "corpora"
# The directory of case files a bundle is packed from, where it is not named like the bundle.
SOURCES = {"regression": "scenarios"}
BUNDLES = corpus.bundle_paths(CORPORA)
ENTRIES = [(path.stem, entry) for path in BUNDLES for entry in corpus.read_entries(path)]


def test_the_corpus_is_there() -> None:
    stems = {stem for stem, _ in ENTRIES}
    assert {"regression", "fuzzed"} <= stems


@pytest.mark.parametrize(
    "entry", [e for _, e in ENTRIES], ids=[f"{stem}/{e.name}" for stem, e in ENTRIES]
)
def test_entry_has_no_finding(entry: corpus.Entry) -> None:
    verdict = check_case(entry.case)
    if verdict.finding is not None:
        token = triage(entry.case, verdict, None).token
        pytest.fail(
            f"{verdict.finding.headline()}\nreplay: {replay_command(token)}\n{entry.case}",
            pytrace=False,
        )


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.stem)
def test_bundle_is_a_fresh_pack_of_its_sources(bundle: pathlib.Path) -> None:
    source = CORPORA / SOURCES.get(bundle.stem, bundle.stem)
    assert source.is_dir(), f"{bundle.name} has no sources: corpora/{source.name}/ is missing"
    fresh = corpus.encode_payload(corpus.load_dir(source))
    # The payload, not the lz4 bytes: another liblz4 may compress the same payload differently.
    assert lz4.frame.decompress(bundle.read_bytes()) == fresh, (
        f"{bundle.name} is stale: run `vmafuzz corpus pack corpora/{source.name} "
        f"corpora/{bundle.name}`"
    )
