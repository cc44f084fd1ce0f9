"""argparse ``type=`` converters shared by the command lines: a bad value becomes argparse's
one-line usage error, never a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _number(text: str, convert: Callable[[str], float], what: str) -> float:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def _integer(text: str) -> int:
    """Decimal (leading zeros allowed), or 0x.., 0o.., 0b.. as Python writes them."""
    return int(_number(text, lambda t: int(t, 10 if t.lstrip("+-").isdigit() else 0), "an integer"))


def _check(ok: bool, rule: str, text: str) -> None:
    if not ok:
        raise argparse.ArgumentTypeError(f"must be {rule}, not {text}")


def positive_float(text: str) -> float:
    value = _number(text, float, "a number")
    _check(value > 0, "positive", text)
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = _number(text, float, "a number")
    _check(0 < value <= 1, "in (0, 1]", text)
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text, float, "a number")
    _check(0 <= value <= 1, "in [0, 1]", text)
    return value


def positive_int(text: str) -> int:
    value = _integer(text)
    _check(value >= 1, "at least 1", text)
    return value


def nonnegative_int(text: str) -> int:
    value = _integer(text)
    _check(value >= 0, "0 or more", text)
    return value
