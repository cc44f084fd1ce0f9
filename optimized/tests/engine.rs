//! Whole-engine runs of small serial cases: where the per-VMA lock path falls back, retries
//! and succeeds, and that the contract layer stays quiet (or, with a mutant, does not).

use _native::case::{Case, Op, OpKind, Schedule};
use _native::mutant::Mutant;
use _native::record::{RunRecord, RES_SIGSEGV, STATUS_OK};
use _native::run::run;

pub fn op(kind: OpKind, page: u8, npages: u8, prot: u8, value: u16) -> Op {
    Op {
        kind,
        mm: 0,
        page,
        npages,
        prot,
        value,
    }
}

fn mmap(page: u8, n: u8) -> Op {
    op(OpKind::Mmap, page, n, 3, 0)
}

fn write(page: u8, value: u16) -> Op {
    op(OpKind::Write, page, 0, 0, value)
}

fn read(page: u8) -> Op {
    op(OpKind::Read, page, 0, 0, 0)
}

fn pageout(page: u8) -> Op {
    op(OpKind::MadvisePageout, page, 1, 0, 0)
}

/// A serial case whose whole program is `setup` (one empty thread).
fn serial(setup: Vec<Op>, swap_async: bool) -> Case {
    Case {
        setup,
        nr_pages: 4,
        swap_async,
        schedule: Schedule::serial(),
        ..Case::new(vec![Vec::new()])
    }
}

fn counter(r: &RunRecord, name: &str) -> u64 {
    r.counters
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |c| c.1)
}

fn results(r: &RunRecord) -> Vec<i64> {
    r.ops.iter().map(|o| o.result).collect()
}

fn clean(case: &Case) -> RunRecord {
    let r = run(case, Mutant::None, true).expect("engine ok");
    assert_eq!(r.status, STATUS_OK);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    r
}

#[test]
fn the_first_fault_on_a_fresh_anonymous_vma_falls_back() {
    let r = clean(&serial(
        vec![mmap(0, 2), write(0, 0x11), write(1, 0x22), read(1)],
        false,
    ));
    assert_eq!(results(&r), [0, 0, 0, 0x22]);
    // The first write finds no anon_vma: ABORT, mmap_lock path. The second write runs under
    // the VMA lock; the read needs no fault.
    assert_eq!(counter(&r, "VMA_LOCK_ABORT"), 1);
    assert_eq!(counter(&r, "VMA_LOCK_SUCCESS"), 1);
    assert_eq!(counter(&r, "VMA_LOCK_RETRY"), 0);
}

/// Swap page 0 out on an asynchronous device so that the next read must start I/O: the first
/// pageout leaves the written-back folio in the swap cache; mapped again by a read (clean) it
/// is reclaimed outright by the second.
fn async_swapped_out() -> Vec<Op> {
    vec![mmap(0, 1), write(0, 0x2a), pageout(0), read(0), pageout(0)]
}

#[test]
fn an_async_swap_in_drops_the_vma_lock_and_retries() {
    let mut ops = async_swapped_out();
    ops.push(read(0));
    let r = clean(&serial(ops, true));
    assert_eq!(results(&r), [0, 0, 0, 0x2a, 0, 0x2a]);
    assert_eq!(counter(&r, "VMA_LOCK_RETRY"), 1);
    // Under the VMA lock the folio under I/O is not waited for with the lock held:
    // vma_end_read comes before the wait on the folio.
    let ev: Vec<_> = r
        .lock_events
        .iter()
        .filter(|e| {
            (e.primitive == "vma_end_read" && e.action == "release")
                || e.primitive == "folio_wait_locked"
        })
        .map(|e| (e.action, e.primitive))
        .collect();
    assert!(
        ev.ends_with(&[("release", "vma_end_read"), ("wait", "folio_wait_locked")]),
        "{ev:?}"
    );
}

#[test]
fn a_synchronous_swap_in_completes_under_the_vma_lock() {
    let r = clean(&serial(
        vec![mmap(0, 1), write(0, 0x2a), pageout(0), read(0)],
        false,
    ));
    assert_eq!(results(&r), [0, 0, 0, 0x2a]);
    assert_eq!(counter(&r, "VMA_LOCK_RETRY"), 0);
    assert_eq!(counter(&r, "VMA_LOCK_SUCCESS"), 1);
}

#[test]
fn a_device_private_fault_retries_under_mmap_lock() {
    let to_device = op(OpKind::ToDevice, 0, 0, 0, 0);
    let r = clean(&serial(
        vec![mmap(0, 1), write(0, 0x5), to_device, read(0)],
        false,
    ));
    assert_eq!(results(&r), [0, 0, 0, 0x5]);
    assert_eq!(counter(&r, "VMA_LOCK_RETRY"), 1);
}

#[test]
fn an_access_error_under_the_vma_lock_is_redone_under_mmap_lock() {
    let mprotect = op(OpKind::Mprotect, 0, 1, 1, 0);
    let r = clean(&serial(
        vec![mmap(0, 1), write(0, 0x5), mprotect, write(0, 6)],
        false,
    ));
    assert_eq!(results(&r), [0, 0, 0, RES_SIGSEGV]);
    assert_eq!(counter(&r, "VMA_LOCK_SUCCESS"), 0);
    assert_eq!(counter(&r, "VMA_LOCK_ABORT"), 1);
}

#[test]
fn z18_double_vma_end_read_is_caught_by_the_contract() {
    let mut ops = async_swapped_out();
    ops.push(read(0));
    let case = serial(ops, true);
    let r = run(&case, Mutant::Z18DoubleVmaEndRead, false).expect("engine ok");
    let rules: Vec<_> = r.violations.iter().map(|v| v.rule).collect();
    assert!(rules.contains(&"lock.release-unheld"), "{:?}", r.violations);
    assert!(clean(&case).violations.is_empty());
}

#[test]
fn a_run_is_the_same_after_other_runs_on_its_thread() {
    // A thread's runs share one runner (reset between runs): what a run leaves behind, here
    // a mutant's broken state, a trace and a second mm, must not reach the next.
    let mut ops = async_swapped_out();
    ops.push(read(0));
    let swapped = serial(ops, true);
    let mut forked = serial(vec![mmap(0, 2), write(1, 7)], false);
    forked.post = vec![op(OpKind::Fork, 0, 0, 0, 0), read(1)];
    let cases = [
        (&swapped, Mutant::Z18DoubleVmaEndRead, true),
        (&forked, Mutant::None, false),
        (&swapped, Mutant::None, false),
        (&forked, Mutant::None, true),
    ];
    let alone: Vec<RunRecord> = cases
        .iter()
        .map(|&(c, m, trace)| {
            let c = c.clone();
            std::thread::spawn(move || run(&c, m, trace).expect("engine ok"))
                .join()
                .expect("no panic")
        })
        .collect();
    for (i, &(c, m, trace)) in cases.iter().enumerate() {
        assert_eq!(run(c, m, trace).expect("engine ok"), alone[i], "case {i}");
    }
}

#[test]
fn mutant_names_round_trip_and_unknown_ones_are_errors() {
    for name in _native::mutant::MUTANTS {
        let m = Mutant::from_name(Some(name)).expect("known");
        assert_eq!(m.name(), Some(name));
    }
    assert_eq!(Mutant::from_name(None), Ok(Mutant::None));
    let err = Mutant::from_name(Some("Z99")).unwrap_err();
    assert!(err.to_string().contains("Z18_double_vma_end_read"));
}
