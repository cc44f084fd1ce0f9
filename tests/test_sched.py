"""The scheduler runtime (`reference/sched.py`) and its agreement with the Rust mirror."""

from __future__ import annotations

import json
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.sched import (
    BLOCKED,
    IDLE,
    LIVELOCK,
    RUNNABLE,
    ExplicitPolicy,
    PctPolicy,
    Runtime,
    SplitMix64,
    Task,
    TaskGen,
    ToyMutex,
    run_toy,
    toy_features,
)

VECTORS = pathlib.Path(__file__).parent / "vectors" / "sched_vectors.json"


def test_splitmix64_known_values() -> None:
    # The published first output of SplitMix64 seeded with 0.
    assert SplitMix64(0).next_u64() == 0xE220A8397B1DCDAF
    rng = SplitMix64(1)
    assert all(0 <= rng.below(6) < 6 for _ in range(1000))


def test_vectors_are_current() -> None:
    """The checked-in vectors are what the Python side computes today."""
    data = json.loads(VECTORS.read_text())
    assert len(data["splitmix64"]) >= 3 and len(data["toys"]) >= 10  # nothing went missing
    for v in data["splitmix64"]:
        rng = SplitMix64(int(v["seed"], 16))
        assert [f"{rng.next_u64():016x}" for _ in v["outputs"]] == v["outputs"]
        assert [[n, rng.below(n)] for n, _ in v["below"]] == v["below"]
    for v in data["toys"]:
        res = run_toy(
            v["toy"],
            v["strategy"],
            int(v["seed"], 16),
            v["depth"],
            v["steps"],
            v["choices"],
            v["stall"],
        )
        outcome, nsteps, chosen, choice_log, log, unfinished, wait_for = res
        assert (outcome, nsteps, chosen, choice_log, log, unfinished) == (
            v["outcome"],
            v["nsteps"],
            v["chosen"],
            v["choice_log"],
            v["log"],
            v["unfinished"],
        )
        assert [[t, s, o, list(h)] for t, s, o, h in wait_for] == v["wait_for"]
        args = (v["toy"], v["strategy"], int(v["seed"], 16), v["depth"], v["steps"], v["choices"])
        assert toy_features(*args, v["stall"]) == v["features"]


def _native_toy_run() -> object:
    native = pytest.importorskip("optimized._native")
    fn = getattr(native, "toy_run", None)
    if fn is None:
        pytest.skip("optimized._native.toy_run not built")
    return fn


@given(
    toy=st.sampled_from(["ping_pong", "rw_queue", "deadlock", "spin", "poll"]),
    strategy=st.integers(0, 3),
    seed=st.integers(0, 2**64 - 1),
    depth=st.integers(1, 8),
    steps=st.integers(1, 200),
    choices=st.lists(st.integers(0, 255), max_size=40),
)
def test_rust_makes_the_same_decisions(
    toy: str, strategy: int, seed: int, depth: int, steps: int, choices: list[int]
) -> None:
    toy_run = _native_toy_run()
    py = run_toy(toy, strategy, seed, depth, steps, choices, 60)
    rs = toy_run(toy, strategy, seed, depth, steps, bytes(choices), 60)  # type: ignore[operator]
    want_wait = [(t, s, o, list(h)) for t, s, o, h in py[6]]
    assert tuple(rs) == (py[0], py[1], py[2], py[3], py[4], py[5], want_wait)


@given(
    toy=st.sampled_from(["ping_pong", "rw_queue", "deadlock", "spin", "poll"]),
    strategy=st.integers(0, 3),
    seed=st.integers(0, 2**64 - 1),
    depth=st.integers(1, 8),
    steps=st.integers(1, 200),
    choices=st.lists(st.integers(0, 255), max_size=40),
)
def test_rust_computes_the_same_interleaving_features(
    toy: str, strategy: int, seed: int, depth: int, steps: int, choices: list[int]
) -> None:
    native = pytest.importorskip("optimized._native")
    py = toy_features(toy, strategy, seed, depth, steps, choices, 60)
    assert native.toy_features(toy, strategy, seed, depth, steps, bytes(choices), 60) == py


def test_explicit_consumes_choices_then_keeps_the_current_task() -> None:
    rt = Runtime()
    order: list[int] = []

    def body(task: Task) -> TaskGen:
        for _ in range(3):
            order.append(task.tid)
            yield "step"

    for i in range(3):
        t = rt.spawn(f"t{i}")
        rt.start(t, body(t))
    rt.policy = ExplicitPolicy([2, 1])
    assert rt.run() == IDLE
    # Two choices (task 2, then index 1 of [0, 1, 2] = task 1), then fewest switches.
    assert order[:2] == [2, 1]
    assert order[2:5] == [1, 1, 0]
    assert rt.chosen[:2] == [2, 1]
    assert len(rt.chosen) == len(rt.choice_log)


def test_replaying_the_choice_log_gives_the_same_run() -> None:
    first = run_toy("rw_queue", 3, seed=12345)
    replay = run_toy("rw_queue", 1, choices=first[3])
    assert replay[:5] == (first[0], first[1], first[2], first[3], first[4])


def test_pct_priorities_and_change_points() -> None:
    pct = PctPolicy(seed=9, depth=4, steps=50, ntasks=5)
    assert sorted(pct.prio) == [4, 5, 6, 7, 8]
    assert sorted(pct.change.values()) == [1, 2, 3]
    assert all(1 <= k <= 50 for k in pct.change)
    # depth 1: no change points, the highest-priority task runs until it blocks.
    assert PctPolicy(seed=9, depth=1, steps=50, ntasks=5).change == {}


def test_pct_runs_the_highest_priority_task() -> None:
    rt = Runtime()
    ran: list[int] = []

    def body(task: Task) -> TaskGen:
        for _ in range(4):
            ran.append(task.tid)
            yield "step"

    for i in range(3):
        t = rt.spawn(f"t{i}")
        rt.start(t, body(t))
    pct = PctPolicy(seed=3, depth=1, steps=10, ntasks=3)
    rt.policy = pct
    rt.run()
    by_prio = sorted(range(3), key=lambda t: -pct.prio[t])
    assert ran == [by_prio[0]] * 4 + [by_prio[1]] * 4 + [by_prio[2]] * 4


def test_deadlock_leaves_a_wait_for_graph() -> None:
    outcome, _, _, _, _, unfinished, wait_for = run_toy("deadlock", 1, choices=[0, 1, 0, 1])
    assert outcome == IDLE
    assert unfinished == [0, 1]
    assert sorted(wait_for) == [
        (0, "mutex_lock:wait", "B", (1,)),
        (1, "mutex_lock:wait", "A", (0,)),
    ]


def test_livelock_after_the_stall_budget() -> None:
    outcome, steps, *_ = run_toy("spin", 3, seed=1, stall_steps=100)
    assert (outcome, steps) == (LIVELOCK, 100)


def test_timed_sleep_lets_another_task_run_first() -> None:
    rt = Runtime()
    ran: list[str] = []

    def sleeper(task: Task) -> TaskGen:
        ran.append("sleep")
        rt.sleep_timed(task)
        yield "schedule_timeout"
        ran.append("woke")

    def other() -> TaskGen:
        ran.append("other")
        yield "other"

    a, b = rt.spawn("sleeper"), rt.spawn("other")
    rt.start(a, sleeper(a))
    rt.start(b, other())
    rt.policy = ExplicitPolicy([])
    assert rt.run() == IDLE
    assert ran == ["sleep", "other", "woke"]


def test_timed_sleep_alone_wakes() -> None:
    rt = Runtime()
    t = rt.spawn("alone")

    def body() -> TaskGen:
        rt.sleep_timed(t)
        yield "schedule_timeout"

    rt.start(t, body())
    assert rt.run() == IDLE
    assert rt.unfinished() == []


def test_serial_policy_drains_daemons_between_operations() -> None:
    rt = Runtime()
    log: list[str] = []
    user, daemon = rt.spawn("user"), rt.spawn("io", daemon=True)
    work: list[int] = []

    def user_body() -> TaskGen:
        for i in range(2):
            yield "op:start"
            rt.op_begin(user)
            work.append(i)
            rt.wake(daemon)
            log.append(f"op{i}")
            yield "op:body"
            rt.op_end(user)

    def daemon_body() -> TaskGen:
        while True:
            while not work:
                rt.block(daemon, ToyMutex(rt, "io"))
                yield "io:idle"
            log.append(f"io{work.pop()}")
            yield "io:done"

    rt.start(user, user_body())
    rt.start(daemon, daemon_body())
    assert rt.run() == IDLE
    # The daemon runs only between operations, never inside one.
    assert log == ["op0", "io0", "op1", "io1"]
    assert user.state != RUNNABLE and daemon.state == BLOCKED
