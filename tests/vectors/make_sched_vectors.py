"""Regenerate `sched_vectors.json` from the Python scheduler (the normative side).

Run from the repository root: ``python tests/vectors/make_sched_vectors.py``. The Rust
integration test `optimized/tests/sched.rs` checks every entry against `sched::toys`.
"""

from __future__ import annotations

import json
import pathlib

from reference.sched import SplitMix64, run_toy, toy_features

SEEDS = (0, 1, 7, 0xDEADBEEF, 2**64 - 1)
STRATEGIES = (
    # (strategy, seed, depth, steps, choices)
    (0, 0, 0, 0, ()),
    (1, 0, 0, 0, ()),
    (1, 0, 0, 0, (1, 0, 2, 1, 1, 3, 0, 255, 7)),
    (3, 7, 0, 0, ()),
    (3, 0xDEADBEEF, 0, 0, ()),
    (2, 1, 1, 10, ()),
    (2, 7, 3, 20, ()),
    (2, 99, 4, 3, ()),
    (2, 2**64 - 1, 8, 40, ()),
)


def splitmix_vectors() -> list[dict[str, object]]:
    out = []
    for seed in SEEDS:
        rng = SplitMix64(seed)
        outputs = [f"{rng.next_u64():016x}" for _ in range(4)]
        below = [[n, rng.below(n)] for n in (1, 2, 3, 6, 1000, 2**32)]
        out.append({"seed": f"{seed:x}", "outputs": outputs, "below": below})
    return out


def toy_vectors() -> list[dict[str, object]]:
    out = []
    for toy in ("ping_pong", "rw_queue", "deadlock", "spin", "poll"):
        for strategy, seed, depth, steps, choices in STRATEGIES:
            stall = 60
            res = run_toy(toy, strategy, seed, depth, steps, choices, stall)
            outcome, nsteps, chosen, choice_log, log, unfinished, wait_for = res
            out.append(
                {
                    "toy": toy,
                    "strategy": strategy,
                    "seed": f"{seed:x}",
                    "depth": depth,
                    "steps": steps,
                    "choices": list(choices),
                    "stall": stall,
                    "outcome": outcome,
                    "nsteps": nsteps,
                    "chosen": chosen,
                    "choice_log": choice_log,
                    "log": log,
                    "unfinished": unfinished,
                    "wait_for": [[t, site, obj, list(h)] for t, site, obj, h in wait_for],
                    "features": toy_features(toy, strategy, seed, depth, steps, choices, stall),
                }
            )
    return out


def main() -> None:
    path = pathlib.Path(__file__).with_name("sched_vectors.json")
    data = {"splitmix64": splitmix_vectors(), "toys": toy_vectors()}
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
