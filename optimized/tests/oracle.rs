//! The linearizability oracle (`_native::oracle`) agrees with `fuzz/spec.py` and
//! `fuzz/linearize.py`: every entry of the shared vectors in `tests/vectors/spec_vectors.json`
//! (written by `tests/vectors/make_spec_vectors.py`), plus the spec's rules one by one.

use _native::oracle::bits::Bits;
use _native::oracle::case::{Kind, Op};
use _native::oracle::linearize::{page_histories, SubOp, INF};
use _native::oracle::phases::{self, Phase};
use _native::oracle::record::{RES_HUNG, RES_KILLED, RES_SIGSEGV};
use _native::oracle::search::{search, Status};
use _native::oracle::spec::{
    self, page, ImageState, Page, State, EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ESRCH, INITIAL,
    UNMAPPED,
};
use _native::oracle::{check_record, OpRecord, Record, StackGrowth, Verdict, DEFAULT_BUDGET};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/spec_vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("shared spec vectors");
    serde_json::from_str(&text).expect("valid JSON")
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_bool().map(i64::from))
        .expect("an int or a bool")
}

fn index(v: &Value) -> usize {
    usize::try_from(int(v)).expect("an index")
}

fn list(v: &Value) -> &Vec<Value> {
    v.as_array().expect("array")
}

fn state(v: &Value) -> State {
    let mut out = [None; 4];
    for (mm, pg) in list(v).iter().enumerate() {
        if !pg.is_null() {
            let f = list(pg);
            let flag = |i: usize| f[i].as_bool().expect("bool");
            out[mm] = Some(page(flag(0), int(&f[1]), flag(2), flag(3), int(&f[4])));
        }
    }
    out
}

fn image(v: &Value) -> ImageState {
    let mut out = [None; 4];
    for (mm, pg) in list(v).iter().enumerate() {
        if !pg.is_null() {
            let f: Vec<i64> = list(pg).iter().map(int).collect();
            out[mm] = Some([f[0], f[1], f[2], f[3], f[4]]);
        }
    }
    out
}

fn op(v: &Value) -> Op {
    let f: Vec<i64> = list(v).iter().map(int).collect();
    Op {
        kind: Kind::from_code(f[0]).expect("an op kind"),
        mm: usize::try_from(f[1]).expect("an mm"),
        page: f[2],
        npages: f[3],
        prot: f[4],
        value: f[5],
    }
}

fn ids(v: &Value, states: &[State]) -> Vec<State> {
    list(v).iter().map(|i| states[index(i)]).collect()
}

#[test]
fn transitions_match_python() {
    let all = vectors();
    let states: Vec<State> = list(&all["states"]).iter().map(state).collect();
    let ops: Vec<Op> = list(&all["ops"]).iter().map(op).collect();
    let entries = list(&all["transitions"]);
    assert!(entries.len() > 1000, "only {} transitions", entries.len());
    for e in entries {
        let e = list(e);
        let (s, o, r) = (states[index(&e[0])], ops[index(&e[1])], int(&e[2]));
        let got = spec::successors(&s, &o, r);
        assert_eq!(got.as_slice(), ids(&e[3], &states), "{s:?} {o:?} -> {r}");
    }
}

#[test]
fn natural_results_maybe_and_phase_successors_match_python() {
    let all = vectors();
    let states: Vec<State> = list(&all["states"]).iter().map(state).collect();
    let ops: Vec<Op> = list(&all["ops"]).iter().map(op).collect();
    for e in list(&all["maybe"]) {
        let e = list(e);
        let (s, o) = (states[index(&e[0])], ops[index(&e[1])]);
        assert_eq!(spec::natural_result(&s, &o), int(&e[2]), "{s:?} {o:?}");
        let phases = [
            phases::phase_successors(&s, &o, Phase::Fault, false),
            phases::phase_successors(&s, &o, Phase::Detach, false),
            phases::phase_successors(&s, &o, Phase::Detach, true),
            phases::phase_successors(&s, &o, Phase::Grow, false),
        ];
        let maybe = spec::maybe_successors(&s, &o);
        assert_eq!(maybe.as_slice(), ids(&e[3], &states), "maybe {s:?} {o:?}");
        for (k, got) in phases.iter().enumerate() {
            assert_eq!(
                got.as_slice(),
                ids(&e[4 + k], &states),
                "phase {k} {s:?} {o:?}"
            );
        }
    }
}

fn record(v: &Value) -> Record {
    let ops = list(&v["ops"])
        .iter()
        .map(|r| {
            let r = list(r);
            OpRecord {
                index: int(&r[0]),
                op: op(&r[1]),
                invoke: int(&r[2]),
                response: int(&r[3]),
                result: int(&r[4]),
            }
        })
        .collect();
    let growths = list(&v["growths"])
        .iter()
        .map(|g| {
            let g: Vec<i64> = list(g).iter().map(int).collect();
            let mm = usize::try_from(g[1]).expect("an mm");
            StackGrowth {
                step: g[0],
                mm,
                start: g[2],
                end: g[3],
                prot: g[4],
                uffd: g[5],
            }
        })
        .collect();
    let image = (!v["image"].is_null()).then(|| list(&v["image"]).iter().map(image).collect());
    Record {
        nr_pages: usize::try_from(int(&v["nr_pages"])).expect("pages"),
        ops,
        growths,
        image,
    }
}

#[test]
fn record_verdicts_match_python() {
    let all = vectors();
    let records = list(&all["records"]);
    let mut statuses = Vec::new();
    for (k, v) in records.iter().enumerate() {
        let verdict = check_record(&record(v), int(&v["budget"])).expect("within the mirror");
        let want = list(&v["verdict"]);
        let got = (verdict.status.name(), verdict.page, verdict.nodes);
        let nodes = u64::try_from(int(&want[2])).expect("nodes");
        assert_eq!(
            got,
            (want[0].as_str().expect("status"), int(&want[1]), nodes),
            "#{k}"
        );
        statuses.push(verdict.status);
    }
    for status in [Status::Ok, Status::Fail, Status::Undecided] {
        assert!(
            statuses.contains(&status),
            "no {status:?} record in the vectors"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The spec's rules, one by one (`fuzz/spec.py`'s table).

const MAPPED: Page = page(true, 3, false, false, 0);
const FULL5: Page = page(true, 3, false, true, 5);

fn one(pg: Page) -> State {
    [Some(pg), None, None, None]
}

fn an(kind: Kind) -> Op {
    Op {
        kind,
        mm: 0,
        page: 0,
        npages: 1,
        prot: 3,
        value: 9,
    }
}

#[test]
fn a_read_maps_the_zero_page_and_sees_the_value() {
    let read = an(Kind::Read);
    let zero = one(page(true, 3, false, true, 0));
    assert_eq!(spec::successors(&one(MAPPED), &read, 0).as_slice(), [zero]);
    assert!(spec::successors(&one(MAPPED), &read, 5).is_empty());
    assert_eq!(
        spec::successors(&one(FULL5), &read, 5).as_slice(),
        [one(FULL5)]
    );
    assert!(spec::successors(&one(FULL5), &read, RES_SIGSEGV).is_empty());
    let uffd_hole = one(page(true, 3, true, false, 0));
    assert!(
        spec::successors(&uffd_hole, &read, 0).is_empty(),
        "blocked on userfaultfd"
    );
    assert_eq!(spec::natural_result(&uffd_hole, &read), RES_HUNG);
}

#[test]
fn a_detached_pte_serves_loads_and_stores() {
    let detached = one(page(false, 0, false, true, 5));
    let (read, write) = (an(Kind::Read), an(Kind::Write));
    assert_eq!(spec::successors(&detached, &read, 5).as_slice(), [detached]);
    assert_eq!(
        spec::successors(&detached, &read, RES_SIGSEGV).as_slice(),
        [detached]
    );
    let stored = one(page(false, 0, false, true, 9));
    assert_eq!(spec::successors(&detached, &write, 0).as_slice(), [stored]);
    let munmap = an(Kind::Munmap);
    let weak = phases::phase_successors(&one(FULL5), &munmap, Phase::Detach, true);
    assert_eq!(weak.as_slice(), [one(FULL5), detached]);
}

#[test]
fn errors_and_unknown_results() {
    let read = an(Kind::Read);
    let absent: State = [Some(UNMAPPED), None, None, None];
    let child = Op { mm: 1, ..read };
    assert_eq!(
        spec::successors(&absent, &child, ESRCH).as_slice(),
        [absent]
    );
    assert_eq!(
        spec::successors(&absent, &child, ENOMEM).as_slice(),
        [absent]
    );
    assert!(spec::successors(&absent, &child, 0).is_empty());
    assert!(spec::successors(&one(FULL5), &read, ESRCH).is_empty());
    // -EINTR is not in the table: no change, no constraint.
    assert_eq!(
        spec::successors(&one(FULL5), &read, -4).as_slice(),
        [one(FULL5)]
    );
    let copy = an(Kind::UffdCopy);
    assert_eq!(
        spec::successors(&one(FULL5), &copy, ENOENT).as_slice(),
        [one(FULL5)]
    );
    assert!(spec::successors(&one(page(true, 3, true, true, 5)), &copy, 0).is_empty());
    let reg = an(Kind::UffdRegister);
    assert!(spec::successors(&one(FULL5), &reg, EINVAL).is_empty());
    let migrate = an(Kind::Migrate);
    assert!(spec::successors(&one(FULL5), &migrate, EFAULT).is_empty());
    let zero = one(page(true, 3, false, true, 0));
    assert_eq!(spec::successors(&zero, &migrate, EFAULT).as_slice(), [zero]);
    let fork_copy = an(Kind::UffdCopy);
    let registered = one(page(true, 3, true, true, 5));
    assert_eq!(
        spec::successors(&registered, &fork_copy, EEXIST).as_slice(),
        [registered]
    );
}

#[test]
fn a_fork_of_the_zero_page_may_leave_the_child_empty() {
    let fork = an(Kind::Fork);
    let zero = page(true, 3, false, true, 0);
    let got = spec::successors(&one(zero), &fork, 1);
    let empty = page(true, 3, false, false, 0);
    let want = [
        [Some(zero), Some(zero), None, None],
        [Some(zero), Some(empty), None, None],
    ];
    assert_eq!(got.as_slice(), want);
    assert!(
        spec::successors(&got[0], &fork, 1).is_empty(),
        "mm 1 exists"
    );
    // Killed: itself, or what its natural result (the first free child) does; no duplicate.
    let maybe = spec::maybe_successors(&one(zero), &fork);
    assert_eq!(maybe.as_slice(), [one(zero), want[0], want[1]]);
    assert_eq!(spec::natural_result(&got[0], &fork), 2);
}

#[test]
fn faults_and_growths() {
    let write = an(Kind::Write);
    let faulted = one(page(true, 3, false, true, 0));
    let fault = phases::phase_successors(&one(MAPPED), &write, Phase::Fault, false);
    assert_eq!(fault.as_slice(), [one(MAPPED), faulted]);
    let read_only = one(page(true, 1, false, false, 0));
    let no_fault = phases::phase_successors(&read_only, &write, Phase::Fault, false);
    assert_eq!(no_fault.as_slice(), [read_only], "the write would SIGSEGV");
    let grow = Op {
        prot: 3 | 4,
        value: 1,
        ..an(Kind::Mmap)
    };
    let grown = one(page(true, 3, true, false, 0));
    let got = phases::phase_successors(
        &[Some(UNMAPPED), None, None, None],
        &grow,
        Phase::Grow,
        false,
    );
    assert_eq!(got.as_slice(), [grown]);
    assert!(phases::phase_successors(&grown, &grow, Phase::Grow, false).is_empty());
}

#[test]
fn inert_results_and_phases() {
    assert!(spec::is_inert(&an(Kind::Read), 5));
    assert!(!spec::is_inert(&an(Kind::Read), 0));
    assert!(spec::is_inert(&an(Kind::Mmap), ENOMEM));
    assert!(
        !spec::is_inert(&an(Kind::Mmap), 0),
        "the result is the address, page 0"
    );
    assert!(!spec::is_inert(&an(Kind::Mprotect), ENOMEM));
    assert!(spec::is_inert(&an(Kind::Migrate), 0));
    assert!(!spec::is_inert(&an(Kind::Fork), 3));
    let (read, write) = (an(Kind::Read), an(Kind::Write));
    assert_eq!(phases::phases(&read, 5, false, true), Some(Phase::Fault));
    assert_eq!(phases::phases(&read, 5, false, false), None, "unobserved");
    assert_eq!(phases::phases(&read, RES_KILLED, true, true), None);
    assert_eq!(
        phases::phases(&write, RES_KILLED, true, false),
        Some(Phase::Fault)
    );
    assert_eq!(
        phases::phases(&read, RES_HUNG, true, false),
        Some(Phase::Fault)
    );
    assert_eq!(phases::phases(&read, ESRCH, false, true), None);
    let munmap = an(Kind::Munmap);
    assert_eq!(phases::phases(&munmap, 0, false, true), Some(Phase::Detach));
    assert_eq!(phases::phases(&munmap, EINVAL, false, true), None);
}

#[test]
fn the_image_compares_bools_as_ints() {
    let image: ImageState = [Some([1, 3, 0, 1, 5]), None, None, None];
    assert_eq!(spec::observe(&one(FULL5), &image).as_slice(), [one(FULL5)]);
    let other: ImageState = [Some([2, 3, 0, 1, 5]), None, None, None];
    assert!(spec::observe(&one(FULL5), &other).is_empty());
    let child: ImageState = [Some([1, 3, 0, 1, 5]), Some([0, 0, 0, 0, 0]), None, None];
    assert!(spec::observe(&one(FULL5), &child).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Histories and the search.

fn rec(index: i64, op: Op, invoke: i64, response: i64, result: i64) -> OpRecord {
    OpRecord {
        index,
        op,
        invoke,
        response,
        result,
    }
}

fn mapped_and_filled() -> Vec<OpRecord> {
    let mmap = Op {
        npages: 2,
        ..an(Kind::Mmap)
    };
    let write = Op {
        value: 5,
        ..an(Kind::Write)
    };
    vec![rec(0, mmap, 0, 1, 0), rec(1, write, 2, 3, 0)]
}

#[test]
fn histories_give_each_page_its_sub_ops() {
    let mut ops = mapped_and_filled();
    ops.push(rec(2, an(Kind::Read), 4, -1, RES_HUNG));
    ops.push(rec(3, an(Kind::Kill), 4, 5, 0));
    let image = [[Some([1, 3, 0, 1, 5]), None, None, None]; 2];
    let record = Record {
        nr_pages: 2,
        ops,
        growths: vec![],
        image: Some(image.to_vec()),
    };
    let hists = page_histories(&record);
    let shape = |h: &[SubOp<'_>]| h.iter().map(|s| (s.index, s.phase)).collect::<Vec<_>>();
    // Page 0: mmap, write, the hung read's fault only (its main step never happened), image.
    let want = [(0, None), (1, None), (-4, Some(Phase::Fault)), (-1, None)];
    assert_eq!(shape(&hists[0]), want);
    assert_eq!(hists[0][2].response, INF);
    assert_eq!(shape(&hists[1]), [(0, None), (-1, None)]);
    // The image comes after every live op (the kill is none).
    assert_eq!(hists[1][1].invoke, 5);
}

#[test]
fn the_search_counts_nodes_as_python_does() {
    // A read of a value no op wrote: every order fails.
    let mut ops = mapped_and_filled();
    ops.push(rec(2, an(Kind::Read), 4, 5, 7));
    let record = Record {
        nr_pages: 1,
        ops,
        ..Record::default()
    };
    let fail = Verdict {
        status: Status::Fail,
        page: 0,
        nodes: 3,
    };
    assert_eq!(check_record(&record, DEFAULT_BUDGET), Some(fail));
    let undecided = Verdict {
        status: Status::Undecided,
        page: 0,
        nodes: 2,
    };
    assert_eq!(check_record(&record, 1), Some(undecided));
    let hists = page_histories(&record);
    assert_eq!(
        search(&hists[0], INITIAL, DEFAULT_BUDGET),
        Some((Status::Fail, 3))
    );
}

#[test]
fn bit_sets_span_several_words() {
    let b = Bits::<2>::below(70).minus(&Bits::<2>::empty().with(3).with(65));
    assert!(b.has(0) && !b.has(3) && b.has(64) && !b.has(65) && b.has(69) && !b.has(70));
    assert_eq!(b.iter().count(), 68);
    assert!(Bits::<2>::below(0).is_empty());
    assert_eq!(Bits::<1>::below(64).iter().last(), Some(63));
}
