"""Every contract rule is documented and shown to fire, in each engine that can raise it.

The rule ids of MODEL.md §4.2 are part of a finding's signature. These checks keep three lists
equal: the rules the table documents, the rules each engine's source reports, and the rules a
test shows firing (the reference's in `tests.test_reference_contract` and
`tests.test_reference_rules`, the optimized engine's in the `rules`, `rules_lock` and
`vma_lock` groups of `optimized/tests/`). A check nobody has seen fire may be one that cannot.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# MODEL.md §9, "Rule ids with PER_VMA_LOCK=n": the reference cannot raise these.
PER_VMA_LOCK_ONLY = frozenset(
    {"lock.retry-nowait-vma", "lock.order-vma-mmap", "lock.order-vma-folio", "vma.freed-locked"}
)

RULE_LITERAL = re.compile(r'"((?:lock|vma|pte|folio|swap|migration|devpriv|uffd|fork)\.[a-z_-]+)"')


def model_rules() -> list[str]:
    text = (ROOT / "reference" / "MODEL.md").read_text()
    section = text.split("### 4.2 Rules", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_.-]+)` \|", section, re.MULTILINE)


def literals(paths: list[Path]) -> set[str]:
    return {m for p in paths for m in RULE_LITERAL.findall(p.read_text())}


RULES = model_rules()
REFERENCE_TESTS = [ROOT / "tests" / f"test_reference_{n}.py" for n in ("contract", "rules")]
OPTIMIZED_TESTS = [ROOT / "optimized" / "tests" / f"{n}.rs" for n in ("rules", "rules_lock")]
OPTIMIZED_TESTS.append(ROOT / "optimized" / "tests" / "vma_lock.rs")


def test_the_table_is_read() -> None:
    assert len(RULES) == len(set(RULES)) >= 30
    assert {"lock.handoff", "vma.tree-unlocked", "fork.exclusion"} <= set(RULES)


def test_each_engine_reports_exactly_the_documented_rules() -> None:
    reference = literals(sorted((ROOT / "reference").glob("*.py")))
    optimized = literals(sorted((ROOT / "optimized" / "src").rglob("*.rs")))
    assert optimized == set(RULES)
    assert reference == set(RULES) - PER_VMA_LOCK_ONLY


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_is_shown_to_fire(rule: str) -> None:
    assert rule in literals(OPTIMIZED_TESTS), f"no optimized test shows {rule} firing"
    if rule not in PER_VMA_LOCK_ONLY:
        assert rule in literals(REFERENCE_TESTS), f"no reference test shows {rule} firing"
