"""The sequential specification of memory that engine histories are linearized against.

The kernel does not make a range operation atomic across pages (munmap, mprotect, DONTNEED and
fork's copy reach one page at a time while faults run on others), so the spec object is **one
page index p** (P-compositional, as in Porcupine): its state holds page p in every address space,
a tuple of `MAX_MMS` entries, each ``None`` (that mm does not exist) or a `Page`
``(mapped, prot, uffd, populated, value)`` with the meaning of `fuzz.record.PageImage`.
``populated`` means the PTE is not none; ``value`` is 0 whenever the page is not populated.
Initial state: mm 0 exists with the page unmapped ``(False, 0, False, False, 0)``, mm 1..3 do
not. A page is readable iff ``prot != 0`` and writable iff ``prot & PROT_WRITE`` (x86).

A range op contributes one sub-op to each of its pages below ``nr_pages``, fork one to every
page, kill none. A sub-op with recorded result ``r`` maps a state S to a *set* of successors
(empty: it cannot be linearized at S). "The page" is ``S[op.mm]``; "absent": ``S[op.mm] is
None``. Every op returns -ESRCH exactly when its mm is absent, except that a range op may report
a range error first (-ENOMEM, -EINVAL below constrain nothing about the mm). Per kind:

=================  ==========================================================================
read               SIGSEGV iff unmapped or prot == 0 (a detached page, see Phases: also
                   r == value). uffd and not populated: no successor (blocked until something
                   populates the page). Else r == value and the page becomes populated (the
                   zero page, when it was not).
write v            SIGSEGV iff unmapped or not writable (a detached page: also r == 0, the
                   store). Blocked as read. Else r == 0, value := v, populated.
mmap a n prot      r == a: the page becomes a fresh mapping (True, prot & 3, False, False, 0).
                   -ENOMEM (range past the end): no change, no constraint.
munmap             0: detached (see Phases), then unmapped. -EINVAL: no change, no constraint.
mprotect prot      0: the page is mapped; prot := prot. -ENOMEM (the kernel stops at the first
                   hole): a mapped page may or may not change, an unmapped one does not.
madvise_dontneed   0: mapped; zapped (not populated, value 0). -ENOMEM: zapped if mapped.
madvise_pageout    0: mapped; no change (swapped data stays readable). -ENOMEM: no constraint.
migrate            -EFAULT: unmapped, not populated, or holding 0 (``follow_page`` with
                   FOLL_DUMP treats a hole and the zero page alike). 0, 1 (not migrated),
                   -EBUSY, -EACCES, -ENOENT (a swap, migration or device-private entry):
                   mapped and populated. Never a change.
to_device          -EFAULT: unmapped. 0: mapped and populated. -ENOENT, -EBUSY: mapped.
uffd_register      0: a mapped page gets uffd, an unmapped one is unchanged. -EINVAL: unmapped.
uffd_unregister    as uffd_register, clearing uffd.
uffd_copy v        0: mapped, uffd, not populated; populated, value := v. -EEXIST: mapped,
                   uffd, populated. -ENOENT: unmapped or not uffd.
fork               r == c (1..3): S[c] is None; S[c] := S[m] with uffd cleared. When S[m] is
                   populated with value 0 the child may also be unpopulated (dup_mmap does not
                   copy the page tables of a VMA without anon_vma, e.g. one holding only the
                   zero page). -EAGAIN (no free mm): no change, no constraint.
=================  ==========================================================================

**Unknown results** -- anything not in the table for the kind, e.g. -EINTR from a killable
lock, SIGBUS, -EAGAIN from anything but fork, a non-negative result of a write, an mmap result
other than its address -- leave the state unchanged and constrain nothing beyond -ESRCH.
(The harness judges two of them on the whole history, `fuzz.harness.signal_findings`: killed
or -EINTR needs a SIGKILL sent to the task first, and SIGBUS has no legitimate source.)

**Killed and pending ops** (``RES_KILLED``, or no response because the run ended in a
deadlock or livelock) may or may not have taken effect: their successors are S itself plus the
successors of the op's *natural result* at S (`natural_result`: what it returns when it runs
alone at S). Never-run ops are dropped from the history; a hung access (asleep in
handle_userfault when the run ended) keeps only its FAULT phase.

**Phases.** Two kinds take a step of their own on a page before their main one, in the same
interval (`phases`, `phase_successors`); the checker orders the phase first:

* ``FAULT``, of an access (read or write, except -ESRCH; also a hung one, whose main step
  never happened): do_user_addr_fault populates the page (zero page or zeroed folio) and
  returns, and the access is re-executed later; meanwhile another op may see the page
  populated, and the access may still end SIGSEGV (a concurrent mprotect) or killed. At a
  point where the VMA allows the access and userfaultfd does not block it, an unpopulated page
  may become populated (value 0), or stay as it is. An access that completed needs the phase
  only if an op that can tell a populated zero page from an empty PTE runs concurrently with
  it (`observes_population`: uffd_copy, migrate, to_device, fork; any access on a page ever
  registered with userfaultfd); a weak read never does. One access may fault, and populate
  the page, once more for every op that may empty the page while it runs (mmap, munmap,
  DONTNEED of the page: the retried access faults again), so the checker gives it that many
  FAULT steps.
* ``DETACH``, of munmap (result 0, or killed or pending): do_vmi_align_munmap removes the VMAs
  under mmap_lock for write, downgrades it and only then zaps the PTEs. Detached, the page is
  unmapped for every op that looks for a VMA (faults, madvise, migrate, userfaultfd), but a
  PTE still present serves plain loads and stores: ``(False, 0, False, populated, value)``.
  A read of a detached populated page returns its value or SIGSEGV (the PTE may be a swap
  entry); a write succeeds (value := v) or SIGSEGV. The main step, the zap, clears the page.

**Stack growth** (``GROW``, from `fuzz.record.StackGrowth`): a fault below a VM_GROWSDOWN VMA
makes the kernel extend the VMA down to the faulting page (``expand_downwards``), mapping pages
no operation named. The checker turns each growth into a GROW step of a pseudo ``mmap`` of the
grown pages at the growth's step (``op.value`` is 1 when the VMA is registered with
userfaultfd): the page must be unmapped, and becomes ``(True, prot & 3, uffd, False, 0)``.

**The image observe** (`observe`) runs after every op: it requires S to equal the final memory
image of the page, mm by mm (prot compared modulo PROT_READ|PROT_WRITE).

`execute` runs an op serially on a whole address space (one `State` per page), choosing the
natural result and the first successor; tests and benchmarks generate histories with it.

**Rust mirror.** What the search uses (states, `successors`, `maybe_successors`, `phases`,
`phase_successors`, `observe`, `natural_result`, `is_known`, `is_inert`) is mirrored by
``optimized/src/oracle/spec.rs`` for the native fast path of `fuzz.linearize.check_record`.
This module stays normative; change both in the same commit. ``tests/test_linearize_native.py``
and the shared vectors ``tests/vectors/spec_vectors.json`` hold them together.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence

from fuzz.case import MAX_MMS, PROT_READ, PROT_WRITE, Op, OpKind
from fuzz.record import RES_HUNG, RES_SIGSEGV, PageImage

Page = tuple[bool, int, bool, bool, int]
State = tuple[Page | None, ...]
Memory = tuple[State, ...]

ESRCH, ENOMEM, EINVAL = -errno.ESRCH, -errno.ENOMEM, -errno.EINVAL
EFAULT, ENOENT, EBUSY = -errno.EFAULT, -errno.ENOENT, -errno.EBUSY
EACCES, EEXIST, EAGAIN = -errno.EACCES, -errno.EEXIST, -errno.EAGAIN

PROT_MASK = PROT_READ | PROT_WRITE
UNMAPPED: Page = (False, 0, False, False, 0)
INITIAL: State = (UNMAPPED,) + (None,) * (MAX_MMS - 1)
NONE: tuple[State, ...] = ()
_CHILDREN = frozenset(range(1, MAX_MMS))

# Results the table constrains, per kind (read: also every r >= 0; mmap: also its address).
_KNOWN: dict[OpKind, frozenset[int]] = {
    OpKind.READ: frozenset({ESRCH, RES_SIGSEGV}),
    OpKind.WRITE: frozenset({0, ESRCH, RES_SIGSEGV}),
    OpKind.MMAP: frozenset({ESRCH}),
    OpKind.MUNMAP: frozenset({0, ESRCH}),
    OpKind.MPROTECT: frozenset({0, ENOMEM, ESRCH}),
    OpKind.MADVISE_DONTNEED: frozenset({0, ENOMEM, ESRCH}),
    OpKind.MADVISE_PAGEOUT: frozenset({0, ESRCH}),
    OpKind.MIGRATE: frozenset({0, 1, EBUSY, EACCES, ENOENT, EFAULT, ESRCH}),
    OpKind.TO_DEVICE: frozenset({0, EBUSY, ENOENT, EFAULT, ESRCH}),
    OpKind.UFFD_REGISTER: frozenset({0, EINVAL, ESRCH}),
    OpKind.UFFD_UNREGISTER: frozenset({0, EINVAL, ESRCH}),
    OpKind.UFFD_COPY: frozenset({0, EEXIST, ENOENT, ESRCH}),
    OpKind.FORK: _CHILDREN | {ESRCH},
    OpKind.KILL: frozenset(),
}

# Results that may change the state (all others are inert: identity wherever possible).
_EFFECTS: dict[OpKind, frozenset[int]] = {
    OpKind.READ: frozenset({0}),
    OpKind.WRITE: frozenset({0}),
    OpKind.MUNMAP: frozenset({0}),
    OpKind.MPROTECT: frozenset({0, ENOMEM}),
    OpKind.MADVISE_DONTNEED: frozenset({0, ENOMEM}),
    OpKind.UFFD_REGISTER: frozenset({0}),
    OpKind.UFFD_UNREGISTER: frozenset({0}),
    OpKind.UFFD_COPY: frozenset({0}),
    OpKind.FORK: _CHILDREN,
}


def is_known(op: Op, r: int) -> bool:
    """Whether the table above constrains result `r` of `op`."""
    kind = op.kind
    return (
        r in _KNOWN[kind]
        or (r >= 0 and kind is OpKind.READ)
        or (kind is OpKind.MMAP and r == op.page)
    )


def is_inert(op: Op, r: int) -> bool:
    """`op` with result `r` leaves every state it can be linearized at unchanged."""
    if op.kind is OpKind.MMAP:
        return r != op.page
    return r not in _EFFECTS.get(op.kind, frozenset())


def _set(s: State, mm: int, page: Page | None) -> State:
    return (*s[:mm], page, *s[mm + 1 :])


def _read(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    mapped, prot, uffd, populated, value = pg
    if not mapped and populated:  # detached: the PTE still serves loads, or is a swap entry
        return (s,) if r in (value, RES_SIGSEGV) else NONE
    if not mapped or prot == 0:
        return (s,) if r == RES_SIGSEGV else NONE
    if r != value or (uffd and not populated):
        return NONE
    return (s,) if populated else (_set(s, op.mm, (True, prot, uffd, True, value)),)


def _write(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    mapped, prot, uffd, populated, _ = pg
    if not mapped and populated:  # detached: the PTE may still take the store
        return (s,) if r == RES_SIGSEGV else (_set(s, op.mm, (False, 0, False, True, op.value)),)
    if not mapped or not prot & PROT_WRITE:
        return (s,) if r == RES_SIGSEGV else NONE
    if r != 0 or (uffd and not populated):
        return NONE
    return (_set(s, op.mm, (True, prot, uffd, True, op.value)),)


def _mmap(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    return (_set(s, op.mm, (True, op.prot & PROT_MASK, False, False, 0)),)


def _munmap(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    return (_set(s, op.mm, UNMAPPED),)


def _mprotect(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    if not pg[0]:
        return NONE if r == 0 else (s,)
    changed = _set(s, op.mm, (True, op.prot, pg[2], pg[3], pg[4]))
    return (changed,) if r == 0 or changed == s else (s, changed)


def _dontneed(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    if not pg[0]:
        return NONE if r == 0 else (s,)
    return (_set(s, op.mm, (True, pg[1], pg[2], False, 0)),)


def _pageout(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    return (s,) if pg[0] else NONE


def _migrate(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    if r == EFAULT:  # no VMA, or FOLL_DUMP found a hole or the zero page
        return (s,) if not (pg[0] and pg[3]) or pg[4] == 0 else NONE
    return (s,) if pg[0] and pg[3] else NONE


def _to_device(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    if r == EFAULT:
        return NONE if pg[0] else (s,)
    return (s,) if pg[0] and (pg[3] or r != 0) else NONE


def _uffd_register(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    if not pg[0]:
        return (s,)
    return NONE if r == EINVAL else (_set(s, op.mm, (True, pg[1], True, pg[3], pg[4])),)


def _uffd_unregister(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    if not pg[0]:
        return (s,)
    return NONE if r == EINVAL else (_set(s, op.mm, (True, pg[1], False, pg[3], pg[4])),)


def _uffd_copy(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    mapped, prot, uffd, populated, _ = pg
    if not (mapped and uffd):
        return (s,) if r == ENOENT else NONE
    if r != (EEXIST if populated else 0):
        return NONE
    return (s,) if populated else (_set(s, op.mm, (True, prot, True, True, op.value)),)


def _fork(s: State, pg: Page, op: Op, r: int) -> tuple[State, ...]:
    if s[r] is not None:
        return NONE
    mapped, prot, _, populated, value = pg
    if not mapped:  # dup_mmap copies VMAs: a detached page's PTE stays behind
        return (_set(s, r, UNMAPPED),)
    child = _set(s, r, (mapped, prot, False, populated, value))
    if populated and value == 0:
        return (child, _set(s, r, (mapped, prot, False, False, 0)))
    return (child,)


_TRANSITIONS: dict[OpKind, Callable[[State, Page, Op, int], tuple[State, ...]]] = {
    OpKind.READ: _read,
    OpKind.WRITE: _write,
    OpKind.MMAP: _mmap,
    OpKind.MUNMAP: _munmap,
    OpKind.MPROTECT: _mprotect,
    OpKind.MADVISE_DONTNEED: _dontneed,
    OpKind.MADVISE_PAGEOUT: _pageout,
    OpKind.MIGRATE: _migrate,
    OpKind.TO_DEVICE: _to_device,
    OpKind.UFFD_REGISTER: _uffd_register,
    OpKind.UFFD_UNREGISTER: _uffd_unregister,
    OpKind.UFFD_COPY: _uffd_copy,
    OpKind.FORK: _fork,
}


def successors(s: State, op: Op, r: int) -> tuple[State, ...]:
    """The states `op`, recorded with result `r`, may leave page state `s` in; () if none."""
    pg = s[op.mm]
    if pg is None:
        # A range error may be found before the mm is: -ENOMEM constrains nothing then. Any
        # other result, even one the table does not know, needs the mm.
        return (s,) if r in (ESRCH, ENOMEM) else NONE
    if r == ESRCH:
        return NONE
    if not is_known(op, r):
        return (s,)
    return _TRANSITIONS[op.kind](s, pg, op, r)


def maybe_successors(s: State, op: Op) -> tuple[State, ...]:
    """A killed or pending op: `s` itself, or whatever its natural result at `s` leads to."""
    return tuple(dict.fromkeys((s, *successors(s, op, natural_result(s, op)))))


FAULT, DETACH, GROW = "fault", "detach", "grow"


_POPULATION_OBSERVERS = frozenset({OpKind.UFFD_COPY, OpKind.MIGRATE, OpKind.TO_DEVICE, OpKind.FORK})


def observes_population(op: Op) -> bool:
    """Whether `op` can tell a page populated with 0 from an empty PTE. So can an access, on
    a page registered with userfaultfd (it blocks on the empty PTE), and the image."""
    return op.kind in _POPULATION_OBSERVERS


def is_access(op: Op) -> bool:
    return op.kind in (OpKind.READ, OpKind.WRITE)


def phases(op: Op, r: int, weak: bool, observed: bool = True) -> tuple[str, ...]:
    """The phases `op` (result `r`; `weak`: killed or pending) takes before its main step.
    `observed`: an op that can tell population runs concurrently with this access; if none
    does, a completed access needs no fault (its own step populates the page as the fault
    would have, and nothing looked in between)."""
    if is_access(op) and r != ESRCH:
        if r == RES_HUNG or (op.kind is OpKind.WRITE and weak):
            return (FAULT,)
        # A weak read's own step covers its fault; so does a completed access's, unobserved.
        completed = r >= 0 if op.kind is OpKind.READ else r == 0
        return () if weak or (completed and not observed) else (FAULT,)
    if op.kind is OpKind.MUNMAP and (weak or r == 0):
        return (DETACH,)
    return ()


def phase_successors(s: State, op: Op, phase: str, weak: bool) -> tuple[State, ...]:
    """The successors of phase `phase` of `op` (a fault may or may not populate)."""
    pg = s[op.mm]
    if pg is None:
        return (s,)
    if phase == FAULT:
        if pg[3] or _access_result(pg, op) < 0:
            return (s,)
        return (s, _set(s, op.mm, (True, pg[1], pg[2], True, 0)))
    if phase == GROW:
        if pg[0]:
            return NONE
        return (_set(s, op.mm, (True, op.prot & PROT_MASK, bool(op.value), False, 0)),)
    if not pg[0]:
        return (s,)
    detached = _set(s, op.mm, (False, 0, False, pg[3], pg[4]))
    return (s, detached) if weak else (detached,)


def observe(s: State, image: State) -> tuple[State, ...]:
    """The final-image check: (s,) if `s` is the image, else ()."""
    return (s,) if s == image else NONE


def natural_result(s: State, op: Op) -> int:
    """What `op` returns when it runs alone at page state `s` (RES_HUNG: blocked on uffd)."""
    pg = s[op.mm]
    if op.kind is OpKind.KILL:
        return 0
    if pg is None:
        return ESRCH
    if op.kind is OpKind.FORK:
        return next((c for c in sorted(_CHILDREN) if s[c] is None), EAGAIN)
    return _NATURAL[op.kind](pg, op)


def _access_result(pg: Page, op: Op) -> int:
    mapped, prot, uffd, populated, value = pg
    need = PROT_WRITE if op.kind is OpKind.WRITE else PROT_MASK
    if not mapped or not prot & need:
        return RES_SIGSEGV
    if uffd and not populated:
        return RES_HUNG
    return 0 if op.kind is OpKind.WRITE else value


def _lookup_result(pg: Page, op: Op) -> int:
    if not pg[0]:
        return EFAULT
    if op.kind is OpKind.MIGRATE and not pg[3]:
        return EFAULT
    return 0 if pg[3] else ENOENT


def _copy_result(pg: Page, op: Op) -> int:
    if not (pg[0] and pg[2]):
        return ENOENT
    return EEXIST if pg[3] else 0


def _range_result(pg: Page, op: Op) -> int:
    if op.kind is OpKind.MMAP:
        return op.page
    if op.kind in (OpKind.MUNMAP, OpKind.UFFD_REGISTER, OpKind.UFFD_UNREGISTER):
        return 0
    return 0 if pg[0] else ENOMEM


_NATURAL: dict[OpKind, Callable[[Page, Op], int]] = {
    OpKind.READ: _access_result,
    OpKind.WRITE: _access_result,
    OpKind.MIGRATE: _lookup_result,
    OpKind.TO_DEVICE: _lookup_result,
    OpKind.UFFD_COPY: _copy_result,
    **{k: _range_result for k in OpKind if Op(k).is_range},
}


def image_state(image: Sequence[Sequence[PageImage] | None], page: int) -> State:
    """Page `page` of a `RunRecord.image` as a spec state (missing mms are absent)."""
    out: list[Page | None] = [None] * MAX_MMS
    for mm, pages in enumerate(image[:MAX_MMS]):
        if pages is not None:
            p = pages[page]
            out[mm] = (p.mapped, p.prot & PROT_MASK, p.uffd, p.populated, p.value)
    return tuple(out)


def memory_image(mem: Memory) -> tuple[tuple[PageImage, ...] | None, ...]:
    """A whole address space as a `RunRecord.image` (the inverse of `image_state`)."""
    return tuple(
        None if mem[0][mm] is None else tuple(PageImage(*s[mm]) for s in mem)  # type: ignore[misc]
        for mm in range(MAX_MMS)
    )


# ---------------------------------------------------------------------------------------------
# The whole address space, run serially (history generation for tests and benchmarks)


def initial_memory(nr_pages: int) -> Memory:
    return (INITIAL,) * nr_pages


def execute(mem: Memory, op: Op) -> tuple[int, Memory]:
    """Run `op` alone on `mem` (one state per page): its result and the memory after it."""
    r = _whole_result(mem, op)
    if r in (ESRCH, RES_HUNG) or op.kind is OpKind.KILL:
        return r, mem
    pages, page_r = (range(len(mem)) if op.kind is OpKind.FORK else op.pages()), r
    if op.kind is OpKind.MPROTECT and r == ENOMEM:
        pages, page_r = range(op.page, _first_hole(mem, op)), 0  # the kernel stops at the hole
    out = list(mem)
    for p in pages:
        if p < len(mem):
            out[p] = successors(mem[p], op, page_r)[0]
    return r, tuple(out)


def _first_hole(mem: Memory, op: Op) -> int:
    return next((p for p in op.pages() if p >= len(mem) or not _mapped(mem[p], op.mm)), op.page)


def _mapped(s: State, mm: int) -> bool:
    pg = s[mm]
    return pg is not None and pg[0]


def _whole_result(mem: Memory, op: Op) -> int:
    s0 = mem[0]
    if op.kind in (OpKind.KILL, OpKind.FORK) or s0[op.mm] is None:
        return natural_result(s0, op)
    if not op.is_range:
        return natural_result(mem[op.page], op)
    pages = op.pages()
    past_end = pages.stop > len(mem)
    inside = [mem[p] for p in pages if p < len(mem)]
    if op.kind is OpKind.MMAP:
        return ENOMEM if past_end else op.page
    if op.kind is OpKind.MUNMAP:
        return EINVAL if past_end else 0
    if op.kind in (OpKind.UFFD_REGISTER, OpKind.UFFD_UNREGISTER):
        return 0 if any(_mapped(s, op.mm) for s in inside) else EINVAL
    return ENOMEM if past_end or not all(_mapped(s, op.mm) for s in inside) else 0
