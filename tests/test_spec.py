"""The sequential spec (`fuzz.spec`): one page's transitions, kind by kind, and the
whole-address-space `execute` agreeing with them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz import spec
from fuzz.case import MAX_MMS, Op, OpKind, normalize_op, parse_op
from fuzz.record import RES_HUNG, RES_KILLED, RES_SIGBUS, RES_SIGSEGV
from fuzz.spec import (
    EACCES,
    EAGAIN,
    EBUSY,
    EEXIST,
    EFAULT,
    EINVAL,
    ENOENT,
    ENOMEM,
    ESRCH,
    INITIAL,
    UNMAPPED,
    Page,
    State,
    successors,
)

SEGV = RES_SIGSEGV
RW: Page = (True, 3, False, False, 0)  # mapped read-write, not populated
RO_FULL: Page = (True, 1, False, True, 7)  # mapped read-only, holding 7
RW_FULL: Page = (True, 3, False, True, 5)  # mapped read-write, holding 5
UFFD: Page = (True, 3, True, False, 0)  # registered with userfaultfd, not populated
ZERO: Page = (True, 3, False, True, 0)  # the zero page mapped


def mms(*pages: Page | None) -> State:
    """A state from mm 0's page onwards; missing mms are absent."""
    return tuple(pages) + (None,) * (MAX_MMS - len(pages))


def succ(state: State, text: str, r: int) -> tuple[State, ...]:
    return successors(state, parse_op(text), r)


def test_initial_state() -> None:
    assert mms(UNMAPPED) == INITIAL


@pytest.mark.parametrize(
    ("page", "r", "want"),
    [
        (UNMAPPED, RES_SIGSEGV, UNMAPPED),
        (UNMAPPED, 0, None),
        ((True, 0, False, True, 5), RES_SIGSEGV, (True, 0, False, True, 5)),
        (RW, 0, ZERO),  # the zero page populates it
        (RW, 3, None),
        (RW_FULL, 5, RW_FULL),
        (RW_FULL, RES_SIGSEGV, None),
        (UFFD, 0, None),  # blocked until something populates it
        ((True, 3, True, True, 4), 4, (True, 3, True, True, 4)),
        (RW_FULL, ESRCH, None),
        (RW_FULL, RES_SIGBUS, RW_FULL),  # unknown result: no change, no constraint
    ],
)
def test_read(page: Page, r: int, want: Page | None) -> None:
    assert succ(mms(page), "read mm0 0", r) == ((mms(want),) if want else ())


def test_ops_on_absent_mm_return_esrch() -> None:
    for text in ("read mm1 0", "write mm1 0 0x1", "munmap mm1 0+1", "fork mm1", "migrate mm1 0"):
        assert succ(INITIAL, text, ESRCH) == (INITIAL,)
        assert succ(INITIAL, text, 0 if "fork" not in text else 2) == ()


@pytest.mark.parametrize(
    ("page", "r", "want"),
    [
        (RW, 0, (True, 3, False, True, 9)),
        (RO_FULL, RES_SIGSEGV, RO_FULL),
        (RO_FULL, 0, None),
        (UNMAPPED, RES_SIGSEGV, UNMAPPED),
        (UFFD, 0, None),
        ((True, 3, True, True, 1), 0, (True, 3, True, True, 9)),
        (RW, RES_SIGSEGV, None),
        (RW, -4, RW),  # -EINTR: unknown, no change
    ],
)
def test_write(page: Page, r: int, want: Page | None) -> None:
    assert succ(mms(page), "write mm0 0 0x9", r) == ((mms(want),) if want else ())


def test_mmap() -> None:
    fresh = mms((True, 1, False, False, 0))
    assert succ(mms(RW_FULL), "mmap mm0 0+2 r", 0) == (fresh,)
    assert succ(mms(UNMAPPED), "mmap mm0 0+2 r,growsdown", 0) == (fresh,)
    assert succ(mms(RW_FULL), "mmap mm0 0+4 r", ENOMEM) == (mms(RW_FULL),)
    assert succ(mms(RW_FULL), "mmap mm0 0+2 r", ESRCH) == ()


def test_munmap() -> None:
    assert succ(mms(RW_FULL), "munmap mm0 0+1", 0) == (mms(UNMAPPED),)
    assert succ(mms(UNMAPPED), "munmap mm0 0+1", 0) == (mms(UNMAPPED),)
    assert succ(mms(RW_FULL), "munmap mm0 0+9", EINVAL) == (mms(RW_FULL),)


def test_mprotect() -> None:
    ro = mms((True, 1, False, True, 5))
    assert succ(mms(RW_FULL), "mprotect mm0 0+1 r", 0) == (ro,)
    assert succ(mms(UNMAPPED), "mprotect mm0 0+1 r", 0) == ()
    assert succ(mms(RW_FULL), "mprotect mm0 0+3 r", ENOMEM) == (mms(RW_FULL), ro)
    assert succ(mms(UNMAPPED), "mprotect mm0 0+3 r", ENOMEM) == (mms(UNMAPPED),)
    assert succ(ro, "mprotect mm0 0+3 r", ENOMEM) == (ro,)


def test_madvise() -> None:
    zapped = mms((True, 3, False, False, 0))
    assert succ(mms(RW_FULL), "madvise_dontneed mm0 0+1", 0) == (zapped,)
    assert succ(mms(RW_FULL), "madvise_dontneed mm0 0+3", ENOMEM) == (zapped,)
    assert succ(mms(UNMAPPED), "madvise_dontneed mm0 0+1", 0) == ()
    assert succ(mms(UNMAPPED), "madvise_dontneed mm0 0+3", ENOMEM) == (mms(UNMAPPED),)
    assert succ(mms(RW_FULL), "madvise_pageout mm0 0+1", 0) == (mms(RW_FULL),)
    assert succ(mms(UNMAPPED), "madvise_pageout mm0 0+1", 0) == ()
    assert succ(mms(UNMAPPED), "madvise_pageout mm0 0+1", ENOMEM) == (mms(UNMAPPED),)


@pytest.mark.parametrize(
    ("kind", "r", "unmapped", "unpopulated", "populated"),
    [
        ("migrate", 0, False, False, True),
        ("migrate", 1, False, False, True),
        ("migrate", EBUSY, False, False, True),
        ("migrate", EACCES, False, False, True),
        ("migrate", ENOENT, False, False, True),
        # FOLL_DUMP: a hole is -EFAULT too (and so is the zero page: populated with 0).
        ("migrate", EFAULT, True, True, False),
        ("to_device", 0, False, False, True),
        ("to_device", ENOENT, False, True, True),
        ("to_device", EBUSY, False, True, True),
        ("to_device", EFAULT, True, False, False),
    ],
)
def test_lookups_constrain_but_never_change(
    kind: str, r: int, unmapped: bool, unpopulated: bool, populated: bool
) -> None:
    for page, allowed in ((UNMAPPED, unmapped), (RW, unpopulated), (RW_FULL, populated)):
        assert succ(mms(page), f"{kind} mm0 0", r) == ((mms(page),) if allowed else ())


def test_uffd_register_and_unregister() -> None:
    assert succ(mms(RW_FULL), "uffd_register mm0 0+1", 0) == (mms((True, 3, True, True, 5)),)
    assert succ(mms(UNMAPPED), "uffd_register mm0 0+1", 0) == (mms(UNMAPPED),)
    assert succ(mms(RW), "uffd_register mm0 0+1", EINVAL) == ()
    assert succ(mms(UNMAPPED), "uffd_register mm0 0+1", EINVAL) == (mms(UNMAPPED),)
    assert succ(mms(UFFD), "uffd_unregister mm0 0+1", 0) == (mms(RW),)
    assert succ(mms(UFFD), "uffd_unregister mm0 0+1", EINVAL) == ()


@pytest.mark.parametrize(
    ("page", "r", "want"),
    [
        (UFFD, 0, (True, 3, True, True, 9)),
        (UFFD, EEXIST, None),
        (UFFD, ENOENT, None),
        ((True, 3, True, True, 4), EEXIST, (True, 3, True, True, 4)),
        ((True, 3, True, True, 4), 0, None),
        (RW, ENOENT, RW),
        (UNMAPPED, ENOENT, UNMAPPED),
        (RW, 0, None),
    ],
)
def test_uffd_copy(page: Page, r: int, want: Page | None) -> None:
    assert succ(mms(page), "uffd_copy mm0 0 0x9", r) == ((mms(want),) if want else ())


def test_fork_copies_the_page_and_clears_uffd() -> None:
    parent = (True, 3, True, True, 5)
    assert succ(mms(parent), "fork mm0", 1) == (mms(parent, (True, 3, False, True, 5)),)
    assert succ(mms(parent, RW), "fork mm1", 2) == (mms(parent, RW, RW),)
    assert succ(mms(parent, RW), "fork mm0", 1) == ()  # mm 1 exists already
    assert succ(mms(UNMAPPED), "fork mm0", 1) == (mms(UNMAPPED, UNMAPPED),)
    assert succ(mms(RW_FULL, RW, RW, RW), "fork mm0", EAGAIN) == (mms(RW_FULL, RW, RW, RW),)


def test_fork_of_the_zero_page_may_leave_the_child_unpopulated() -> None:
    assert succ(mms(ZERO), "fork mm0", 1) == (mms(ZERO, ZERO), mms(ZERO, RW))


def test_kill_changes_nothing() -> None:
    assert successors(mms(RW_FULL), Op(OpKind.KILL, value=1), 0) == (mms(RW_FULL),)


def test_killed_ops_may_or_may_not_take_effect() -> None:
    assert spec.maybe_successors(mms(RW_FULL), parse_op("write mm0 0 0x9")) == (
        mms(RW_FULL),
        mms((True, 3, False, True, 9)),
    )
    assert spec.maybe_successors(mms(UFFD), parse_op("read mm0 0")) == (mms(UFFD),)
    assert spec.maybe_successors(mms(RO_FULL), parse_op("write mm0 0 0x9")) == (mms(RO_FULL),)
    assert spec.maybe_successors(mms(ZERO, RW), parse_op("fork mm0")) == (
        mms(ZERO, RW),
        mms(ZERO, RW, ZERO),
        mms(ZERO, RW, RW),
    )


def test_phases() -> None:
    write, read, munmap = (
        parse_op("write mm0 0 0x9"),
        parse_op("read mm0 0"),
        parse_op("munmap mm0 0+1"),
    )
    assert spec.phases(write, 0, False) == spec.phases(write, RES_SIGSEGV, False) == (spec.FAULT,)
    assert spec.phases(write, RES_KILLED, True) == spec.phases(read, 5, False) == (spec.FAULT,)
    assert spec.phases(read, RES_HUNG, True) == (spec.FAULT,)  # a hung access did fault
    assert spec.phases(read, RES_KILLED, True) == ()  # a weak read covers its fault
    assert spec.phases(write, ESRCH, False) == spec.phases(read, ESRCH, False) == ()
    assert spec.phases(munmap, 0, False) == spec.phases(munmap, RES_KILLED, True) == (spec.DETACH,)
    assert (
        spec.phases(munmap, EINVAL, False) == spec.phases(parse_op("migrate mm0 0"), 0, False) == ()
    )


def test_a_fault_may_populate_what_the_access_may_touch() -> None:
    write, read = parse_op("write mm0 0 0x9"), parse_op("read mm0 0")
    assert spec.phase_successors(mms(RW), write, spec.FAULT, False) == (mms(RW), mms(ZERO))
    assert spec.phase_successors(mms(RW_FULL), write, spec.FAULT, False) == (mms(RW_FULL),)
    assert spec.phase_successors(mms(UFFD), read, spec.FAULT, False) == (mms(UFFD),)
    read_only = (True, 1, False, False, 0)
    assert spec.phase_successors(mms(read_only), write, spec.FAULT, False) == (mms(read_only),)
    assert spec.phase_successors(mms(read_only), read, spec.FAULT, False) == (
        mms(read_only),
        mms((True, 1, False, True, 0)),
    )


def test_a_detached_page_serves_loads_and_stores_until_the_zap() -> None:
    munmap = parse_op("munmap mm0 0+1")
    detached = mms((False, 0, False, True, 5))
    assert spec.phase_successors(mms(RW_FULL), munmap, spec.DETACH, False) == (detached,)
    assert spec.phase_successors(mms(RW_FULL), munmap, spec.DETACH, True) == (
        mms(RW_FULL),
        detached,
    )
    assert spec.phase_successors(mms(UNMAPPED), munmap, spec.DETACH, False) == (mms(UNMAPPED),)
    assert succ(detached, "read mm0 0", 5) == succ(detached, "read mm0 0", SEGV) == (detached,)
    assert succ(detached, "read mm0 0", 0) == ()
    assert succ(detached, "write mm0 0 0x9", 0) == (mms((False, 0, False, True, 9)),)
    assert succ(detached, "migrate mm0 0", EFAULT) == (detached,)
    assert succ(detached, "madvise_dontneed mm0 0+1", 0) == ()
    assert succ(detached, "munmap mm0 0+1", 0) == (mms(UNMAPPED),)
    assert succ(detached, "fork mm0", 1) == (mms((False, 0, False, True, 5), UNMAPPED),)
    assert succ(mms((False, 0, False, False, 0)), "read mm0 0", 0) == ()


def test_observe_compares_every_mm() -> None:
    assert spec.observe(mms(RW_FULL), mms(RW_FULL)) == (mms(RW_FULL),)
    assert spec.observe(mms(RW_FULL), mms(RW_FULL, RW)) == ()


def test_image_round_trip() -> None:
    mem = (mms(RW_FULL, UFFD), mms(UNMAPPED, ZERO))
    image = spec.memory_image(mem)
    assert image[2] is None and image[0] is not None and image[0][1].mapped is False
    assert [spec.image_state(image, p) for p in range(2)] == list(mem)


def test_natural_results() -> None:
    assert spec.natural_result(mms(RW_FULL), parse_op("read mm0 0")) == 5
    assert spec.natural_result(mms(UFFD), parse_op("read mm0 0")) == RES_HUNG
    assert spec.natural_result(mms(RO_FULL), parse_op("write mm0 0 0x1")) == RES_SIGSEGV
    assert spec.natural_result(mms(RW, RW), parse_op("fork mm0")) == 2
    assert spec.natural_result(mms(RW), parse_op("mprotect mm0 0+1 r")) == 0
    assert spec.natural_result(mms(UNMAPPED), parse_op("mprotect mm0 0+1 r")) == ENOMEM


def test_execute_runs_ranges_like_the_kernel() -> None:
    mem = spec.initial_memory(4)
    script = [
        ("mmap mm0 0+2 rw", 0),
        ("mmap mm0 3+2 rw", ENOMEM),
        ("write mm0 1 0x5", 0),
        ("mprotect mm0 0+3 r", ENOMEM),  # applied to pages 0 and 1, stops at the hole
        ("write mm0 1 0x6", RES_SIGSEGV),
        ("uffd_register mm0 2+2", EINVAL),
        ("fork mm0", 1),
        ("read mm1 1", 5),
        ("munmap mm0 0+9", EINVAL),
        ("munmap mm0 0+1", 0),
        ("read mm0 0", RES_SIGSEGV),
        ("read mm1 0", 0),
    ]
    for text, want in script:
        r, mem = spec.execute(mem, parse_op(text))
        assert r == want, text
    assert mem[1][0] == (True, 1, False, True, 5)


# ---------------------------------------------------------------------------------------------
# Properties


def ops(pages: int) -> st.SearchStrategy[Op]:
    kinds = st.sampled_from([k for k in OpKind if k is not OpKind.KILL])
    small = st.integers(0, 255)
    return st.builds(
        lambda k, mm, p, n, prot, v: normalize_op(k, mm, p, n, prot, v, pages),
        kinds,
        st.integers(0, 1),
        small,
        small,
        small,
        st.integers(1, 20),
    )


@settings(deadline=None)
@given(st.data())
def test_execute_agrees_with_the_per_page_spec(data: st.DataObject) -> None:
    """Every page `execute` moves goes to one of the spec's successors for the op's result,
    and every other page stays as it was."""
    pages = data.draw(st.integers(1, 4))
    mem = spec.initial_memory(pages)
    for op in data.draw(st.lists(ops(pages), max_size=25)):
        r, after = spec.execute(mem, op)
        touched = range(pages) if op.kind is OpKind.FORK else op.pages()
        for p in range(pages):
            if r == RES_HUNG or p not in touched:
                assert after[p] == mem[p]
            else:
                assert after[p] in successors(mem[p], op, r), (op, r, p)
        mem = after


@settings(deadline=None)
@given(st.data())
def test_inert_results_never_change_a_state(data: st.DataObject) -> None:
    """Checked at every state a random serial run passes through, for the op run next."""
    pages = data.draw(st.integers(1, 3))
    mem = spec.initial_memory(pages)
    results = (0, 1, 5, ESRCH, ENOMEM, EINVAL, EFAULT, ENOENT, EEXIST, RES_SIGSEGV, RES_KILLED)
    for op in data.draw(st.lists(ops(pages), max_size=20)):
        for s in mem:
            for r in results:
                if spec.is_inert(op, r):
                    assert set(successors(s, op, r)) <= {s}, (op, r, s)
        mem = spec.execute(mem, op)[1]


@pytest.mark.parametrize("r", [RES_SIGBUS, -4, 0])
def test_any_result_but_esrch_needs_the_mm(r: int) -> None:
    """An op on an mm that does not exist yet returns -ESRCH (or a range error): a result
    the table does not know is no excuse for having found the mm."""
    absent = Op(OpKind.READ, mm=2, page=0)
    assert successors(INITIAL, absent, r) == ()
    assert successors(INITIAL, absent, ESRCH) == (INITIAL,)
