//! The scheduler agrees with `reference/sched.py`: every entry of the shared vectors in
//! `tests/vectors/sched_vectors.json` (written by `tests/vectors/make_sched_vectors.py`).

use _native::sched::toys::{run_toy, Toy, ToyWait};
use _native::sched::{RunOutcome, SplitMix64};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/sched_vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("shared scheduler vectors");
    serde_json::from_str(&text).expect("valid JSON")
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("hex string"), 16).expect("hex u64")
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("u64"))
        .collect()
}

#[test]
fn splitmix64_matches_python() {
    let entries = vectors()["splitmix64"].as_array().expect("entries").clone();
    assert!(
        entries.len() >= 3,
        "only {} splitmix64 vectors",
        entries.len()
    );
    for entry in &entries {
        let mut rng = SplitMix64::new(hex_u64(&entry["seed"]));
        for out in entry["outputs"].as_array().expect("outputs") {
            assert_eq!(rng.next_u64(), hex_u64(out), "seed {}", entry["seed"]);
        }
        for pair in entry["below"].as_array().expect("below") {
            let (n, want) = (pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap());
            assert_eq!(rng.below(n), want, "below({n}) for seed {}", entry["seed"]);
        }
    }
}

fn wait_name(w: &ToyWait) -> (&'static str, Vec<u64>) {
    match w {
        ToyWait::Mutex(name, owner) => (name, owner.iter().map(|&t| t as u64).collect()),
        ToyWait::Queue => ("queue", Vec::new()),
    }
}

#[test]
fn toy_decisions_match_python() {
    let all = vectors();
    let toys = all["toys"].as_array().expect("toys");
    assert!(toys.len() >= 30, "too few toy vectors");
    for v in toys {
        let toy = Toy::from_name(v["toy"].as_str().unwrap()).expect("known toy");
        let choices: Vec<u8> = u64s(&v["choices"])
            .iter()
            .map(|&c| u8::try_from(c).expect("choice byte"))
            .collect();
        let run = run_toy(
            toy,
            u8::try_from(v["strategy"].as_u64().unwrap()).expect("strategy code"),
            hex_u64(&v["seed"]),
            v["depth"].as_u64().unwrap(),
            v["steps"].as_u64().unwrap(),
            &choices,
            v["stall"].as_u64().unwrap(),
        );
        let ctx = format!("{} strategy {} seed {}", v["toy"], v["strategy"], v["seed"]);
        let outcome = match run.outcome {
            RunOutcome::Idle => "idle",
            RunOutcome::Livelock => "livelock",
        };
        assert_eq!(outcome, v["outcome"].as_str().unwrap(), "{ctx}");
        assert_eq!(run.steps, v["nsteps"].as_u64().unwrap(), "{ctx}");
        let chosen: Vec<u64> = run.chosen.iter().map(|&t| t as u64).collect();
        assert_eq!(chosen, u64s(&v["chosen"]), "{ctx}");
        let log: Vec<u64> = run.choice_log.iter().map(|&c| u64::from(c)).collect();
        assert_eq!(log, u64s(&v["choice_log"]), "{ctx}");
        assert_eq!(run.log, u64s(&v["log"]), "{ctx}");
        let unfinished: Vec<u64> = run.unfinished.iter().map(|&t| t as u64).collect();
        assert_eq!(unfinished, u64s(&v["unfinished"]), "{ctx}");
        let want_wait = v["wait_for"].as_array().unwrap();
        assert_eq!(run.wait_for.len(), want_wait.len(), "{ctx}");
        for ((tid, site, w), want) in run.wait_for.iter().zip(want_wait) {
            let (name, holders) = wait_name(w);
            assert_eq!(*tid as u64, want[0].as_u64().unwrap(), "{ctx}");
            assert_eq!(*site, want[1].as_str().unwrap(), "{ctx}");
            assert_eq!(name, want[2].as_str().unwrap(), "{ctx}");
            assert_eq!(holders, u64s(&want[3]), "{ctx}");
        }
        let features: Vec<u64> = run.features.iter().map(|&b| u64::from(b)).collect();
        assert_eq!(features, u64s(&v["features"]), "{ctx}");
    }
}
