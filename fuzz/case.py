"""The vmafuzz case format, version 1: the one definition both engines read.

A *case* is everything one run needs: the kernel profile, the address-space size, the swap
device, a serial **setup** part, 1 to 6 **threads** of operations run concurrently, a serial
**post** part, and the **schedule** that resolves the concurrency. It is mirrored in Rust by
`optimized/src/case.rs`; change both in the same commit and bump `FORMAT_VERSION` (and re-pack
`corpora/`) whenever the byte layout or the meaning of a field changes.

Byte layout (all integers little-endian)::

    off  size  field        canonical range          lenient decoding of any byte
    0    1     magic        0xA5                     ignored
    1    1     version      1                        ignored
    2    1     profile      0 = "6.6"                 b % len(PROFILES)
    3    1     nr_pages     1..=16                   wrap(b, 16)
    4    1     flags        bit0 swap_async,         b & 0b11
                            bit1 uffd_monitor
    5    1     n_threads    1..=6                    wrap(b, 6)
    6    1     strategy     0 serial, 1 explicit,    b % 4
                            2 pct, 3 random
    7    8     seed         u64 (pct, random; else 0)
    15   1     depth        1..=8 (pct; else 0)      wrap(b, 8)
    16   2     pct_steps    1..=65535 (pct; else 0)  max(1, v)
    18   1     n_setup      0..=16                   b % 17
    19   T     n_ops[t]     0..=16, one per thread   b % 17
    19+T 1     n_post       0..=16                   b % 17
    ...  7*N   op records   setup, thread 0..T-1, post
    ...  2     n_choices    0..=4096 (explicit;      min(v, 4096)
                            else 0)
    ...  C     choices      one byte per decision

An **op record** is seven bytes ``kind mm page npages prot value_lo value_hi``; fields a kind
does not use are zero::

    code  kind              mm  page  npages  prot                     value
    0     read              x   x
    1     write             x   x                                      data written
    2     mmap              x   x     x       PROT_READ|PROT_WRITE
                                              |MAP_GROWSDOWN (0..=7)
    3     munmap            x   x     x
    4     mprotect          x   x     x       PROT_READ|PROT_WRITE
                                              (0..=3)
    5     madvise_dontneed  x   x     x
    6     madvise_pageout   x   x     x
    7     migrate           x   x
    8     to_device         x   x
    9     uffd_register     x   x     x
    10    uffd_unregister   x   x     x
    11    uffd_copy         x   x                                      data copied
    12    fork              x
    13    kill                                                         target thread 0..=5

Here ``wrap(b, n)`` is ``b % n``, except that a remainder of 0 gives ``n``: it maps any byte into
``1..=n`` and leaves values already in range alone. Lenient normalisation of a record:
``kind = b % 14``; ``mm = b % 4``; ``page = b % nr_pages``; ``npages = wrap(b, nr_pages)`` (so a
range may run past the end of the address space, which exercises the error paths); ``prot = b % 8`` for mmap and ``b % 4`` for mprotect; ``value`` as
is for write and uffd_copy, ``% 6`` for kill. Unused fields become zero.

Decoding comes in two kinds:

* `decode` is **total**: every byte string is a valid case. Missing bytes read as zero, counts
  shrink to the records actually present, every field is reduced into its range as in the
  table, trailing bytes are ignored. A byte-mutating fuzzer therefore never wastes an input.
* `decode_strict` accepts only canonical bytes (the output of `encode`) and raises
  `CaseFormatError` with a one-line message otherwise. Corpus files and replay tokens use it.

`decode(encode(c)) == c` and `decode_strict(encode(c)) == c` for every case. Cases also have a
readable text form (`format_case` / `parse_case`) for reports, documentation and hand-written
corpus entries; see `parse_case` for its grammar.

Addresses are page numbers. ``mm`` names an address space: 0 is the process the case starts
with, 1..3 are the children of `fork` in the order the forks complete; an operation on an mm
that does not exist (yet) fails with -ESRCH.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass, field

MAGIC = 0xA5
FORMAT_VERSION = 1
PROFILES = ("6.6",)
MAX_PAGES = 16
MAX_THREADS = 6
MAX_MMS = 4
MAX_OPS_PER_PART = 16
MAX_DEPTH = 8
MAX_CHOICES = 4096
OP_RECORD_SIZE = 7
HEADER_SIZE = 19

FLAG_SWAP_ASYNC = 1
FLAG_UFFD_MONITOR = 2

PROT_READ = 1
PROT_WRITE = 2
RW = PROT_READ | PROT_WRITE  # the usual anonymous mapping
MAP_GROWSDOWN = 4


class CaseFormatError(ValueError):
    """Bytes or text that are not a canonical vmafuzz case; the message is one line."""


class OpKind(enum.IntEnum):
    """Operation codes: the byte value in a record, shared with Rust's `OpKind`."""

    READ = 0
    WRITE = 1
    MMAP = 2
    MUNMAP = 3
    MPROTECT = 4
    MADVISE_DONTNEED = 5
    MADVISE_PAGEOUT = 6
    MIGRATE = 7
    TO_DEVICE = 8
    UFFD_REGISTER = 9
    UFFD_UNREGISTER = 10
    UFFD_COPY = 11
    FORK = 12
    KILL = 13


class Strategy(enum.IntEnum):
    """Schedule strategies (see `reference/sched.py` for their exact semantics)."""

    SERIAL = 0
    EXPLICIT = 1
    PCT = 2
    RANDOM = 3


OP_NAMES: tuple[str, ...] = tuple(k.name.lower() for k in OpKind)
STRATEGY_NAMES: tuple[str, ...] = tuple(s.name.lower() for s in Strategy)

_RANGE_KINDS = frozenset(
    {
        OpKind.MMAP,
        OpKind.MUNMAP,
        OpKind.MPROTECT,
        OpKind.MADVISE_DONTNEED,
        OpKind.MADVISE_PAGEOUT,
        OpKind.UFFD_REGISTER,
        OpKind.UFFD_UNREGISTER,
    }
)
_VALUE_KINDS = frozenset({OpKind.WRITE, OpKind.UFFD_COPY})
_PAGE_KINDS = frozenset(OpKind) - {OpKind.FORK, OpKind.KILL}


@dataclass(frozen=True, slots=True)
class Op:
    """One operation. Fields a kind does not use are zero (see the record table above)."""

    kind: OpKind
    mm: int = 0
    page: int = 0
    npages: int = 0
    prot: int = 0
    value: int = 0

    @property
    def is_range(self) -> bool:
        return self.kind in _RANGE_KINDS

    @property
    def target(self) -> int:
        """The thread a `kill` is aimed at."""
        return self.value

    def pages(self) -> range:
        """The pages this operation names (one page, a range, or none)."""
        if self.kind in _RANGE_KINDS:
            return range(self.page, self.page + self.npages)
        if self.kind in _PAGE_KINDS:
            return range(self.page, self.page + 1)
        return range(0)

    def __str__(self) -> str:
        return format_op(self)


@dataclass(frozen=True, slots=True)
class Schedule:
    """How the concurrent part is interleaved: a strategy and its parameters."""

    strategy: Strategy = Strategy.SERIAL
    seed: int = 0
    depth: int = 0
    steps: int = 0
    choices: tuple[int, ...] = ()

    @staticmethod
    def serial() -> Schedule:
        return Schedule(Strategy.SERIAL)

    @staticmethod
    def explicit(choices: tuple[int, ...] | list[int] = ()) -> Schedule:
        return Schedule(Strategy.EXPLICIT, choices=tuple(choices))

    @staticmethod
    def pct(seed: int, depth: int, steps: int) -> Schedule:
        return Schedule(Strategy.PCT, seed=seed, depth=depth, steps=steps)

    @staticmethod
    def random(seed: int) -> Schedule:
        return Schedule(Strategy.RANDOM, seed=seed)


@dataclass(frozen=True, slots=True)
class Case:
    """A whole test case. Build with keyword arguments; `validate()` checks the ranges."""

    threads: tuple[tuple[Op, ...], ...]
    setup: tuple[Op, ...] = ()
    post: tuple[Op, ...] = ()
    nr_pages: int = 8
    swap_async: bool = False
    uffd_monitor: bool = False
    profile: str = "6.6"
    schedule: Schedule = field(default_factory=Schedule)

    def validate(self) -> Case:
        """Raise `CaseFormatError` unless every field is canonical; return self."""
        _check_case(self)
        return self

    def all_ops(self) -> list[tuple[str, int, Op]]:
        """Every op with its part ('setup', 'thread', 'post') and thread index, in case order."""
        out: list[tuple[str, int, Op]] = [("setup", 0, op) for op in self.setup]
        for t, ops in enumerate(self.threads):
            out += [("thread", t, op) for op in ops]
        out += [("post", 0, op) for op in self.post]
        return out

    def op_count(self) -> int:
        return len(self.setup) + sum(len(t) for t in self.threads) + len(self.post)

    def __str__(self) -> str:
        return format_case(self)


# ---------------------------------------------------------------------------------------------
# Binary codec


_OP_LAYOUT = struct.Struct("<BBBBBH")


def encode(case: Case) -> bytes:
    """Canonical bytes of a valid case."""
    _check_case(case)
    sched = case.schedule
    out = bytearray(
        struct.pack(
            "<BBBBBBBQBHB",
            MAGIC,
            FORMAT_VERSION,
            PROFILES.index(case.profile),
            case.nr_pages,
            (FLAG_SWAP_ASYNC if case.swap_async else 0)
            | (FLAG_UFFD_MONITOR if case.uffd_monitor else 0),
            len(case.threads),
            int(sched.strategy),
            sched.seed,
            sched.depth,
            sched.steps,
            len(case.setup),
        )
    )
    out.extend(len(t) for t in case.threads)
    out.append(len(case.post))
    pack = _OP_LAYOUT.pack
    for part in (case.setup, *case.threads, case.post):  # Case.all_ops() order
        for op in part:
            out += pack(op.kind, op.mm, op.page, op.npages, op.prot, op.value)
    out.extend(struct.pack("<H", len(sched.choices)))
    out.extend(sched.choices)
    return bytes(out)


def wrap(b: int, n: int) -> int:
    """`b % n`, with 0 mapped to `n`: any byte into 1..=n, values in range unchanged."""
    return b % n or n


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        p = self.pos
        self.pos = p + 1
        return self.data[p] if p < len(self.data) else 0

    def u16(self) -> int:
        return self.u8() | (self.u8() << 8)

    def u64(self) -> int:
        v = 0
        for i in range(8):
            v |= self.u8() << (8 * i)
        return v

    def remaining(self) -> int:
        return max(0, len(self.data) - self.pos)


def decode(data: bytes) -> Case:
    """Total decoding: any byte string gives a valid case (see the module docstring)."""
    r = _Reader(data)
    r.u8()  # magic: ignored so that mutated headers still decode
    r.u8()  # version: likewise
    profile = PROFILES[r.u8() % len(PROFILES)]
    nr_pages = wrap(r.u8(), MAX_PAGES)
    flags = r.u8()
    n_threads = wrap(r.u8(), MAX_THREADS)
    strategy = Strategy(r.u8() % len(Strategy))
    seed = r.u64()
    depth = wrap(r.u8(), MAX_DEPTH)
    steps = max(1, r.u16())
    counts = [r.u8() % (MAX_OPS_PER_PART + 1) for _ in range(n_threads + 2)]
    # Records that are not all there shrink the parts, last part first.
    budget = r.remaining() // OP_RECORD_SIZE
    fitted = []
    for c in counts:
        take = min(c, budget)
        fitted.append(take)
        budget -= take
    parts = [tuple(_decode_op(r, nr_pages) for _ in range(c)) for c in fitted]
    n_choices = min(r.u16(), MAX_CHOICES, r.remaining())
    choices = tuple(r.u8() for _ in range(n_choices))
    if strategy is Strategy.EXPLICIT:
        sched = Schedule(strategy, choices=choices)
    elif strategy is Strategy.PCT:
        sched = Schedule(strategy, seed=seed, depth=depth, steps=steps)
    elif strategy is Strategy.RANDOM:
        sched = Schedule(strategy, seed=seed)
    else:
        sched = Schedule(strategy)
    return Case(
        threads=tuple(parts[1 : 1 + n_threads]),
        setup=parts[0],
        post=parts[-1],
        nr_pages=nr_pages,
        swap_async=bool(flags & FLAG_SWAP_ASYNC),
        uffd_monitor=bool(flags & FLAG_UFFD_MONITOR),
        profile=profile,
        schedule=sched,
    )


def _decode_op(r: _Reader, nr_pages: int) -> Op:
    kind = OpKind(r.u8() % len(OpKind))
    mm, page, npages, prot, value = r.u8(), r.u8(), r.u8(), r.u8(), r.u16()
    return normalize_op(kind, mm, page, npages, prot, value, nr_pages)


def normalize_op(
    kind: OpKind, mm: int, page: int, npages: int, prot: int, value: int, nr_pages: int
) -> Op:
    """Reduce arbitrary field values into the canonical op of `kind` (lenient decoding)."""
    if kind is OpKind.KILL:
        return Op(kind, value=value % MAX_THREADS)
    mm %= MAX_MMS
    if kind is OpKind.FORK:
        return Op(kind, mm=mm)
    page %= nr_pages
    n = wrap(npages, nr_pages) if kind in _RANGE_KINDS else 0
    if kind is OpKind.MMAP:
        prot %= 8
    elif kind is OpKind.MPROTECT:
        prot %= 4
    else:
        prot = 0
    v = value & 0xFFFF if kind in _VALUE_KINDS else 0
    return Op(kind, mm, page, n, prot, v)


def decode_strict(data: bytes) -> Case:
    """Decode canonical bytes; raise `CaseFormatError` (one line) on anything else."""
    if len(data) < HEADER_SIZE:
        raise CaseFormatError(f"case is truncated: {len(data)} bytes, header needs {HEADER_SIZE}")
    if data[0] != MAGIC:
        raise CaseFormatError(f"not a vmafuzz case: magic byte 0x{data[0]:02x}, want 0x{MAGIC:02x}")
    if data[1] != FORMAT_VERSION:
        raise CaseFormatError(
            f"unknown case format version {data[1]} (this build reads version {FORMAT_VERSION})"
        )
    if data[2] >= len(PROFILES):
        raise CaseFormatError(
            f"unknown kernel profile code {data[2]} (known: {', '.join(PROFILES)})"
        )
    case = decode(data)
    canonical = encode(case)
    if canonical != data:
        where = next(
            (i for i, (a, b) in enumerate(zip(canonical, data, strict=False)) if a != b), None
        )
        if where is None:
            raise CaseFormatError(
                f"case has {len(data)} bytes, its fields describe {len(canonical)}"
            )
        raise CaseFormatError(f"case is not canonical: byte {where} is out of range or unused")
    return case


# ---------------------------------------------------------------------------------------------
# Validation


def _check_case(case: Case) -> None:
    if case.profile not in PROFILES:
        raise CaseFormatError(
            f"unknown kernel profile {case.profile!r} (known: {', '.join(PROFILES)})"
        )
    if not 1 <= case.nr_pages <= MAX_PAGES:
        raise CaseFormatError(f"pages must be 1..{MAX_PAGES}, not {case.nr_pages}")
    if not 1 <= len(case.threads) <= MAX_THREADS:
        raise CaseFormatError(f"a case has 1..{MAX_THREADS} threads, not {len(case.threads)}")
    for name, ops in [
        ("setup", case.setup),
        *[(f"thread {i}", t) for i, t in enumerate(case.threads)],
        ("post", case.post),
    ]:
        if len(ops) > MAX_OPS_PER_PART:
            raise CaseFormatError(f"{name} has {len(ops)} ops, at most {MAX_OPS_PER_PART}")
        for op in ops:
            if not _canonical_op(op, case.nr_pages):
                raise CaseFormatError(f"{name}: op {format_op_raw(op)} is out of range")
    _check_schedule(case.schedule)


_PROT_LIMIT = {OpKind.MMAP: 8, OpKind.MPROTECT: 4}


def _canonical_op(op: Op, nr_pages: int) -> bool:
    """Whether `op` is what `normalize_op` makes of its own fields and its fields are in range
    (page below `nr_pages`, a range of 1..nr_pages pages, a value that fits 16 bits), without
    building an op: every case is validated before it runs."""
    kind = op.kind
    if kind is OpKind.KILL:
        return op.mm == op.page == op.npages == op.prot == 0 and 0 <= op.value < MAX_THREADS
    if not 0 <= op.mm < MAX_MMS:
        return False
    if kind is OpKind.FORK:
        return op.page == op.npages == op.prot == op.value == 0
    if not 0 <= op.page < nr_pages:
        return False
    if not (1 <= op.npages <= nr_pages if kind in _RANGE_KINDS else op.npages == 0):
        return False
    if not 0 <= op.prot < _PROT_LIMIT.get(kind, 1):
        return False
    return 0 <= op.value <= 0xFFFF if kind in _VALUE_KINDS else op.value == 0


def _check_schedule(s: Schedule) -> None:
    want_seed = s.strategy in (Strategy.PCT, Strategy.RANDOM)
    if not 0 <= s.seed < 1 << 64 or (s.seed and not want_seed):
        raise CaseFormatError(f"schedule {s.strategy.name.lower()}: bad seed {s.seed}")
    if s.strategy is Strategy.PCT:
        if not 1 <= s.depth <= MAX_DEPTH or not 1 <= s.steps <= 0xFFFF:
            raise CaseFormatError(f"pct needs depth 1..{MAX_DEPTH} and steps 1..65535")
    elif s.depth or s.steps:
        raise CaseFormatError(f"schedule {s.strategy.name.lower()} takes no depth or steps")
    if s.choices and s.strategy is not Strategy.EXPLICIT:
        raise CaseFormatError(f"schedule {s.strategy.name.lower()} takes no explicit choices")
    if len(s.choices) > MAX_CHOICES or any(not 0 <= c <= 255 for c in s.choices):
        raise CaseFormatError(f"explicit choices must be at most {MAX_CHOICES} bytes")


# ---------------------------------------------------------------------------------------------
# Text form

PROT_NAMES = ("none", "r", "w", "rw")


def format_prot(prot: int) -> str:
    s = PROT_NAMES[prot & 3]
    return s + ",growsdown" if prot & MAP_GROWSDOWN else s


def format_op_raw(op: Op) -> str:
    return f"{op.kind.name.lower()}(mm={op.mm}, page={op.page}, npages={op.npages}, prot={op.prot}, value={op.value})"


def format_op(op: Op) -> str:
    """One op in the text form, e.g. ``mmap mm0 2+4 rw`` or ``write mm1 3 0x1f``."""
    k = op.kind
    name = k.name.lower()
    if k is OpKind.KILL:
        return f"kill t{op.value}"
    if k is OpKind.FORK:
        return f"fork mm{op.mm}"
    where = f"{op.page}+{op.npages}" if k in _RANGE_KINDS else f"{op.page}"
    text = f"{name} mm{op.mm} {where}"
    if k in (OpKind.MMAP, OpKind.MPROTECT):
        text += " " + format_prot(op.prot)
    if k in _VALUE_KINDS:
        text += f" 0x{op.value:x}"
    return text


def format_schedule(s: Schedule) -> str:
    if s.strategy is Strategy.PCT:
        return f"schedule pct seed=0x{s.seed:x} depth={s.depth} steps={s.steps}"
    if s.strategy is Strategy.RANDOM:
        return f"schedule random seed=0x{s.seed:x}"
    if s.strategy is Strategy.EXPLICIT:
        return " ".join(["schedule explicit", *map(str, s.choices)])
    return "schedule serial"


def format_case(case: Case) -> str:
    """The readable text form; `parse_case(format_case(c)) == c`."""
    lines = [
        f"# vmafuzz case, format {FORMAT_VERSION}",
        f"profile {case.profile}",
        f"pages {case.nr_pages}",
        f"swap {'async' if case.swap_async else 'sync'}",
        f"monitor {'on' if case.uffd_monitor else 'off'}",
    ]
    parts = [
        ("setup:", case.setup),
        *[(f"thread {i}:", t) for i, t in enumerate(case.threads)],
        ("post:", case.post),
    ]
    for title, ops in parts:
        lines.append(title)
        lines.extend(f"  {format_op(op)}" for op in ops)
    lines.append(format_schedule(case.schedule))
    return "\n".join(lines) + "\n"


def _parse_int(tok: str, what: str) -> int:
    try:
        return int(tok, 0)
    except ValueError:
        raise CaseFormatError(f"{what}: {tok!r} is not a number") from None


def _parse_prot(tok: str) -> int:
    names = tok.split(",")
    if names[0] not in PROT_NAMES or any(n != "growsdown" for n in names[1:]):
        raise CaseFormatError(f"bad protection {tok!r} (none, r, w, rw, optionally ,growsdown)")
    return PROT_NAMES.index(names[0]) | (MAP_GROWSDOWN if len(names) > 1 else 0)


def _parse_mm(tok: str) -> int:
    if not tok.startswith("mm"):
        raise CaseFormatError(f"expected an address space like mm0, got {tok!r}")
    return _parse_int(tok[2:], "mm")


def parse_op(text: str) -> Op:
    """Parse one op of the text form (the inverse of `format_op`)."""
    toks = text.split()
    if not toks:
        raise CaseFormatError("empty op")
    try:
        kind = OpKind[toks[0].upper()]
    except KeyError:
        raise CaseFormatError(f"unknown op {toks[0]!r} (known: {', '.join(OP_NAMES)})") from None
    want = 2
    if kind is OpKind.KILL:
        if len(toks) != 2 or not toks[1].startswith("t"):
            raise CaseFormatError("kill takes a thread, e.g. 'kill t1'")
        return Op(kind, value=_parse_int(toks[1][1:], "thread"))
    if kind is OpKind.FORK:
        if len(toks) != 2:
            raise CaseFormatError("fork takes an address space, e.g. 'fork mm0'")
        return Op(kind, mm=_parse_mm(toks[1]))
    want = 3 + (kind in (OpKind.MMAP, OpKind.MPROTECT)) + (kind in _VALUE_KINDS)
    if len(toks) != want:
        raise CaseFormatError(f"{toks[0]} takes {want - 1} arguments, got {len(toks) - 1}")
    mm = _parse_mm(toks[1])
    if kind in _RANGE_KINDS:
        first, sep, count = toks[2].partition("+")
        if not sep:
            raise CaseFormatError(f"{toks[0]} takes a range like 2+4, got {toks[2]!r}")
        page, npages = _parse_int(first, "page"), _parse_int(count, "npages")
    else:
        page, npages = _parse_int(toks[2], "page"), 0
    prot = _parse_prot(toks[3]) if kind in (OpKind.MMAP, OpKind.MPROTECT) else 0
    value = _parse_int(toks[-1], "value") if kind in _VALUE_KINDS else 0
    return Op(kind, mm, page, npages, prot, value)


def _parse_schedule(toks: list[str]) -> Schedule:
    if not toks or toks[0] not in STRATEGY_NAMES:
        raise CaseFormatError(f"schedule must be one of {', '.join(STRATEGY_NAMES)}")
    strategy = Strategy[toks[0].upper()]
    if strategy is Strategy.EXPLICIT:
        return Schedule.explicit(tuple(_parse_int(t, "choice") for t in toks[1:]))
    params: dict[str, int] = {}
    for tok in toks[1:]:
        key, sep, val = tok.partition("=")
        if not sep or key not in ("seed", "depth", "steps"):
            raise CaseFormatError(f"bad schedule parameter {tok!r}")
        params[key] = _parse_int(val, key)
    if strategy is Strategy.PCT:
        return Schedule.pct(params.get("seed", 0), params.get("depth", 1), params.get("steps", 1))
    if strategy is Strategy.RANDOM:
        return Schedule.random(params.get("seed", 0))
    return Schedule.serial()


_FORMAT_STAMP = re.compile(r"\s*#\s*vmafuzz case, format (\d+)\s*$")


def parse_case(text: str) -> Case:
    """Parse the text form. Grammar, one item per line (``#`` starts a comment)::

        profile 6.6 | pages N | swap sync|async | monitor on|off     (header, any order)
        setup: | thread N: | post:                                   (section headers)
          <op>                                                       (ops, see format_op)
        schedule serial | explicit C... | pct seed=S depth=D steps=K | random seed=S

    Threads must be numbered 0, 1, ... in order. The comment ``# vmafuzz case, format N``
    that `format_case` writes is read: a file of another format version is refused. Raises
    `CaseFormatError` naming the line.
    """
    header: dict[str, str] = {}
    sections: list[tuple[str, list[Op]]] = []
    schedule = Schedule.serial()
    for lineno, raw in enumerate(text.splitlines(), 1):
        stamp = _FORMAT_STAMP.match(raw)
        if stamp and int(stamp.group(1)) != FORMAT_VERSION:
            raise CaseFormatError(
                f"line {lineno}: case file of format version {stamp.group(1)} "
                f"(this build reads version {FORMAT_VERSION})"
            )
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            schedule = _parse_line(line, header, sections, schedule)
        except CaseFormatError as e:
            raise CaseFormatError(f"line {lineno}: {e}") from None
    return _assemble(header, sections, schedule)


def _parse_line(
    line: str, header: dict[str, str], sections: list[tuple[str, list[Op]]], schedule: Schedule
) -> Schedule:
    toks = line.split()
    if toks[0] in ("profile", "pages", "swap", "monitor"):
        if len(toks) != 2:
            raise CaseFormatError(f"{toks[0]} takes one value")
        header[toks[0]] = toks[1]
    elif line.endswith(":"):
        sections.append((line[:-1].strip(), []))
    elif toks[0] == "schedule":
        return _parse_schedule(toks[1:])
    else:
        if not sections:
            raise CaseFormatError("op outside a section (setup:, thread N:, post:)")
        sections[-1][1].append(parse_op(line))
    return schedule


def _assemble(
    header: dict[str, str], sections: list[tuple[str, list[Op]]], schedule: Schedule
) -> Case:
    setup: tuple[Op, ...] = ()
    post: tuple[Op, ...] = ()
    threads: list[tuple[Op, ...]] = []
    for name, ops in sections:
        if name == "setup":
            setup = tuple(ops)
        elif name == "post":
            post = tuple(ops)
        elif name == f"thread {len(threads)}":
            threads.append(tuple(ops))
        else:
            raise CaseFormatError(f"unexpected section {name!r} (want thread {len(threads)})")
    swap = header.get("swap", "sync")
    monitor = header.get("monitor", "off")
    if swap not in ("sync", "async") or monitor not in ("on", "off"):
        raise CaseFormatError("swap is sync|async and monitor is on|off")
    case = Case(
        threads=tuple(threads),
        setup=setup,
        post=post,
        nr_pages=_parse_int(header.get("pages", "8"), "pages"),
        swap_async=swap == "async",
        uffd_monitor=monitor == "on",
        profile=header.get("profile", "6.6"),
        schedule=schedule,
    )
    return case.validate()
