"""A case built rule by rule (Hypothesis `RuleBasedStateMachine`), judged after every rule.

The rules map memory, prepare it (populate, page out, move to the device, register with
userfaultfd), add an operation of any kind to a thread, add a thread, fork, kill and change
the schedule; the case built so far runs through `check_case` (both engines, every
oracle) after each of them, and the invariants are the harness's oracles seen from outside:

* no finding (contract, liveness, linearizability, lockstep) in either engine;
* under the serial schedule the engines agree exactly (the verdict is ``pass``, not even a
  benign divergence);
* a replay is deterministic: running the same case again through each engine gives an
  identical record.

Hypothesis shrinks a failure to the fewest rules, i.e. the smallest case. The budget follows
the loaded profile (``VMAFUZZ_HYPOTHESIS_PROFILE``, see conftest): half of its examples, up to
30 rules each, with the profile's derandomisation, database and blob printing.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import optimized
import reference
from fuzz.case import (
    MAP_GROWSDOWN,
    MAX_OPS_PER_PART,
    PROT_READ,
    PROT_WRITE,
    RW,
    Case,
    Op,
    OpKind,
    Schedule,
    Strategy,
    format_case,
)
from fuzz.harness import FINDING, PASS, Verdict, check_case
from fuzz.strategies import distinct_values, focused_ops, interesting_schedules

MAX_THREADS = 4  # of the format's 6: keeps a CI run within its time budget
MAX_FORKS = 3  # four address spaces at most
KINDS = tuple(k for k in OpKind if k not in (OpKind.FORK, OpKind.KILL))  # those have own rules
PREPARE = (OpKind.WRITE, OpKind.MADVISE_PAGEOUT, OpKind.TO_DEVICE, OpKind.UFFD_REGISTER)


class CaseBuilder(RuleBasedStateMachine):
    """The state is the case under construction; `verdict` caches `check_case` per case."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[Case, Verdict] = {}
        self.setup: list[Op] = []
        self.threads: list[list[Op]] = [[]]
        self.mapped: list[int] = []
        self.forks = 0
        self.nr_pages = 4
        self.swap_async = False
        self.monitor = False
        self.schedule = Schedule.serial()

    @initialize(nr_pages=st.integers(2, 8), swap_async=st.booleans(), monitor=st.booleans())
    def start(self, nr_pages: int, swap_async: bool, monitor: bool) -> None:
        self.nr_pages, self.swap_async, self.monitor = nr_pages, swap_async, monitor

    # -----------------------------------------------------------------------------------------
    # The case so far

    def case(self) -> Case:
        case = Case(
            threads=tuple(tuple(t) for t in self.threads),
            setup=tuple(self.setup),
            nr_pages=self.nr_pages,
            swap_async=self.swap_async,
            uffd_monitor=self.monitor,
            schedule=self.schedule,
        )
        return distinct_values(case).validate()

    def verdict(self, case: Case) -> Verdict:
        if case not in self.cache:
            self.cache[case] = check_case(case)
        return self.cache[case]

    def room(self, thread: int) -> bool:
        return len(self.threads[thread]) < MAX_OPS_PER_PART

    # -----------------------------------------------------------------------------------------
    # Rules

    # Rules at a limit do nothing rather than having a precondition: Hypothesis's swarm
    # testing turns rules off at random, and rules left without a runnable one are wasted runs.

    @rule(data=st.data(), populate=st.booleans())
    def map_memory(self, data: st.DataObject, populate: bool) -> None:
        if len(self.setup) >= MAX_OPS_PER_PART - 1:
            return
        page = data.draw(st.integers(0, self.nr_pages - 1), label="page")
        npages = data.draw(st.integers(1, self.nr_pages - page), label="npages")
        prot = data.draw(st.sampled_from((RW, PROT_READ, RW | MAP_GROWSDOWN)), label="prot")
        self.setup.append(Op(OpKind.MMAP, 0, page, npages, prot))
        self.mapped = sorted(set(self.mapped) | set(range(page, page + npages)))
        if populate and prot & PROT_WRITE:
            self.setup.append(Op(OpKind.WRITE, 0, page, value=1))

    @rule(data=st.data(), kind=st.sampled_from(PREPARE))
    def prepare_memory(self, data: st.DataObject, kind: OpKind) -> None:
        """A setup op on a mapped page: populate it, page it out, move it to the device or
        register it with userfaultfd, so that thread faults take the slow paths."""
        if not self.mapped or len(self.setup) >= MAX_OPS_PER_PART:
            return
        page = data.draw(st.sampled_from(self.mapped), label="page")
        npages = 1 if kind in (OpKind.MADVISE_PAGEOUT, OpKind.UFFD_REGISTER) else 0
        self.setup.append(Op(kind, 0, page, npages, value=int(kind is OpKind.WRITE)))

    @rule(data=st.data())
    def add_op(self, data: st.DataObject) -> None:
        thread = data.draw(st.integers(0, len(self.threads) - 1), label="thread")
        ops = focused_ops(
            self.nr_pages, tuple(self.mapped), self.forks > 0, len(self.threads), KINDS
        )
        op = data.draw(ops, label="op")
        if self.room(thread):
            self.threads[thread].append(op)

    @rule()
    def add_thread(self) -> None:
        if len(self.threads) < MAX_THREADS:
            self.threads.append([])

    @rule(data=st.data(), in_setup=st.booleans())
    def fork(self, data: st.DataObject, in_setup: bool) -> None:
        if self.forks >= MAX_FORKS:
            return
        mm = data.draw(st.integers(0, self.forks), label="mm")
        thread = data.draw(st.integers(0, len(self.threads) - 1), label="thread")
        if in_setup and len(self.setup) < MAX_OPS_PER_PART:
            self.setup.append(Op(OpKind.FORK, mm))
        elif self.room(thread):
            self.threads[thread].append(Op(OpKind.FORK, mm))
        self.forks += 1

    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        thread = data.draw(st.integers(0, len(self.threads) - 1), label="thread")
        target = data.draw(st.integers(0, len(self.threads) - 1), label="target")
        if self.room(thread):
            self.threads[thread].append(Op(OpKind.KILL, value=target))

    @rule(schedule=interesting_schedules())
    def change_schedule(self, schedule: Schedule) -> None:
        self.schedule = schedule

    # -----------------------------------------------------------------------------------------
    # Invariants: the oracles, after every rule

    @invariant()
    def no_finding(self) -> None:
        case = self.case()
        v = self.verdict(case)
        assert v.kind != FINDING, f"{v.finding and v.finding.headline()}\n{format_case(case)}"

    @invariant()
    def serial_engines_agree(self) -> None:
        case = replace(self.case(), schedule=Schedule.serial())
        v = self.verdict(case)
        if v.kind == FINDING and self.schedule.strategy is Strategy.SERIAL:
            return  # the case itself: `no_finding` reports it (one failure, shrunk once)
        detail = v.finding.headline() if v.finding else "; ".join(v.divergences)
        assert v.kind == PASS, f"{detail}\n{format_case(case)}"

    @invariant()
    def replay_is_deterministic(self) -> None:
        case = self.case()
        v = self.verdict(case)
        again = (reference.run(case), optimized.run(case))
        assert again == (v.reference, v.optimized), f"two runs differ\n{format_case(case)}"


_profile = settings()  # the profile conftest loaded
EXAMPLES = max(5, _profile.max_examples // 2)
CaseBuilder.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=30, deadline=None
)
TestCaseBuilder = CaseBuilder.TestCase


def test_the_budget_follows_the_profile() -> None:
    chosen = CaseBuilder.TestCase.settings
    assert chosen.derandomize == _profile.derandomize
    assert chosen.database == _profile.database
    assert chosen.print_blob == _profile.print_blob
    assert chosen.max_examples == EXAMPLES and chosen.deadline is None
