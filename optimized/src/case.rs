//! The vmafuzz case format, version 1: the Rust mirror of `fuzz/case.py`.
//!
//! `fuzz/case.py` is normative: its module docstring holds the byte layout, the op-record table
//! and the lenient normalisation rules, and this file follows it line for line. It mirrors the
//! binary codec only (constants, op codes, [`decode`], [`decode_strict`], [`encode`]); the text
//! form lives in Python alone.
//!
//! **Change both in the same commit.** Bump [`FORMAT_VERSION`] whenever the byte layout or the
//! meaning of a field changes, regenerate `tests/vectors/case_vectors.json` with
//! `tests/vectors/make_case_vectors.py`, and re-pack `corpora/`. The shared vectors are checked
//! by `optimized/tests/codec.rs` here and by `tests/test_case_format.py` in Python.

use std::fmt;

pub const MAGIC: u8 = 0xA5;
pub const FORMAT_VERSION: u8 = 1;
pub const PROFILES: [&str; 1] = ["6.6"];
pub const MAX_PAGES: u8 = 16;
pub const MAX_THREADS: u8 = 6;
pub const MAX_MMS: u8 = 4;
pub const MAX_OPS_PER_PART: u8 = 16;
pub const MAX_DEPTH: u8 = 8;
pub const MAX_CHOICES: usize = 4096;
pub const OP_RECORD_SIZE: usize = 7;
pub const HEADER_SIZE: usize = 19;

pub const FLAG_SWAP_ASYNC: u8 = 1;
pub const FLAG_UFFD_MONITOR: u8 = 2;

pub const PROT_READ: u8 = 1;
pub const PROT_WRITE: u8 = 2;
pub const MAP_GROWSDOWN: u8 = 4;

/// Operation codes: the byte value in a record, shared with Python's `OpKind`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Read = 0,
    Write = 1,
    Mmap = 2,
    Munmap = 3,
    Mprotect = 4,
    MadviseDontneed = 5,
    MadvisePageout = 6,
    Migrate = 7,
    ToDevice = 8,
    UffdRegister = 9,
    UffdUnregister = 10,
    UffdCopy = 11,
    Fork = 12,
    Kill = 13,
}

/// The op names, indexed by code (Python's `OP_NAMES`).
pub const OP_NAMES: [&str; 14] = [
    "read",
    "write",
    "mmap",
    "munmap",
    "mprotect",
    "madvise_dontneed",
    "madvise_pageout",
    "migrate",
    "to_device",
    "uffd_register",
    "uffd_unregister",
    "uffd_copy",
    "fork",
    "kill",
];

impl OpKind {
    /// Every kind, indexed by code.
    pub const ALL: [OpKind; 14] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::Mmap,
        OpKind::Munmap,
        OpKind::Mprotect,
        OpKind::MadviseDontneed,
        OpKind::MadvisePageout,
        OpKind::Migrate,
        OpKind::ToDevice,
        OpKind::UffdRegister,
        OpKind::UffdUnregister,
        OpKind::UffdCopy,
        OpKind::Fork,
        OpKind::Kill,
    ];

    pub const fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<OpKind> {
        OpKind::ALL.get(usize::from(code)).copied()
    }

    pub const fn name(self) -> &'static str {
        OP_NAMES[self as usize]
    }

    /// Kinds that name a range of pages (`npages` is used).
    pub const fn is_range(self) -> bool {
        matches!(
            self,
            OpKind::Mmap
                | OpKind::Munmap
                | OpKind::Mprotect
                | OpKind::MadviseDontneed
                | OpKind::MadvisePageout
                | OpKind::UffdRegister
                | OpKind::UffdUnregister
        )
    }

    /// Kinds that carry data in `value`.
    pub const fn has_value(self) -> bool {
        matches!(self, OpKind::Write | OpKind::UffdCopy)
    }
}

/// Schedule strategies (see `reference/sched.py` for their exact semantics).
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    #[default]
    Serial = 0,
    Explicit = 1,
    Pct = 2,
    Random = 3,
}

pub const STRATEGY_NAMES: [&str; 4] = ["serial", "explicit", "pct", "random"];

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Serial,
        Strategy::Explicit,
        Strategy::Pct,
        Strategy::Random,
    ];

    pub const fn code(self) -> u8 {
        self as u8
    }

    pub const fn name(self) -> &'static str {
        STRATEGY_NAMES[self as usize]
    }
}

/// One operation. Fields a kind does not use are zero (see the record table in `fuzz/case.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    pub kind: OpKind,
    pub mm: u8,
    pub page: u8,
    pub npages: u8,
    pub prot: u8,
    pub value: u16,
}

impl Op {
    /// An op of `kind` with every field zero.
    pub const fn new(kind: OpKind) -> Op {
        Op {
            kind,
            mm: 0,
            page: 0,
            npages: 0,
            prot: 0,
            value: 0,
        }
    }

    /// The thread a `kill` is aimed at.
    pub const fn target(&self) -> u16 {
        self.value
    }

    /// Reduce arbitrary field values into the canonical op (Python's `normalize_op`).
    #[must_use]
    pub fn normalize(self, nr_pages: u8) -> Op {
        let kind = self.kind;
        if kind == OpKind::Kill {
            return Op {
                value: self.value % u16::from(MAX_THREADS),
                ..Op::new(kind)
            };
        }
        let mm = self.mm % MAX_MMS;
        if kind == OpKind::Fork {
            return Op {
                mm,
                ..Op::new(kind)
            };
        }
        let nr_pages = nr_pages.max(1);
        Op {
            kind,
            mm,
            page: self.page % nr_pages,
            npages: if kind.is_range() {
                wrap(self.npages, nr_pages)
            } else {
                0
            },
            prot: match kind {
                OpKind::Mmap => self.prot % 8,
                OpKind::Mprotect => self.prot % 4,
                _ => 0,
            },
            value: if kind.has_value() { self.value } else { 0 },
        }
    }

    /// The debugging form used in error messages (Python's `format_op_raw`).
    pub fn format_raw(&self) -> String {
        format!(
            "{}(mm={}, page={}, npages={}, prot={}, value={})",
            self.kind.name(),
            self.mm,
            self.page,
            self.npages,
            self.prot,
            self.value
        )
    }
}

/// How the concurrent part is interleaved: a strategy and its parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Schedule {
    pub strategy: Strategy,
    pub seed: u64,
    pub depth: u8,
    pub steps: u16,
    pub choices: Vec<u8>,
}

impl Schedule {
    pub fn serial() -> Schedule {
        Schedule::default()
    }

    pub fn explicit(choices: Vec<u8>) -> Schedule {
        Schedule {
            strategy: Strategy::Explicit,
            choices,
            ..Schedule::default()
        }
    }

    pub fn pct(seed: u64, depth: u8, steps: u16) -> Schedule {
        Schedule {
            strategy: Strategy::Pct,
            seed,
            depth,
            steps,
            ..Schedule::default()
        }
    }

    pub fn random(seed: u64) -> Schedule {
        Schedule {
            strategy: Strategy::Random,
            seed,
            ..Schedule::default()
        }
    }
}

/// A whole test case. `validate` checks the ranges; `decode` only ever returns valid cases.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Case {
    pub threads: Vec<Vec<Op>>,
    pub setup: Vec<Op>,
    pub post: Vec<Op>,
    pub nr_pages: u8,
    pub swap_async: bool,
    pub uffd_monitor: bool,
    /// One of [`PROFILES`].
    pub profile: &'static str,
    pub schedule: Schedule,
}

impl Case {
    /// A case with these threads and Python's defaults for everything else.
    pub fn new(threads: Vec<Vec<Op>>) -> Case {
        Case {
            threads,
            setup: Vec::new(),
            post: Vec::new(),
            nr_pages: 8,
            swap_async: false,
            uffd_monitor: false,
            profile: PROFILES[0],
            schedule: Schedule::serial(),
        }
    }

    /// The parts in case order, named as in error messages: setup, thread 0.., post.
    pub fn parts(&self) -> Vec<(String, &[Op])> {
        let mut out = vec![("setup".to_owned(), self.setup.as_slice())];
        for (i, ops) in self.threads.iter().enumerate() {
            out.push((format!("thread {i}"), ops.as_slice()));
        }
        out.push(("post".to_owned(), self.post.as_slice()));
        out
    }

    /// Every op in case order: setup, thread 0..T-1, post.
    pub fn all_ops(&self) -> impl Iterator<Item = &Op> {
        let threads = self.threads.iter().flatten();
        self.setup.iter().chain(threads).chain(self.post.iter())
    }

    pub fn op_count(&self) -> usize {
        self.all_ops().count()
    }

    /// `Err` unless every field is canonical (Python's `Case.validate`).
    pub fn validate(&self) -> Result<(), CaseFormatError> {
        check_case(self)
    }
}

/// Bytes that are not a canonical vmafuzz case; the message is one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseFormatError(String);

impl CaseFormatError {
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CaseFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaseFormatError {}

fn fail<T>(message: String) -> Result<T, CaseFormatError> {
    Err(CaseFormatError(message))
}

// ---------------------------------------------------------------------------------------------
// Binary codec

/// `b % n`, with 0 mapped to `n`: any byte into `1..=n`, values in range unchanged. `n >= 1`.
pub const fn wrap(b: u8, n: u8) -> u8 {
    match b % n {
        0 => n,
        r => r,
    }
}

/// Canonical bytes of a valid case.
pub fn encode(case: &Case) -> Result<Vec<u8>, CaseFormatError> {
    check_case(case)?;
    Ok(encode_valid(case))
}

/// Lenient decode then encode: the canonical form of any byte string.
pub fn canonicalize(data: &[u8]) -> Vec<u8> {
    encode_valid(&decode(data))
}

fn small_len(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// `encode` without the check: `case` is valid (it came from `decode` or passed `validate`).
fn encode_valid(case: &Case) -> Vec<u8> {
    let sched = &case.schedule;
    let profile = PROFILES.iter().position(|p| *p == case.profile);
    let flags = if case.swap_async { FLAG_SWAP_ASYNC } else { 0 }
        | if case.uffd_monitor {
            FLAG_UFFD_MONITOR
        } else {
            0
        };
    let mut out = vec![
        MAGIC,
        FORMAT_VERSION,
        small_len(profile.unwrap_or(usize::MAX)),
        case.nr_pages,
        flags,
        small_len(case.threads.len()),
        sched.strategy.code(),
    ];
    // The rest: seed, depth, steps, part lengths, 7 bytes an op, the choices.
    out.reserve(8 + 1 + 2 + case.threads.len() + 2 + 7 * case.op_count() + 2 + sched.choices.len());
    out.extend(sched.seed.to_le_bytes());
    out.push(sched.depth);
    out.extend(sched.steps.to_le_bytes());
    out.push(small_len(case.setup.len()));
    out.extend(case.threads.iter().map(|t| small_len(t.len())));
    out.push(small_len(case.post.len()));
    for op in case.all_ops() {
        out.extend([op.kind.code(), op.mm, op.page, op.npages, op.prot]);
        out.extend(op.value.to_le_bytes());
    }
    let n_choices = u16::try_from(sched.choices.len()).unwrap_or(u16::MAX);
    out.extend(n_choices.to_le_bytes());
    out.extend(&sched.choices);
    out
}

/// The bytes before the part lengths: magic, version, profile, pages, flags, threads,
/// strategy, seed (8), depth, steps (2).
const FIXED_HEADER: usize = 18;

/// Total decoding: any byte string gives a valid case (see `fuzz/case.py`). Bytes past the end
/// read as zero. This runs before every case the harness executes, so it reads fields straight
/// from the slice rather than byte by byte through a cursor.
pub fn decode(data: &[u8]) -> Case {
    let mut head = [0; FIXED_HEADER];
    let have = data.len().min(FIXED_HEADER);
    head[..have].copy_from_slice(&data[..have]);
    let byte = |at: usize| data.get(at).copied().unwrap_or(0);
    // head[0] and head[1], magic and version, are ignored so that mutated headers still decode.
    let profile = PROFILES[usize::from(head[2]) % PROFILES.len()];
    let nr_pages = wrap(head[3], MAX_PAGES);
    let flags = head[4];
    let n_threads = usize::from(wrap(head[5], MAX_THREADS));
    let strategy = Strategy::ALL[usize::from(head[6]) % Strategy::ALL.len()];
    let mut seed = [0; 8];
    seed.copy_from_slice(&head[7..15]);
    let depth = wrap(head[15], MAX_DEPTH);
    let steps = u16::from_le_bytes([head[16], head[17]]).max(1);
    // Part lengths: setup, each thread, post.
    let count = |part: usize| usize::from(byte(FIXED_HEADER + part) % (MAX_OPS_PER_PART + 1));
    let ops_at = FIXED_HEADER + n_threads + 2;
    // Only whole records are ops; a part gets what is left of them, in case order, so records
    // that are not all there shrink the parts, last part first.
    let mut records = data
        .get(ops_at..)
        .unwrap_or_default()
        .chunks_exact(OP_RECORD_SIZE);
    let whole = records.len();
    let mut part = |part: usize| -> Vec<Op> {
        let take = count(part).min(records.len());
        records
            .by_ref()
            .take(take)
            .map(|rec| decode_op(rec, nr_pages))
            .collect()
    };
    let setup = part(0);
    let threads = (1..=n_threads).map(&mut part).collect();
    let post = part(n_threads + 1);
    let choices_at = ops_at + OP_RECORD_SIZE * (whole - records.len());
    let n_choices = u16::from_le_bytes([byte(choices_at), byte(choices_at + 1)]);
    let schedule = match strategy {
        Strategy::Serial => Schedule::serial(),
        Strategy::Explicit => {
            let rest = data.get(choices_at + 2..).unwrap_or_default();
            let n = usize::from(n_choices).min(MAX_CHOICES).min(rest.len());
            Schedule::explicit(rest[..n].to_vec())
        }
        Strategy::Pct => Schedule::pct(u64::from_le_bytes(seed), depth, steps),
        Strategy::Random => Schedule::random(u64::from_le_bytes(seed)),
    };
    Case {
        threads,
        setup,
        post,
        nr_pages,
        swap_async: flags & FLAG_SWAP_ASYNC != 0,
        uffd_monitor: flags & FLAG_UFFD_MONITOR != 0,
        profile,
        schedule,
    }
}

/// One op record (`OP_RECORD_SIZE` bytes), normalised.
fn decode_op(rec: &[u8], nr_pages: u8) -> Op {
    let raw = Op {
        kind: OpKind::ALL[usize::from(rec[0]) % OpKind::ALL.len()],
        mm: rec[1],
        page: rec[2],
        npages: rec[3],
        prot: rec[4],
        value: u16::from_le_bytes([rec[5], rec[6]]),
    };
    raw.normalize(nr_pages)
}

/// Decode canonical bytes; `Err` with a one-line message on anything else.
pub fn decode_strict(data: &[u8]) -> Result<Case, CaseFormatError> {
    check_header(data)?;
    let case = decode(data);
    let canonical = encode_valid(&case);
    if canonical == data {
        return Ok(case);
    }
    match canonical.iter().zip(data).position(|(a, b)| a != b) {
        Some(at) => fail(format!(
            "case is not canonical: byte {at} is out of range or unused"
        )),
        None => fail(format!(
            "case has {} bytes, its fields describe {}",
            data.len(),
            canonical.len()
        )),
    }
}

fn check_header(data: &[u8]) -> Result<(), CaseFormatError> {
    if data.len() < HEADER_SIZE {
        return fail(format!(
            "case is truncated: {} bytes, header needs {HEADER_SIZE}",
            data.len()
        ));
    }
    let (magic, version, profile) = (data[0], data[1], data[2]);
    if magic != MAGIC {
        return fail(format!(
            "not a vmafuzz case: magic byte 0x{magic:02x}, want 0x{MAGIC:02x}"
        ));
    }
    if version != FORMAT_VERSION {
        return fail(format!(
            "unknown case format version {version} (this build reads version {FORMAT_VERSION})"
        ));
    }
    if usize::from(profile) >= PROFILES.len() {
        return fail(format!(
            "unknown kernel profile code {profile} (known: {})",
            PROFILES.join(", ")
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Validation

fn check_case(case: &Case) -> Result<(), CaseFormatError> {
    if !PROFILES.contains(&case.profile) {
        return fail(format!(
            "unknown kernel profile '{}' (known: {})",
            case.profile,
            PROFILES.join(", ")
        ));
    }
    if !(1..=MAX_PAGES).contains(&case.nr_pages) {
        return fail(format!(
            "pages must be 1..{MAX_PAGES}, not {}",
            case.nr_pages
        ));
    }
    if !(1..=usize::from(MAX_THREADS)).contains(&case.threads.len()) {
        return fail(format!(
            "a case has 1..{MAX_THREADS} threads, not {}",
            case.threads.len()
        ));
    }
    for (name, ops) in case.parts() {
        check_part(&name, ops, case.nr_pages)?;
    }
    check_schedule(&case.schedule)
}

fn check_part(name: &str, ops: &[Op], nr_pages: u8) -> Result<(), CaseFormatError> {
    if ops.len() > usize::from(MAX_OPS_PER_PART) {
        return fail(format!(
            "{name} has {} ops, at most {MAX_OPS_PER_PART}",
            ops.len()
        ));
    }
    // Python also checks the ranges separately; for Rust's field types a normalised op is
    // always in range, so equality with its normal form is the whole check.
    match ops.iter().find(|op| op.normalize(nr_pages) != **op) {
        Some(op) => fail(format!("{name}: op {} is out of range", op.format_raw())),
        None => Ok(()),
    }
}

fn check_schedule(s: &Schedule) -> Result<(), CaseFormatError> {
    let name = s.strategy.name();
    let want_seed = matches!(s.strategy, Strategy::Pct | Strategy::Random);
    if s.seed != 0 && !want_seed {
        return fail(format!("schedule {name}: bad seed {}", s.seed));
    }
    if s.strategy == Strategy::Pct {
        if !(1..=MAX_DEPTH).contains(&s.depth) || s.steps == 0 {
            return fail(format!("pct needs depth 1..{MAX_DEPTH} and steps 1..65535"));
        }
    } else if s.depth != 0 || s.steps != 0 {
        return fail(format!("schedule {name} takes no depth or steps"));
    }
    if !s.choices.is_empty() && s.strategy != Strategy::Explicit {
        return fail(format!("schedule {name} takes no explicit choices"));
    }
    if s.choices.len() > MAX_CHOICES {
        return fail(format!(
            "explicit choices must be at most {MAX_CHOICES} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, mm: u8, page: u8, npages: u8, prot: u8, value: u16) -> Op {
        Op {
            kind,
            mm,
            page,
            npages,
            prot,
            value,
        }
    }

    /// A fault racing munmap, with an explicit schedule.
    fn sample() -> Case {
        let mut case = Case::new(vec![
            vec![op(OpKind::Write, 0, 2, 0, 0, 0x1f)],
            vec![op(OpKind::Munmap, 0, 2, 1, 0, 0)],
        ]);
        case.nr_pages = 4;
        case.setup = vec![op(OpKind::Mmap, 0, 0, 4, PROT_READ | PROT_WRITE, 0)];
        case.post = vec![op(OpKind::Read, 0, 2, 0, 0, 0)];
        case.schedule = Schedule::explicit(vec![1, 0]);
        case
    }

    const SAMPLE_HEX: &str = concat!(
        "a5010004000201000000000000000000000001010101", // header and part sizes
        "02000004030000",                               // mmap mm0 0+4 rw
        "01000200001f00",                               // write mm0 2 0x1f
        "03000201000000",                               // munmap mm0 2+1
        "00000200000000",                               // read mm0 2
        "02000100",                                     // schedule explicit 1 0
    );

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn encode_matches_pinned_bytes() {
        assert_eq!(encode(&sample()).unwrap(), unhex(SAMPLE_HEX));
    }

    #[test]
    fn sample_round_trips_both_decoders() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode(&bytes), sample());
        assert_eq!(decode_strict(&bytes).unwrap(), sample());
    }

    #[test]
    fn empty_input_decodes_to_six_empty_threads() {
        let case = decode(&[]);
        assert_eq!(case.threads, vec![Vec::<Op>::new(); 6]);
        assert_eq!(case.nr_pages, 16);
        assert_eq!(decode_strict(&canonicalize(&[])).unwrap(), case);
    }

    #[test]
    fn op_codes_match_names() {
        for (code, kind) in OpKind::ALL.iter().enumerate() {
            assert_eq!(usize::from(kind.code()), code);
            assert_eq!(OpKind::from_code(kind.code()), Some(*kind));
        }
        assert_eq!(OpKind::from_code(14), None);
        assert_eq!(OpKind::UffdCopy.name(), "uffd_copy");
    }

    #[test]
    fn wrap_keeps_values_in_range() {
        assert_eq!(wrap(0, 16), 16);
        assert_eq!(wrap(16, 16), 16);
        assert_eq!(wrap(17, 16), 1);
        assert_eq!(wrap(5, 6), 5);
    }

    #[test]
    fn normalize_zeroes_unused_fields() {
        let raw = op(OpKind::Kill, 3, 9, 9, 9, 13);
        assert_eq!(raw.normalize(8), op(OpKind::Kill, 0, 0, 0, 0, 1));
        let raw = op(OpKind::Mprotect, 5, 9, 0, 7, 99);
        assert_eq!(raw.normalize(8), op(OpKind::Mprotect, 1, 1, 8, 3, 0));
    }

    fn strict_err(data: &[u8]) -> String {
        decode_strict(data).unwrap_err().to_string()
    }

    #[test]
    fn strict_rejects_bad_headers() {
        let good = encode(&sample()).unwrap();
        let msg = strict_err(&good[..5]);
        assert_eq!(msg, "case is truncated: 5 bytes, header needs 19");
        let mut bad = good.clone();
        bad[0] = 0x7f;
        let msg = strict_err(&bad);
        assert_eq!(msg, "not a vmafuzz case: magic byte 0x7f, want 0xa5");
        bad = good.clone();
        bad[1] = 2;
        let msg = strict_err(&bad);
        assert_eq!(
            msg,
            "unknown case format version 2 (this build reads version 1)"
        );
        bad = good.clone();
        bad[2] = 1;
        assert_eq!(
            strict_err(&bad),
            "unknown kernel profile code 1 (known: 6.6)"
        );
    }

    #[test]
    fn strict_rejects_non_canonical_bodies() {
        let good = encode(&sample()).unwrap();
        let mut bad = good.clone();
        bad[3] = 0;
        let msg = strict_err(&bad);
        assert_eq!(
            msg,
            "case is not canonical: byte 3 is out of range or unused"
        );
        bad = good.clone();
        bad.push(0);
        let msg = strict_err(&bad);
        assert_eq!(
            msg,
            format!(
                "case has {} bytes, its fields describe {}",
                good.len() + 1,
                good.len()
            )
        );
    }

    #[test]
    fn encode_rejects_invalid_cases() {
        let mut case = sample();
        case.threads[0][0].npages = 1;
        let msg = encode(&case).unwrap_err().to_string();
        let want = "thread 0: op write(mm=0, page=2, npages=1, prot=0, value=31) is out of range";
        assert_eq!(msg, want);
        case = sample();
        case.schedule.seed = 7;
        let msg = encode(&case).unwrap_err().to_string();
        assert_eq!(msg, "schedule explicit: bad seed 7");
        case.threads.clear();
        let msg = encode(&case).unwrap_err().to_string();
        assert_eq!(msg, "a case has 1..6 threads, not 0");
    }

    /// SplitMix64, for deterministic noise.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)).to_le_bytes()[0]
            })
            .collect()
    }

    #[test]
    fn decode_is_total_and_canonical_is_a_fixed_point() {
        for seed in 0..500 {
            let data = noise(seed, usize::try_from(seed % 300).unwrap());
            let canonical = canonicalize(&data);
            assert_eq!(decode_strict(&canonical).unwrap(), decode(&data));
            assert_eq!(canonicalize(&canonical), canonical);
            let _ = decode_strict(&data);
        }
    }
}
