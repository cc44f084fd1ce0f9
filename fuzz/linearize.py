"""Outcome linearizability (DESIGN.md §2.2): a Wing-Gong-Lowe checker over `fuzz.spec`.

**Histories.** `page_histories` splits a `RunRecord` per page as `fuzz.spec` describes: a range
op gives one `SubOp` to each of its pages below ``nr_pages``, fork one to every page, kill none;
an op with a phase (the fault of an access, the VMA detach of munmap) gives one more, which is
linearized before the op's own. A sub-op keeps its op's invocation and response steps and
recorded result. A precedes B in real time iff ``A.response < B.invoke``; equal steps are
concurrent. Ops that never ran (``RES_NOT_RUN``) are dropped; a hung access (``RES_HUNG``) keeps
only its fault phase (it may have faulted the page in before it waited on userfaultfd). Killed
ops, and ops with no response (the run ended in a deadlock or livelock), are *weak*: they may
or may not have taken effect; a pending op's response is `INF`. When the record has an image,
every page ends with an *observe* sub-op invoked after every response: it must see the image.

**Search.** Each page is checked on its own (P-compositionality): a depth-first search for an
order of all sub-ops that respects real time and the spec, in the style of Lowe's WGL variant:
calls are tried in invocation order, a (linearized set as a bitmask, state) pair that has been
explored is never explored again, transitions may have several successors, and a pending op is
free to go anywhere after its invocation. An op that is *inert* for its result (never changes any
state, e.g. a SIGSEGV or a successful migrate) and possible now is linearized at once without
trying the alternatives: moving an inert op earlier never invalidates a linearization. The search
stops after `DEFAULT_BUDGET` memo entries and reports ``undecided``.

**Explanation** (only when a page fails). The history is cut at response events, in response
order, the ops still running at the cut becoming weak; a binary search finds the first cut that
fails, whose last completed op is the *culprit* (its recorded result is impossible); the cut
before it is the longest linearizable prefix. The failing cut is then shrunk: runs of ops are
deleted (all, halves, quarters, ...), then one op at a time, latest response first, an op is
deleted or, if that does not do, weakened (its result no longer counts, its effect may still
happen); a last pass deletes weak ops. A step is taken only if the history still fails, and

* is linearizable once the culprit is weakened: the failure stays the culprit's;
* still lets the culprit's result happen when every other op is weak: no deletion may make the
  result impossible for a new reason (the write of the value read, the mmap under a write);
* for an image culprit, still allows an end state as near to the image as before (the nearest
  is reported).

The ops left, with their recorded results, are the minimal failing sub-history reported, sorted
by invocation (should they not fail on their own, plain greedy deletion from the whole history
is used instead). Searches made while explaining are capped at `EXPLAIN_BUDGET` nodes each; a
step whose search gives up is not taken.

**Native fast path.** `page_histories` and `search` (with `_sub_ops`, `_observers`, `_zaps`,
`_phases_first` and the successor table) are mirrored in Rust by ``optimized/src/oracle/``
(``linearize.rs``, ``search.rs``; the spec by ``spec.rs``), decision only, down to the order of
the search and its memo. `check_record` asks it first (`native_verdict`) and returns its ok as
is: the same `LinResult`, node count included. A failure or an undecided search is decided
again here, and explained; so is a record the mirror does not take (a field of an unexpected
type or range). This module stays normative: change both in the same commit;
``tests/test_linearize_native.py`` holds them together.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from fuzz import spec
from fuzz.case import MAP_GROWSDOWN, Case, Op, OpKind, format_op, format_prot
from fuzz.record import RES_HUNG, RES_KILLED, RES_NOT_RUN, OpRecord, RunRecord, result_name
from fuzz.spec import INITIAL, State
from optimized import _native

INF = 1 << 62
DEFAULT_BUDGET = 1_000_000
EXPLAIN_BUDGET = 100_000  # per search while explaining; an undecided step is not taken
OK, FAIL, UNDECIDED = "ok", "fail", "undecided"
GROWTH_INDEX = -(1 << 40)


@dataclass(frozen=True, slots=True)
class SubOp:
    """One op's part on a page (the same object on each of its pages), the final image
    observe of a page (``op is None``, ``index -1``), or a phase of an op (``phase``, ``index
    -2 - op index``; see `fuzz.spec`), linearized before the op's own sub-op. ``who`` names the
    issuer (``t0``, ``setup``, ``post``, ``monitor``, ``image``); ``maybe`` marks a weak op
    (killed or pending: it may or may not have taken effect)."""

    index: int
    who: str
    op: Op | None
    invoke: int
    response: int
    result: int
    maybe: bool = False
    image: State | None = None
    phase: str = ""

    @property
    def pending(self) -> bool:
        return self.response >= INF

    @property
    def inert(self) -> bool:
        if self.op is None:
            return True
        return not self.maybe and not self.phase and spec.is_inert(self.op, self.result)

    def successors(self, s: State) -> tuple[State, ...]:
        if self.op is None:
            return (s,) if self.maybe or self.image is None else spec.observe(s, self.image)
        if self.phase:
            return spec.phase_successors(s, self.op, self.phase, self.maybe)
        if self.maybe:
            return spec.maybe_successors(s, self.op)
        return spec.successors(s, self.op, self.result)

    def weak(self) -> SubOp:
        return replace(self, maybe=True)

    def __str__(self) -> str:
        end = "..." if self.pending else str(self.response)
        if self.op is None:
            return (
                f"{self.who:<7} [{self.invoke:>4},  end]  final image: {_format_image(self.image)}"
            )
        if self.phase:
            outcome = _PHASE_TEXT[self.phase]
        elif self.pending:
            outcome = "pending (may or may not have taken effect)"
        elif self.result == RES_KILLED:
            outcome = "killed (may or may not have taken effect)"
        else:
            outcome = result_name(self.result)
        return f"{self.who:<7} [{self.invoke:>4}, {end:>4}]  {format_op(self.op)} -> {outcome}"


_PHASE_TEXT = {
    spec.FAULT: "its fault alone (may have populated the page)",
    spec.DETACH: "its VMA detach alone (the PTE stays until the zap)",
    spec.GROW: "the stack grew down over this page",
}


def _format_image(image: State | None) -> str:
    """The image of one page, present mms only."""
    if image is None:
        return "none"
    parts = []
    for mm, pg in enumerate(image):
        if pg is None:
            continue
        if not pg[0]:
            desc = "unmapped"
        else:
            data = f"populated {result_name(pg[4])}" if pg[3] else "not populated"
            desc = f"{format_prot(pg[1])}{' uffd' if pg[2] else ''} {data}"
        parts.append(f"mm{mm} {desc}")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class LinResult:
    """The verdict on a run (or a page). On failure: the page, a small failing sub-history
    with the culprit's position in it, the longest linearizable prefix (the page's history as
    it stood just before the culprit returned, at `fail_step`)."""

    status: str
    page: int = -1
    history: tuple[SubOp, ...] = ()
    culprit: int = -1
    prefix: tuple[SubOp, ...] = ()
    fail_step: int = -1
    nodes: int = 0
    budget: int = DEFAULT_BUDGET
    closest: State | None = None  # when the image is the culprit: the nearest allowed end

    @property
    def ok(self) -> bool:
        return self.status == OK

    def describe(self) -> str:
        if self.status == OK:
            return f"linearizable ({self.nodes} search nodes)"
        if self.status == UNDECIDED:
            return (
                f"page {self.page}: undecided: the search gave up after {self.nodes} nodes "
                f"(budget {self.budget})"
            )
        lines = [f"page {self.page}: not linearizable; a minimal failing sub-history:"]
        for i, sub in enumerate(self.history):
            lines.append(f"  {sub}{'   <- impossible here' if i == self.culprit else ''}")
        if self.closest is not None:
            lines.append(f"  nearest end state the spec allows: {_format_image(self.closest)}")
        lines.append(
            f"the page's history is linearizable until step {self.fail_step}, when the marked op "
            f"returns ({len(self.prefix)} sub-ops before it)"
        )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Histories


def page_histories(case: Case, record: RunRecord) -> list[list[SubOp]]:
    """The per-page histories of `record` (see the module docstring)."""
    n = case.nr_pages
    whos = [part if part != "thread" else f"t{t}" for part, t, _ in case.all_ops()]
    hists: list[list[SubOp]] = [[] for _ in range(n)]
    live = [
        (rec, _pages(rec.op, n))
        for rec in record.ops
        if rec.result != RES_NOT_RUN and rec.op.kind is not OpKind.KILL
    ]
    observers = _observers(live, n)
    zaps = _zaps(live)
    last = 0
    for rec, pages in live:
        last = max(last, rec.invoke + 1, rec.response + 1)
        if spec.is_access(rec.op):
            # An access names one page; only accesses' phases depend on what watches them.
            watched = _overlapping(observers.get((-1, rec.op.page), ()), rec)
            subs = _sub_ops(rec, whos, watched > 0, _overlapping(zaps.get(_key(rec)), rec))
        else:
            subs = _sub_ops(rec, whos, True)
        for p in pages:
            hists[p].extend(subs)
    for k, g in enumerate(record.growths):
        op = Op(OpKind.MMAP, g.mm, g.start, g.end - g.start, g.prot | MAP_GROWSDOWN, int(g.uffd))
        # An index of its own, below every phase's (-2 - op index) and the image's (-1).
        grow = SubOp(GROWTH_INDEX - k, "stack", op, g.step, g.step, g.start, phase=spec.GROW)
        for p in range(g.start, min(g.end, n)):
            hists[p].append(grow)
        last = max(last, g.step + 1)
    if record.image:
        for p in range(n):
            image = spec.image_state(record.image, p)
            hists[p].append(SubOp(-1, "image", None, last, last, 0, image=image))
    return hists


Spans = dict[tuple[int, int], list[tuple[int, int, int]]]
Live = list[tuple[OpRecord, range]]


def _key(rec: OpRecord) -> tuple[int, int]:
    return (rec.op.mm, rec.op.page)


def _observers(live: Live, n: int) -> Spans:
    """Per page (key ``(-1, page)``): the intervals of the ops that can tell a page populated
    with 0 from an empty one (`spec.observes_population`; on a page ever registered with
    userfaultfd, accesses too, which block on the empty PTE)."""
    uffd = {p for rec, pages in live if rec.op.kind is OpKind.UFFD_REGISTER for p in pages}
    out: Spans = {}
    for rec, pages in live:
        observes = spec.observes_population(rec.op)
        access = spec.is_access(rec.op)
        for p in pages:
            if observes or (access and p in uffd):
                out.setdefault((-1, p), []).append((rec.invoke, _end(rec), rec.index))
    return out


# Ops that can empty a populated PTE, after which the same access may fault (and populate) again.
_ZAPPERS = frozenset({OpKind.MMAP, OpKind.MUNMAP, OpKind.MADVISE_DONTNEED})


def _zaps(live: Live) -> Spans:
    """Per (mm, page): the intervals of the ops that may empty it."""
    out: Spans = {}
    for rec, pages in live:
        if rec.op.kind in _ZAPPERS:
            for p in pages:
                out.setdefault((rec.op.mm, p), []).append((rec.invoke, _end(rec), rec.index))
    return out


def _overlapping(spans: Iterable[tuple[int, int, int]] | None, rec: OpRecord) -> int:
    """How many of `spans` (other ops' intervals) overlap `rec`'s. For page-emptying ops, each
    lets an access's fault populate the page once more (a fault populates, a zap empties it,
    the retried access faults again)."""
    if not spans:
        return 0
    end, start, me = _end(rec), rec.invoke, rec.index
    return sum(1 for a, b, i in spans if a <= end and start <= b and i != me)


def _end(rec: OpRecord) -> int:
    return INF if rec.response < 0 else rec.response


def _pages(op: Op, n: int) -> range:
    """The pages below `n` that `op` has a sub-op on."""
    return range(n) if op.kind is OpKind.FORK else range(op.page, min(op.pages().stop, n))


def _sub_ops(rec: OpRecord, whos: list[str], observed: bool, again: int = 0) -> list[SubOp]:
    """The sub-ops an op gives each of its pages: its phases, then its own (none if hung).
    An access that `again` page-emptying ops overlap may fault (and populate) that many more
    times: it gets that many more FAULT phases (a weak read, whose own step stands for one
    fault, gets them too when its faults can be observed)."""
    pending = rec.response < 0
    weak = pending or rec.result in (RES_KILLED, RES_HUNG)
    who = whos[rec.index] if 0 <= rec.index < len(whos) else rec.part
    response = INF if pending else rec.response
    phases = list(spec.phases(rec.op, rec.result, weak, observed))
    if again and (spec.FAULT in phases or (weak and observed)):
        phases += [spec.FAULT] * again
    subs = [
        SubOp(-2 - rec.index, who, rec.op, rec.invoke, response, rec.result, weak, phase=phase)
        for phase in phases
    ]
    if rec.result != RES_HUNG:
        subs.append(SubOp(rec.index, who, rec.op, rec.invoke, response, rec.result, weak))
    return subs


def check_record(
    case: Case,
    record: RunRecord,
    *,
    budget: int = DEFAULT_BUDGET,
    explain: bool = True,
    native: bool = True,
) -> LinResult:
    """Check every page of `record`; the first failing page, else undecided, else ok.

    With `native` (the default) the Rust mirror decides first (`native_verdict`); its ok is
    the result, with the same node count. A failure or an undecided search is decided again,
    and explained, here; so is a record beyond the mirror."""
    if native:
        verdict = native_verdict(case, record, budget)
        if verdict is not None and verdict[0] == OK:
            return LinResult(OK, nodes=verdict[2], budget=budget)
    nodes = 0
    undecided: LinResult | None = None
    for page, hist in enumerate(page_histories(case, record)):
        res = check_page(hist, INITIAL, page=page, budget=budget, explain=explain)
        nodes += res.nodes
        if res.status == FAIL:
            return replace(res, nodes=nodes)
        if res.status == UNDECIDED and undecided is None:
            undecided = res
    return replace(undecided or LinResult(OK), nodes=nodes, budget=budget)


def native_verdict(
    case: Case, record: RunRecord, budget: int = DEFAULT_BUDGET
) -> tuple[str, int, int] | None:
    """`check_record`'s verdict by the Rust mirror (``optimized/src/oracle``), without an
    explanation: (status, page, nodes), where page is the failing page, else the first
    undecided one, else -1; None when the record is beyond the mirror."""
    return _native.linearizable(case.nr_pages, record.ops, record.growths, record.image, budget)


def check_page(
    history: Sequence[SubOp],
    initial_state: State = INITIAL,
    *,
    page: int = -1,
    budget: int = DEFAULT_BUDGET,
    explain: bool = True,
) -> LinResult:
    """Check one page's history from `initial_state`; `page` only labels the result."""
    status, nodes = search(history, initial_state, budget)
    res = LinResult(status, page, nodes=nodes, budget=budget)
    if status != FAIL or not explain:
        return res
    return _explain(res, list(history), initial_state, budget)


# ---------------------------------------------------------------------------------------------
# The search


class _BudgetExhaustedError(Exception):
    pass


def search(history: Sequence[SubOp], initial: State, budget: int) -> tuple[str, int]:
    """WGL search: (OK | FAIL | UNDECIDED, number of memo entries)."""
    seen: set[int] = set()
    dfs, _ = _make_dfs(history, initial, seen, budget, None)
    try:
        found = dfs(0, 0)
    except _BudgetExhaustedError:
        return UNDECIDED, len(seen)
    return (OK if found else FAIL), len(seen)


def final_states(history: Sequence[SubOp], initial: State, budget: int) -> set[State] | None:
    """Every state some linearization of `history` ends in (None: the budget ran out)."""
    seen: set[int] = set()
    finals: set[int] = set()
    dfs, states = _make_dfs(history, initial, seen, budget, finals)
    try:
        dfs(0, 0)
    except _BudgetExhaustedError:
        return None
    return {states[sid] for sid in finals}


def _make_dfs(
    history: Sequence[SubOp], initial: State, seen: set[int], budget: int, finals: set[int] | None
) -> tuple[Callable[[int, int], bool], list[State]]:
    """The search function over `history` and its interned states. It stops at the first
    linearization, or with `finals` given, records the end state of each and goes on."""
    ops = sorted(history, key=lambda o: (o.invoke, o.response, o.index))
    n = len(ops)
    full = (1 << n) - 1
    inv = [o.invoke for o in ops]
    by_resp = sorted(range(n), key=lambda i: ops[i].response)
    inert = [o.inert for o in ops]
    need = _phases_first(ops)
    succ, states = _successor_table(ops, initial)

    def dfs(mask: int, sid: int, first: int = 0) -> bool:
        """Whether the ops outside `mask` can follow state `sid`; `by_resp[first]` is the
        first op by response that may still be outside `mask`."""
        if mask == full:
            if finals is None:
                return True
            finals.add(sid)
            return False
        key = (sid << n) | mask
        if key in seen:
            return False
        seen.add(key)
        if len(seen) > budget:
            raise _BudgetExhaustedError
        while mask >> by_resp[first] & 1:
            first += 1
        # Candidates: ops not linearized, invoked before every such op has returned.
        limit = ops[by_resp[first]].response
        cands = ~mask & ((1 << bisect_right(inv, limit)) - 1)
        order = []
        while cands:
            bit = cands & -cands
            cands ^= bit
            i = bit.bit_length() - 1
            if need[i] & ~mask:
                continue
            nexts = succ(i, sid)
            if nexts and inert[i]:
                return dfs(mask | bit, sid, first)  # an inert op can always go first
            order.append((bit, nexts))
        for bit, nexts in order:
            for nsid in nexts:
                if dfs(mask | bit, nsid, first):
                    return True
        return False

    return dfs, states


def _phases_first(ops: list[SubOp]) -> list[int]:
    """Per op, the ops that must be linearized before it: its phases. Identical phases of one
    op (several FAULT steps) are interchangeable, so they are taken in list order: trying
    their permutations could only find the same linearizations again."""
    pos = {o.index: i for i, o in enumerate(ops) if not o.phase}
    need = [0] * len(ops)
    previous: dict[tuple[int, str], int] = {}
    for i, o in enumerate(ops):
        if not o.phase:
            continue
        if -2 - o.index in pos:
            need[pos[-2 - o.index]] |= 1 << i
        twin = previous.get((o.index, o.phase))
        if twin is not None:
            need[i] |= 1 << twin
        previous[(o.index, o.phase)] = i
    return need


def _successor_table(
    ops: list[SubOp], initial: State
) -> tuple[Callable[[int, int], tuple[int, ...]], list[State]]:
    """Successors of op i from state id `sid`, as state ids; states are interned and every
    transition is computed once."""
    ids: dict[State, int] = {initial: 0}
    states = [initial]
    cache: list[dict[int, tuple[int, ...]]] = [{} for _ in ops]

    def intern(s: State) -> int:
        sid = ids.get(s)
        if sid is None:
            sid = ids[s] = len(states)
            states.append(s)
        return sid

    def succ(i: int, sid: int) -> tuple[int, ...]:
        got = cache[i].get(sid)
        if got is None:
            got = cache[i][sid] = tuple(intern(s) for s in ops[i].successors(states[sid]))
        return got

    return succ, states


# ---------------------------------------------------------------------------------------------
# Explanation of a failure


def _explain(res: LinResult, hist: list[SubOp], initial: State, budget: int) -> LinResult:
    limit = min(budget, EXPLAIN_BUDGET)

    def status(h: Sequence[SubOp]) -> str:
        return search(h, initial, limit)[0]

    closed = sorted((o for o in hist if not o.pending), key=lambda o: (o.response, o.invoke))
    if not closed:
        return res
    k = _first_failing_cut(hist, closed, status)
    culprit = closed[k - 1]
    prefix = _cut(hist, closed, k - 1)
    cut = _cut(hist, closed, k)
    nearest = _nearest_end(culprit, initial, limit)
    gap0, closest = nearest(cut) if nearest else (0, None)
    res = replace(res, closest=closest)
    shrunk = _shrink(cut, culprit, status, lambda h: nearest(h)[0] <= gap0 if nearest else True)
    originals = {o.index: o for o in hist}
    small = sorted((originals[o.index] for o in shrunk), key=lambda o: (o.invoke, o.response))
    if status(small) != FAIL:
        small = _greedy_delete(hist, status)
    pos = next((i for i, o in enumerate(small) if o.index == culprit.index), -1)
    step = culprit.response
    return replace(res, history=tuple(small), culprit=pos, prefix=tuple(prefix), fail_step=step)


def _cut(hist: list[SubOp], closed: list[SubOp], k: int) -> list[SubOp]:
    """The history as it stood when the k-th op (in response order) returned: ops that had
    not returned yet are pending and weak, ops not yet invoked are left out."""
    if k == 0:
        return []
    done = {o.index for o in closed[:k]}
    t = closed[k - 1].response
    return [
        o if o.index in done else replace(o, response=INF, maybe=True)
        for o in hist
        if o.index in done or o.invoke <= t
    ]


def _first_failing_cut(
    hist: list[SubOp], closed: list[SubOp], status: Callable[[Sequence[SubOp]], str]
) -> int:
    """The k of the first cut that fails (the cut before it is linearizable)."""
    lo, hi = 1, len(closed)  # the full history fails, the empty cut does not
    while lo < hi:
        mid = (lo + hi) // 2
        if status(_cut(hist, closed, mid)) == OK:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _nearest_end(
    culprit: SubOp, initial: State, limit: int
) -> Callable[[list[SubOp]], tuple[int, State | None]] | None:
    """For an image culprit: a function giving, for a history, the end state it allows that
    is nearest to the image, and how many fields they differ in."""
    image = culprit.image
    if culprit.op is not None or image is None:
        return None

    def nearest(h: list[SubOp]) -> tuple[int, State | None]:
        finals = final_states([o for o in h if o.index != culprit.index], initial, limit)
        if not finals:
            return 1 << 30, None
        best = min(finals, key=lambda s: (_distance(s, image), repr(s)))
        return _distance(best, image), best

    return nearest


def _distance(a: State, b: State) -> int:
    """Fields that differ between two page states (an mm that exists in one only: all five)."""
    out = 0
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            out += 0 if x is y else 5
        else:
            out += sum(p != q for p, q in zip(x, y, strict=True))
    return out


def _shrink(
    cut: list[SubOp],
    culprit: SubOp,
    status: Callable[[Sequence[SubOp]], str],
    close_enough: Callable[[list[SubOp]], bool],
) -> list[SubOp]:
    """Delete each op, latest first, or failing that weaken it; then delete weak ops until
    none can go. Every step keeps the failure the culprit's (see the module docstring); keeps
    the culprit's result possible if all other ops may or may not take effect (so that no
    deletion makes it impossible for a new reason, like the write of the value read); and when
    the culprit is the image, keeps an allowed end as near to it as before."""

    def without_culprit(h: list[SubOp]) -> list[SubOp]:
        return [o.weak() if o.index == culprit.index else o for o in h]

    def relaxed(h: list[SubOp]) -> list[SubOp]:
        return [o if o.index == culprit.index else o.weak() for o in h]

    guard = status(without_culprit(cut)) == OK
    plausible = status(relaxed(cut)) == OK

    def keeps(h: list[SubOp]) -> bool:
        if status(h) != FAIL or (guard and status(without_culprit(h)) != OK):
            return False
        return (not plausible or status(relaxed(h)) == OK) and close_enough(h)

    latest_first = sorted(cut, key=lambda o: (o.response, o.invoke), reverse=True)
    others = [o for o in latest_first if o.index != culprit.index]
    cur = _delete_chunks(cut, others, keeps)
    for o in others:
        if not any(x is o for x in cur):
            continue
        deleted = [x for x in cur if x is not o]
        if keeps(deleted):
            cur = deleted
        elif not o.maybe:
            weakened = [o.weak() if x is o else x for x in cur]
            cur = weakened if keeps(weakened) else cur
    return _delete_while(cur, lambda o: o.maybe and o.index != culprit.index, keeps)


def _delete_chunks(
    hist: list[SubOp], order: list[SubOp], keeps: Callable[[list[SubOp]], bool]
) -> list[SubOp]:
    """Delete runs of ops in `order`, all of them first, then halves, quarters, ... down to
    runs of 4, as long as `keeps` holds: most of a long history goes in a few searches."""
    cur = hist
    size = len(order)
    while size >= 4:
        for start in range(0, len(order), size):
            gone = {id(o) for o in order[start : start + size]}
            trial = [x for x in cur if id(x) not in gone]
            if len(trial) < len(cur) and keeps(trial):
                cur = trial
        size //= 2
    return cur


def _greedy_delete(hist: list[SubOp], status: Callable[[Sequence[SubOp]], str]) -> list[SubOp]:
    small = _delete_while(hist, lambda o: True, lambda h: status(h) == FAIL)
    return sorted(small, key=lambda o: (o.invoke, o.response))


def _delete_while(
    hist: list[SubOp], may_go: Callable[[SubOp], bool], keeps: Callable[[list[SubOp]], bool]
) -> list[SubOp]:
    """Delete ops one at a time, as long as `keeps` holds, until no deletion is possible."""
    cur = list(hist)
    changed = True
    while changed:
        changed = False
        for o in list(cur):
            if may_go(o):
                trial = [x for x in cur if x is not o]
                if keeps(trial):
                    cur, changed = trial, True
    return cur
