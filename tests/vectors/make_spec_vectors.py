"""Regenerate `spec_vectors.json` from `fuzz.spec` and `fuzz.linearize` (the normative side).

Run from the repository root: ``python -m tests.vectors.make_spec_vectors``. The vectors hold
what the Rust mirror of the linearizability checker (``optimized/src/oracle``) must compute
without Python, as `optimized/tests/oracle.rs` checks:

* ``states``: page states (`fuzz.spec.State`: per mm ``null`` or ``[mapped, prot, uffd,
  populated, value]``), reachable ones and a few hand-picked (a detached PTE, a uffd hole);
* ``ops``: ops as ``[kind, mm, page, npages, prot, value]``;
* ``transitions``: ``[state, op, result, successors]`` (`spec.successors`; indices into
  ``states``, which also holds every successor), for the natural result and a few others;
* ``maybe``: ``[state, op, natural_result, maybe_successors, fault, detach, weak_detach,
  grow]``, the last four the `spec.phase_successors` of each phase;
* ``records``: whole records (`fuzz.bench.linearize`'s spec-generated histories, each also
  corrupted, perturbed, with stack growths and a tiny budget) with `check_record`'s verdict:
  ``{"nr_pages", "ops": [[index, op, invoke, response, result]], "growths": [[step, mm, start,
  end, prot, uffd]], "image": per page a state or null, "budget", "verdict": [status, page,
  nodes]}``.

`tests/test_linearize_native.py` checks that the file is what this script writes; the output is
deterministic.
"""

from __future__ import annotations

import json
import pathlib
import random
from dataclasses import replace
from typing import Any

from fuzz import spec
from fuzz.bench.linearize import corrupt, random_timing, simulate
from fuzz.bench.linearize import random_case as spec_case
from fuzz.case import Case, Op, OpKind, normalize_op
from fuzz.linearize import FAIL, OK, check_record
from fuzz.record import (
    RES_HUNG,
    RES_KILLED,
    RES_NOT_RUN,
    RES_SIGBUS,
    RES_SIGSEGV,
    RunRecord,
    StackGrowth,
)
from fuzz.spec import State

PATH = pathlib.Path(__file__).with_name("spec_vectors.json")
RESULTS = (
    0, 1, 2, 3, 5, 9, RES_SIGSEGV, RES_SIGBUS, RES_KILLED, RES_HUNG, RES_NOT_RUN,
    spec.ESRCH, spec.ENOMEM, spec.EINVAL, spec.EFAULT, spec.ENOENT, spec.EBUSY, spec.EACCES,
    spec.EEXIST, spec.EAGAIN,
)  # fmt: skip
HAND_PICKED: list[State] = [
    spec.INITIAL,
    ((False, 0, False, True, 5), None, None, None),  # detached, the PTE still there
    ((False, 0, False, True, 0), (True, 3, False, True, 7), None, None),
    ((True, 3, True, False, 0), None, None, None),  # a uffd hole
    ((True, 3, True, True, 0), (True, 3, False, False, 0), None, None),
    ((True, 3, False, True, 0), None, None, None),  # the zero page
    ((True, 0, False, True, 4), None, None, None),
    ((True, 1, False, False, 0), (True, 1, False, True, 3), (True, 2, False, True, 0), None),
    ((True, 3, False, True, 8), (True, 3, False, True, 8), (False, 0, False, False, 0), None),
    tuple((True, 3, False, True, 1) for _ in range(4)),
]


def random_op(rng: random.Random, nr_pages: int) -> Op:
    kind = OpKind(rng.randrange(len(OpKind)))
    mm = rng.choice((0, 0, 0, 1, 2))
    return normalize_op(kind, mm, rng.randrange(nr_pages), 1, rng.randrange(8), 9, nr_pages)


def make_states(rng: random.Random) -> list[State]:
    found = dict.fromkeys(HAND_PICKED)
    while len(found) < 36:
        mem = spec.initial_memory(2)
        for _ in range(rng.randrange(10)):
            mem = spec.execute(mem, random_op(rng, 2))[1]
        found.setdefault(mem[rng.randrange(2)])
    return list(found)


def make_ops() -> list[Op]:
    out = [Op(k, mm) for k in (OpKind.READ, OpKind.MIGRATE, OpKind.TO_DEVICE) for mm in (0, 1)]
    out += [Op(k, 0, 0, value=v) for k in (OpKind.WRITE, OpKind.UFFD_COPY) for v in (0, 9)]
    out += [Op(OpKind.MMAP, 0, p, 1, prot) for p in (0, 1) for prot in (0, 3, 5)]
    out += [Op(OpKind.MPROTECT, mm, 0, 2, prot) for mm in (0, 1) for prot in (0, 1, 3)]
    out += [Op(k, 0, 0, 1) for k in (OpKind.MUNMAP, OpKind.MADVISE_DONTNEED)]
    out += [Op(k, 0, 0, 1) for k in (OpKind.MADVISE_PAGEOUT, OpKind.UFFD_REGISTER)]
    out += [Op(OpKind.UFFD_UNREGISTER, 1, 0, 1), Op(OpKind.FORK, 0), Op(OpKind.FORK, 1)]
    return out


def op_json(op: Op) -> list[int]:
    return [int(op.kind), op.mm, op.page, op.npages, op.prot, op.value]


def state_json(s: State | None) -> Any:
    return None if s is None else [None if pg is None else list(pg) for pg in s]


def record_json(case: Case, rec: RunRecord, budget: int) -> dict[str, Any]:
    res = check_record(case, rec, budget=budget, explain=False, native=False)
    image = [spec.image_state(rec.image, p) for p in range(case.nr_pages)] if rec.image else None
    return {
        "nr_pages": case.nr_pages,
        "ops": [[o.index, op_json(o.op), o.invoke, o.response, o.result] for o in rec.ops],
        "growths": [[g.step, g.mm, g.start, g.end, g.prot, int(g.uffd)] for g in rec.growths],
        "image": None if image is None else [state_json(s) for s in image],
        "budget": budget,
        "verdict": [res.status, res.page, res.nodes],
    }


def make_records(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for k in range(16):
        case = spec_case(rng, threads=3, per_thread=5, pages=3)
        good = simulate(case, random_timing(rng, case))
        out.append(record_json(case, good, 1_000_000))
        bad = corrupt(good) or good
        out.append(record_json(case, bad, 1_000_000))
        i = rng.randrange(len(good.ops))
        o = good.ops[i]
        changed = o._replace(result=rng.choice(RESULTS), response=rng.choice((-1, o.response)))
        odd = replace(good, ops=(*good.ops[:i], changed, *good.ops[i + 1 :]))
        if k % 3 == 0:
            grow = StackGrowth(rng.randrange(40), 0, 0, 1, 3, 3, bool(k % 2))
            odd = replace(odd, growths=(grow,))
        out.append(record_json(case, odd, 1_000_000))
        out.append(record_json(case, good, rng.choice((0, 2, 7))))
    verdicts = {r["verdict"][0] for r in out}
    assert {OK, FAIL} <= verdicts, verdicts
    return out


def vectors() -> dict[str, Any]:
    rng = random.Random(20240601)
    states = make_states(rng)
    ids = {s: i for i, s in enumerate(states)}

    def sid(s: State) -> int:
        if s not in ids:
            ids[s] = len(states)
            states.append(s)
        return ids[s]

    ops = make_ops()
    transitions, maybe = [], []
    for si in range(len(states)):
        s = states[si]
        for oi, op in enumerate(ops):
            natural = spec.natural_result(s, op)
            results = dict.fromkeys([natural, op.page, *rng.sample(RESULTS, 3)])
            for r in results:
                transitions.append([si, oi, r, [sid(n) for n in spec.successors(s, op, r)]])
            phases = [
                spec.phase_successors(s, op, spec.FAULT, False),
                spec.phase_successors(s, op, spec.DETACH, False),
                spec.phase_successors(s, op, spec.DETACH, True),
                spec.phase_successors(s, op, spec.GROW, False),
            ]
            succs = [spec.maybe_successors(s, op), *phases]
            maybe.append([si, oi, natural, *([sid(n) for n in ns] for ns in succs)])
    return {
        "states": [state_json(s) for s in states],
        "ops": [op_json(op) for op in ops],
        "transitions": transitions,
        "maybe": maybe,
        "records": make_records(rng),
    }


def dumps(data: dict[str, Any]) -> str:
    """One JSON line per entry, so that a diff shows which entries changed."""
    lines = ["{"]
    for n, (key, items) in enumerate(data.items()):
        lines.append(f' "{key}": [')
        lines += [
            "  " + json.dumps(x, separators=(",", ":")) + ("," if i + 1 < len(items) else "")
            for i, x in enumerate(items)
        ]
        lines.append(" ]" + ("," if n + 1 < len(data) else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    PATH.write_text(dumps(vectors()))


if __name__ == "__main__":
    main()
