//! The native engine alone on a file of cases: `cargo run --release --example engine_bench --
//! FILE [PASSES]`, where FILE holds length-prefixed (u32 little-endian) encoded cases, as
//! `python -m fuzz.bench.optimized_stress --dump FILE` writes them. Prints cases/s and
//! scheduler steps/s; under `valgrind --tool=callgrind` it is the instruction profile of the
//! engine with no Python in it.

#![allow(clippy::print_stdout, clippy::cast_precision_loss)] // a CLI printing rates

use std::time::Instant;

use _native::case;
use _native::mutant::Mutant;
use _native::run::run;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: engine_bench FILE [PASSES]");
        std::process::exit(2);
    };
    let passes: usize = match args.next().map(|p| p.parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("engine_bench: PASSES must be a positive integer");
            std::process::exit(2);
        }
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("engine_bench: {path}: {e}");
            std::process::exit(2);
        }
    };
    let mut cases = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        at += 4;
        let end = (at + len).min(data.len());
        cases.push(case::decode(&data[at..end]));
        at = end;
    }
    let start = Instant::now();
    let mut steps = 0u64;
    let mut failed = 0usize;
    for _ in 0..passes {
        for c in &cases {
            match run(c, Mutant::None, false) {
                Ok(r) => steps += r.steps,
                Err(_) => failed += 1,
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let n = cases.len() * passes;
    println!(
        "{n} runs of {} cases: {:.0} cases/s, {:.0} steps/s, {:.1} steps/case, {failed} engine errors",
        cases.len(),
        n as f64 / secs,
        steps as f64 / secs,
        steps as f64 / n as f64
    );
}
