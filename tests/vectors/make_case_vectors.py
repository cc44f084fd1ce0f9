"""Regenerate `case_vectors.json` from the Python codec (the normative side).

Run from the repository root: ``python -m tests.vectors.make_case_vectors``. Each vector is an
input byte string and what `fuzz.case` makes of it: the canonical bytes (``encode(decode(x))``),
the text form of the decoded case, and the `decode_strict` error message (``null`` when the input
is canonical). `tests/test_case_format.py` checks both engines against every entry, and
`optimized/tests/codec.rs` checks the Rust codec. The output is deterministic: regenerating
without a format change must leave the file byte for byte the same.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

from fuzz.case import (
    FORMAT_VERSION,
    Case,
    CaseFormatError,
    Op,
    OpKind,
    Schedule,
    decode,
    decode_strict,
    encode,
    format_case,
)

RACE = Case(
    threads=((Op(OpKind.WRITE, 0, 2, value=0x1F),), (Op(OpKind.MUNMAP, 0, 2, 1),)),
    setup=(Op(OpKind.MMAP, 0, 0, 4, 3),),
    post=(Op(OpKind.READ, 0, 2),),
    nr_pages=4,
    schedule=Schedule.explicit((1, 0)),
)
SWAP = Case(
    threads=((Op(OpKind.READ, 0, 1),), (Op(OpKind.MADVISE_DONTNEED, 0, 0, 2),)),
    setup=(Op(OpKind.MMAP, 0, 0, 2, 3), Op(OpKind.WRITE, 0, 1, value=7)),
    post=(Op(OpKind.MADVISE_PAGEOUT, 0, 1, 1),),
    nr_pages=2,
    swap_async=True,
    schedule=Schedule.pct(0xDEADBEEF, 3, 40),
)
UFFD = Case(
    threads=((Op(OpKind.READ, 0, 5),), (Op(OpKind.UFFD_COPY, 0, 5, value=0xFFFF),)),
    setup=(Op(OpKind.MMAP, 0, 4, 4, 7), Op(OpKind.UFFD_REGISTER, 0, 4, 4)),
    nr_pages=16,
    uffd_monitor=True,
    schedule=Schedule.random(2**64 - 1),
)
FORK = Case(
    threads=(
        (Op(OpKind.FORK, 0),),
        (Op(OpKind.WRITE, 0, 0, value=1),),
        (Op(OpKind.KILL, value=5),),
    ),
    setup=(Op(OpKind.MMAP, 0, 0, 1, 3),),
    post=(Op(OpKind.READ, 1, 0), Op(OpKind.MIGRATE, 0, 0), Op(OpKind.TO_DEVICE, 3, 0)),
    nr_pages=1,
)


def noise(label: str, n: int) -> bytes:
    """`n` deterministic pseudo-random bytes named by `label`."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return out[:n]


def patched(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([value]) + data[at + 1 :]


def header(
    nr_pages: int = 4, n_threads: int = 1, strategy: int = 0, counts: tuple[int, ...] = (0, 1, 0)
) -> bytes:
    """A hand-made header: serial-style zero schedule fields, the given part counts."""
    return bytes([0xA5, 1, 0, nr_pages, 0, n_threads, strategy, *[0] * 8, 0, 0, 0, *counts])


def record(kind: int, mm: int, page: int, npages: int, prot: int, value: int) -> bytes:
    return bytes([kind, mm, page, npages, prot, value & 0xFF, value >> 8])


def canonical_inputs() -> list[tuple[str, bytes]]:
    out = [
        (name, encode(case))
        for name, case in [("race", RACE), ("swap", SWAP), ("uffd", UFFD), ("fork", FORK)]
    ]
    big = Case(
        threads=tuple(tuple(Op(OpKind.READ, t % 4, i) for i in range(16)) for t in range(6)),
        setup=tuple(Op(OpKind.MMAP, 0, i, 1, i % 8) for i in range(16)),
        post=tuple(Op(OpKind.WRITE, 0, i, value=i * 4099) for i in range(16)),
        nr_pages=16,
        schedule=Schedule.explicit(tuple(range(256)) * 16),
    )
    out.append(("largest", encode(big)))
    out.append(("empty_decoded", encode(decode(b""))))
    return out


def header_inputs(race: bytes) -> list[tuple[str, bytes]]:
    return [
        ("empty", b""),
        ("one_byte", b"\xa5"),
        ("header_minus_one", race[:18]),
        ("header_only", race[:19]),
        ("bad_magic", patched(race, 0, 0x00)),
        ("bad_version", patched(race, 1, 2)),
        ("version_zero", patched(race, 1, 0)),
        ("profile_1", patched(race, 2, 1)),
        ("profile_255", patched(race, 2, 255)),
        ("nr_pages_0", patched(race, 3, 0)),
        ("nr_pages_17", patched(race, 3, 17)),
        ("flags_ff", patched(race, 4, 0xFF)),
        ("threads_0", patched(race, 5, 0)),
        ("threads_7", patched(race, 5, 7)),
        ("strategy_4", patched(race, 6, 4)),
        ("strategy_255", patched(race, 6, 255)),
        ("seed_under_explicit", patched(race, 7, 1)),
        ("depth_under_explicit", patched(race, 15, 3)),
        ("steps_under_explicit", patched(race, 16, 9)),
    ]


def body_inputs(race: bytes) -> list[tuple[str, bytes]]:
    all_kinds = b"".join(record(k, 0xFF, 0xFF, 0xFF, 0xFF, 0xFFFF) for k in range(14))
    wrapped_kinds = b"".join(record(k, 7, 33, 0, 9, 0x1234) for k in range(14, 28))
    return [
        ("trailing_byte", race + b"\x00"),
        ("trailing_garbage", race + noise("trailing", 9)),
        ("missing_last_byte", race[:-1]),
        ("missing_choice_count", race[:-4]),
        ("setup_count_17", patched(race, 18, 17)),
        ("setup_count_255", patched(race, 18, 255)),
        ("count_exceeds_records", patched(race, 19, 16)),
        ("half_record", race[:22] + race[22:25]),
        ("all_kinds_raw_ff", header(counts=(0, 14, 0)) + all_kinds + b"\x00\x00"),
        ("kinds_14_to_27", header(nr_pages=5, counts=(0, 14, 0)) + wrapped_kinds + b"\x00\x00"),
        ("kill_target_9", header(counts=(0, 1, 0)) + record(13, 1, 2, 3, 4, 9) + b"\x00\x00"),
        ("fork_mm_5", header(counts=(0, 1, 0)) + record(12, 5, 2, 3, 4, 9) + b"\x00\x00"),
        ("choices_4097", header(strategy=1, counts=(0, 0, 0)) + b"\x01\x10" + bytes(4097)),
        ("choices_short", header(strategy=1, counts=(0, 0, 0)) + b"\x08\x00\x01\x02"),
        ("choices_under_serial", header(counts=(0, 0, 0)) + b"\x02\x00\x01\x02"),
        ("pct_depth_0_steps_0", header(strategy=2, counts=(0, 0, 0)) + b"\x00\x00"),
    ]


def noise_inputs() -> list[tuple[str, bytes]]:
    out = [(f"noise_{n}", noise(f"noise{n}", n)) for n in (3, 19, 20, 40, 64, 100, 257, 600)]
    out += [(f"noise_magic_{n}", b"\xa5\x01\x00" + noise(f"magic{n}", n)) for n in (30, 120)]
    out.append(("all_ff_64", b"\xff" * 64))
    out.append(("all_zero_64", bytes(64)))
    return out


def vector(name: str, data: bytes) -> dict[str, object]:
    case = decode(data)
    try:
        decode_strict(data)
        error = None
    except CaseFormatError as e:
        error = str(e)
    return {
        "name": name,
        "input_hex": data.hex(),
        "canonical_hex": encode(case).hex(),
        "text": format_case(case),
        "strict_error": error,
    }


def main() -> None:
    race = encode(RACE)
    inputs = canonical_inputs() + header_inputs(race) + body_inputs(race) + noise_inputs()
    names = [name for name, _ in inputs]
    assert len(set(names)) == len(names), "vector names must be unique"
    data = {
        "format_version": FORMAT_VERSION,
        "vectors": [vector(name, raw) for name, raw in inputs],
    }
    path = pathlib.Path(__file__).with_name("case_vectors.json")
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
