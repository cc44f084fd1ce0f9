#!/usr/bin/env python3
"""atheris (libFuzzer) target: the one `fuzz.harness.check_case` on any bytes.

Every input is a case (`fuzz.case.decode` is total), judged by both engines and every oracle.
A finding is stored with `fuzz.triage.store` (report, replay token; deduplicated by signature)
and then raised, so that libFuzzer writes its ``crash-<sha1>`` file too. Run the script itself
(it is executable, which libFuzzer's ``-fork``, ``-jobs`` and ``-minimize_crash`` need: they
re-run ``argv[0]``)::

    fuzz/targets/check_case_fuzzer.py -dict=fuzz/targets/check_case_fuzzer.dict \\
        -max_len=2048 -max_total_time=60 corpus/
    VMAFUZZ_MUTANT=Z18_double_vma_end_read fuzz/targets/check_case_fuzzer.py -runs=5000

**Coverage.** atheris sees Python bytecode only, so besides the instrumented Python (see
``VMAFUZZ_INSTRUMENT``) every feature the verdict reached, `fuzz.campaign.coverage`, is handed
to libFuzzer as an edge of its own: the interleaving features each engine computes inside
itself (`fuzz.record.RunRecord.features`, one counter per 16-bit bucket and engine) and the
outcome features (result classes, VMA-lock counters, benign divergences), folded into a third
bank of 2^16 counters. A new interleaving of the Rust engine is thus new coverage. The counters
are reserved with ``atheris._reserve_counter`` and hit with ``atheris._trace_branch``, the two
calls atheris's own bytecode instrumentation emits for a branch: each feature is an edge like
any instrumented one, without generating one stub function per counter.

**Mutation.** The custom mutator decodes the input, applies `fuzz.mutate.mutate` (operations,
arguments, schedule) with a PRNG seeded by libFuzzer's seed, and encodes the result; a fraction
of the calls use libFuzzer's own byte mutation instead (`atheris.Mutate`), which reaches
encodings the structured mutators never produce. The custom crossover is
`fuzz.mutate.crossover`.

Environment (read once, here):

``VMAFUZZ_MUTANT``            run the optimized engine as this zoo mutant
``VMAFUZZ_FINDINGS``          where findings are stored (default ``findings``)
``VMAFUZZ_INSTRUMENT``        the Python atheris instruments: ``oracles`` (the harness, the
                              spec and the linearizability checker; the default), ``all``
                              (also the reference engine) or ``none``
``VMAFUZZ_FEATURES``          ``0``: hand libFuzzer no verdict features (for measurements)
``VMAFUZZ_BYTE_MUTATION``     percentage of plain byte mutations (default 20)
"""

from __future__ import annotations

import os
import sys

import atheris

MUTANT = os.environ.get("VMAFUZZ_MUTANT") or None
FINDINGS = os.environ.get("VMAFUZZ_FINDINGS") or "findings"
INSTRUMENT = os.environ.get("VMAFUZZ_INSTRUMENT", "oracles")
FEED_FEATURES = os.environ.get("VMAFUZZ_FEATURES", "1") != "0"
_BYTE_MUTATION = os.environ.get("VMAFUZZ_BYTE_MUTATION", "20")
if not _BYTE_MUTATION.isdigit() or int(_BYTE_MUTATION) > 100:
    sys.exit(f"VMAFUZZ_BYTE_MUTATION must be a percentage 0..100, not {_BYTE_MUTATION!r}")
BYTE_MUTATION = int(_BYTE_MUTATION)

_ORACLES = ["fuzz.harness", "fuzz.spec", "fuzz.linearize"]
_INSTRUMENTED = {"none": [], "oracles": _ORACLES, "all": [*_ORACLES, "reference"]}
if INSTRUMENT not in _INSTRUMENTED:
    sys.exit(f"VMAFUZZ_INSTRUMENT must be one of {', '.join(_INSTRUMENTED)}, not {INSTRUMENT!r}")

if _INSTRUMENTED[INSTRUMENT]:
    # The first import of a module is the one atheris instruments.
    with atheris.instrument_imports(include=_INSTRUMENTED[INSTRUMENT]):
        import fuzz.harness
        import fuzz.linearize
        import fuzz.spec  # noqa: F401 (imported to be instrumented)
        import reference  # noqa: F401 (imported to be instrumented)

from fuzz.campaign import coverage  # noqa: E402 (after the instrumented imports)
from fuzz.case import decode, encode  # noqa: E402
from fuzz.harness import FINDING, UnknownMutantError, check_case, check_mutant  # noqa: E402
from fuzz.mutate import crossover, mutate  # noqa: E402
from fuzz.record import FEATURE_TAG_OPTIMIZED, FEATURE_TAG_REFERENCE  # noqa: E402
from fuzz.triage import replay_command, store_new  # noqa: E402
from reference.sched import FEATURE_BITS, SplitMix64  # noqa: E402

try:
    check_mutant(MUTANT)
except UnknownMutantError as e:
    sys.exit(f"VMAFUZZ_MUTANT: {e}")

# One libFuzzer counter per feature slot: banks 1 and 2 are the reference's and the optimized
# engine's interleaving features (tag << 16 | bucket), bank 0 the other verdict features.
_BANK_BITS = FEATURE_BITS
_SLOTS = (max(FEATURE_TAG_REFERENCE, FEATURE_TAG_OPTIMIZED) + 1) << _BANK_BITS
_COUNTERS = [atheris._reserve_counter() for _ in range(_SLOTS)]


class FindingError(Exception):
    """A case broke an oracle; the message names the finding and where it was stored."""


def feed(features: set[int]) -> None:
    """Hit the counter of every feature: each new one is a new edge for libFuzzer."""
    counters, trace = _COUNTERS, atheris._trace_branch
    for f in features:
        trace(counters[f if f < _SLOTS else f & (1 << _BANK_BITS) - 1])


def fuzz_one_input(data: bytes) -> None:
    """Judge the case in `data`; store and raise a finding."""
    case = decode(data)
    verdict = check_case(case, mutant=MUTANT)
    if FEED_FEATURES:
        feed(coverage(verdict))
    if verdict.kind != FINDING:
        return
    finding = verdict.finding
    assert finding is not None
    try:
        saved = store_new(case, verdict, MUTANT, FINDINGS)  # every rule it broke
    except OSError as e:  # e.g. a read-only working directory on a fuzzing service
        where = f"not stored ({e}); libFuzzer's crash file replays it"
    else:
        path = str(saved[finding.signature].path)
        where = f"stored in {path}\n  replay: {replay_command(path)}"
        if len(saved) > 1:
            where += f"\n  and {len(saved) - 1} more signature(s) from the same case"
    raise FindingError(f"{finding.headline()}\n  {where}")


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    """`fuzz.mutate.mutate` on the decoded case, or now and then a byte mutation."""
    rng = SplitMix64(seed)
    if rng.below(100) < BYTE_MUTATION:
        out: bytes = atheris.Mutate(data, max_size)
        return out
    mutated = encode(mutate(decode(data), rng))
    if len(mutated) > max_size:
        out = atheris.Mutate(data, max_size)
        return out
    return mutated


def custom_crossover(data1: bytes, data2: bytes, max_out_size: int, seed: int) -> bytes:
    """`fuzz.mutate.crossover` of the two decoded cases."""
    child = encode(crossover(decode(data1), decode(data2), SplitMix64(seed)))
    return child if len(child) <= max_out_size else data1[:max_out_size]


def main() -> None:
    atheris.Setup(
        sys.argv,
        fuzz_one_input,
        custom_mutator=custom_mutator,
        custom_crossover=custom_crossover,
    )
    atheris.Fuzz()


if __name__ == "__main__":
    main()
