"""The native linearizability check (``optimized/src/oracle``) against `fuzz.linearize`, which
stays normative: the same verdict, the same failing or undecided page and the same number of
search nodes, on both engines' records of random cases, on every corpus entry (the zoo's under
their mutants), on records perturbed until they fail, on tiny budgets, and on synthetic records
with arbitrary results, timings, growths and images. `check_record` returns the native ok as
is: it must equal the Python result."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

import optimized
import reference
from fuzz import corpus, spec, strategies, zoo
from fuzz.bench.linearize import corrupt, random_timing, simulate
from fuzz.bench.linearize import random_case as spec_case
from fuzz.case import Case, Op, OpKind, parse_case
from fuzz.gen import random_case
from fuzz.linearize import DEFAULT_BUDGET, FAIL, OK, UNDECIDED, check_record, native_verdict
from fuzz.record import (
    RES_HUNG,
    RES_KILLED,
    RES_NOT_RUN,
    RES_SIGBUS,
    RES_SIGSEGV,
    OpRecord,
    PageImage,
    RunRecord,
    StackGrowth,
)
from fuzz.spec import EACCES, EAGAIN, EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ESRCH
from tests.test_linearize import CASES, SETUP, Row, make
from tests.vectors import make_spec_vectors

# Results worth trying on any op: every one the spec's table names, and a few it does not.
RESULTS = (
    0, 1, 2, 3, 5, 7, RES_SIGSEGV, RES_SIGBUS, RES_KILLED, RES_HUNG, RES_NOT_RUN,
    ESRCH, ENOMEM, EINVAL, EFAULT, ENOENT, EBUSY, EACCES, EEXIST, EAGAIN,
)  # fmt: skip


def agree(case: Case, rec: RunRecord, budget: int = DEFAULT_BUDGET) -> str:
    """Assert that the native verdict is Python's; return the status."""
    native = native_verdict(case, rec, budget)
    py = check_record(case, rec, budget=budget, explain=False, native=False)
    assert native is not None, "a record of the engines is beyond the native mirror"
    status, page, nodes = native
    assert (status, nodes) == (py.status, py.nodes), (native, py.describe(), str(case))
    assert page == py.page, (native, py.describe(), str(case))
    return status


def records(case: Case) -> list[RunRecord]:
    return [reference.run(case), optimized.run(case)]


def perturbed(rec: RunRecord, rng: random.Random) -> list[RunRecord]:
    """`rec` with one op's result changed, and with one page of its image changed."""
    out = []
    if rec.ops:
        i = rng.randrange(len(rec.ops))
        o = rec.ops[i]
        result = rng.choice([*RESULTS, o.op.value, o.op.page, o.result + 1])
        out.append(replace(rec, ops=(*rec.ops[:i], o._replace(result=result), *rec.ops[i + 1 :])))
    mms = [k for k, m in enumerate(rec.image) if m]
    if mms:
        k = rng.choice(mms)
        pages = list(rec.image[k] or ())
        p = rng.randrange(len(pages))
        pg = pages[p]
        pages[p] = rng.choice(
            [
                replace(pg, mapped=not pg.mapped),
                replace(pg, prot=rng.randrange(8)),
                replace(pg, uffd=not pg.uffd),
                replace(pg, populated=not pg.populated),
                replace(pg, value=pg.value + 1),
            ]
        )
        out.append(replace(rec, image=(*rec.image[:k], tuple(pages), *rec.image[k + 1 :])))
    return out


# Seeds in chunks, so that xdist spreads them; varied shapes (1..5 threads, 1..8 ops each).
CHUNKS, PER_CHUNK = 8, 300


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_native_agrees_on_both_engines_records(chunk: int) -> None:
    seen: dict[str, int] = {}
    for seed in range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK):
        case = random_case(
            seed, threads=(1 + seed % 3, 1 + seed % 5), ops_per_thread=(1 + seed % 4, 3 + seed % 6)
        )
        for rec in records(case):
            status = agree(case, rec)
            seen[status] = seen.get(status, 0) + 1
    assert seen.get(OK, 0) > PER_CHUNK


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_native_agrees_on_perturbed_records(chunk: int) -> None:
    """Changed results and images mostly fail; tiny budgets give up."""
    rng = random.Random(chunk)
    seen: dict[str, int] = {}
    for seed in range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK, 3):
        case = random_case(seed, threads=(2, 4), ops_per_thread=(2, 6))
        for rec in records(case):
            for bad in perturbed(rec, rng):
                status = agree(case, bad)
                seen[status] = seen.get(status, 0) + 1
            status = agree(case, rec, budget=rng.choice([0, 1, 2, 5, 13]))
            seen[status] = seen.get(status, 0) + 1
    assert seen.get(FAIL, 0) > 20 and seen.get(UNDECIDED, 0) > 20, seen


def test_native_agrees_on_every_corpus_entry() -> None:
    """Both engines on every bundled entry; the zoo's entries and minimised cases also under
    every mutant, some of whose records are not linearizable."""
    seen: dict[str, int] = {}
    for path in corpus.bundle_paths():
        zoo_bundle = path.name.startswith("zoo")
        for case in corpus.read_bundle(path):
            recs = records(case)
            if zoo_bundle:
                recs += [optimized.run(case, mutant=m) for m in optimized.MUTANTS]
            for rec in recs:
                status = agree(case, rec)
                seen[status] = seen.get(status, 0) + 1
    for path in sorted(zoo.ZOO_DIR.glob("*.case")):
        case = parse_case(path.read_text(encoding="utf-8"))
        status = agree(case, optimized.run(case, mutant=path.stem))
        seen[status] = seen.get(status, 0) + 1
    assert seen.get(OK, 0) > 400 and seen.get(FAIL, 0) >= 2, seen


def test_native_agrees_on_spec_histories_and_their_corruptions() -> None:
    """Histories the spec itself generates are linearizable; a read of a value never written
    is not."""
    rng = random.Random(7)
    for _ in range(150):
        case = spec_case(rng, threads=3, per_thread=6, pages=3)
        good = simulate(case, random_timing(rng, case))
        assert agree(case, good) == OK
        bad = corrupt(good)
        if bad is not None:
            assert agree(case, bad) == FAIL


@pytest.mark.parametrize(("name", "rows", "ok"), CASES, ids=[c[0] for c in CASES])
def test_native_agrees_on_hand_written_histories(name: str, rows: list[Row], ok: bool) -> None:
    case, rec = make([*SETUP, *rows])
    assert agree(case, rec) == (OK if ok else FAIL)


def test_undecided_reports_the_first_page_that_gave_up() -> None:
    case = random_case(3, threads=(4, 4), ops_per_thread=(6, 6))
    rec = optimized.run(case)
    for budget in range(4):
        status, page, nodes = native_verdict(case, rec, budget) or ("", 0, 0)
        assert status == UNDECIDED and page == 0
        assert budget < nodes <= (budget + 1) * case.nr_pages  # a page gives up at budget + 1
        agree(case, rec, budget)


def test_check_record_returns_the_python_result() -> None:
    """The native ok is Python's `LinResult`, field for field; a failure is explained by
    Python as before."""
    for seed in range(40):
        case = random_case(seed)
        for rec in records(case):
            assert check_record(case, rec) == check_record(case, rec, native=False)
    case, rec = make([*SETUP, (0, 10, 11, "read mm0 0", 7)])
    res = check_record(case, rec)
    assert res == check_record(case, rec, native=False)
    assert res.status == FAIL and res.history


def test_records_beyond_the_mirror_are_left_to_python() -> None:
    case, rec = make([*SETUP, (0, 10, 11, "read mm0 0", 5)])
    op = rec.ops[-1]
    beyond = [
        replace(rec, ops=list(rec.ops)),  # not a tuple
        replace(rec, ops=(*rec.ops[:-1], op._replace(op=replace(op.op, kind=0)))),  # a plain int
        replace(rec, ops=(*rec.ops[:-1], op._replace(result=1 << 70))),
        replace(rec, image=(tuple(PageImage(True, 3, False, True, 5) for _ in range(2)),)),
    ]
    for bad in beyond:
        assert native_verdict(case, bad) is None
    assert check_record(case, beyond[0]) == check_record(case, rec, native=False)
    with pytest.raises(IndexError):  # Python's verdict on an image too short for the case
        check_record(case, beyond[3])
    assert native_verdict(case, rec, 1 << 70) is None
    assert check_record(case, rec, budget=1 << 70).ok
    assert native_verdict(replace(case, nr_pages=-1), rec) is None


def test_histories_wider_than_the_mirror_are_left_to_python() -> None:
    reads: list[Row] = [(0, 10 + 2 * i, 11 + 2 * i, "read mm0 0", 5) for i in range(520)]
    case, rec = make([*SETUP, *reads])
    assert native_verdict(case, rec) is None
    assert check_record(case, rec).ok
    case, rec = make([*SETUP, *reads[:400]])
    assert agree(case, rec) == OK


# ---------------------------------------------------------------------------------------------
# Synthetic records: any op, any result, any timing (pending ones too), growths and images.


@st.composite
def synthetic(draw: st.DrawFn) -> tuple[Case, RunRecord, int]:
    nr_pages = draw(st.integers(1, 4))
    ops = draw(st.lists(strategies.ops(nr_pages), min_size=1, max_size=9))
    recs = []
    for i, op in enumerate(ops):
        invoke = draw(st.integers(0, 16))
        response = draw(st.sampled_from([-1, invoke, invoke + 1, invoke + 3, invoke + 9]))
        result = draw(st.sampled_from([*RESULTS, op.value, op.page, op.value + 1]))
        recs.append(OpRecord(i, "thread", 0, op, invoke, response, result))
    growths = draw(st.lists(_growth(nr_pages), max_size=2))
    image = draw(st.one_of(st.just(()), _image(nr_pages, ops)))
    case = Case(threads=(tuple(ops),), nr_pages=nr_pages)
    rec = RunRecord("test", "ok", tuple(recs), image, growths=tuple(growths))
    return case, rec, draw(st.sampled_from([3, 40, 2000]))


@st.composite
def _growth(draw: st.DrawFn, nr_pages: int) -> StackGrowth:
    start = draw(st.integers(0, nr_pages - 1))
    end = draw(st.integers(start + 1, nr_pages + 1))
    mm, prot = draw(st.integers(0, 3)), draw(st.integers(0, 7))
    return StackGrowth(draw(st.integers(0, 20)), 0, mm, start, end, prot, draw(st.booleans()))


@st.composite
def _image(draw: st.DrawFn, nr_pages: int, ops: list[Op]) -> tuple:
    """The memory the ops leave when run serially in some order, maybe with one field off."""
    mem = spec.initial_memory(nr_pages)
    for op in draw(st.permutations(ops)):
        if op.kind is not OpKind.KILL:
            mem = spec.execute(mem, op)[1]
    image = list(spec.memory_image(mem))
    mm = draw(st.integers(0, 3))
    if image[mm] is not None and draw(st.booleans()):
        pages = list(image[mm] or ())
        p = draw(st.integers(0, nr_pages - 1))
        pages[p] = replace(pages[p], value=pages[p].value + 1, populated=True)
        image[mm] = tuple(pages)
    return tuple(image)


@given(synthetic())
def test_native_agrees_on_synthetic_records(drawn: tuple[Case, RunRecord, int]) -> None:
    case, rec, budget = drawn
    agree(case, rec, budget)


@given(strategies.cases(max_threads=4, max_ops=5))
def test_native_agrees_on_engine_records_of_drawn_cases(case: Case) -> None:
    for rec in records(case):
        agree(case, rec)


def test_spec_vectors_are_current() -> None:
    """`optimized/tests/oracle.rs` checks the mirror against ``tests/vectors/spec_vectors.json``
    without Python; the file must be what `fuzz.spec` and `fuzz.linearize` compute now
    (regenerate with ``python -m tests.vectors.make_spec_vectors``)."""
    assert make_spec_vectors.PATH.read_text() == make_spec_vectors.dumps(
        make_spec_vectors.vectors()
    )
