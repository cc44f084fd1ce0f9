//! The Rust codec agrees with `fuzz/case.py` on every entry of the shared vectors in
//! `tests/vectors/case_vectors.json` (written by `tests/vectors/make_case_vectors.py`).

use _native::case::{canonicalize, decode, decode_strict, encode, FORMAT_VERSION};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/case_vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("shared case vectors");
    serde_json::from_str(&text).expect("valid JSON")
}

fn unhex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit pair"))
        .collect()
}

fn entries() -> Vec<Value> {
    let all = vectors();
    assert_eq!(all["format_version"], u64::from(FORMAT_VERSION));
    let list = all["vectors"].as_array().expect("vector list").clone();
    assert!(list.len() >= 30, "only {} case vectors", list.len());
    list
}

#[test]
fn lenient_decode_matches_python() {
    for v in entries() {
        let (name, input) = (&v["name"], unhex(&v["input_hex"]));
        let canonical = unhex(&v["canonical_hex"]);
        assert_eq!(canonicalize(&input), canonical, "vector {name}");
        assert_eq!(decode(&canonical), decode(&input), "vector {name}");
    }
}

#[test]
fn strict_decode_matches_python() {
    for v in entries() {
        let (name, input) = (&v["name"], unhex(&v["input_hex"]));
        match (decode_strict(&input), v["strict_error"].as_str()) {
            (Ok(case), None) => assert_eq!(encode(&case).unwrap(), input, "vector {name}"),
            (Err(err), Some(want)) => assert_eq!(err.message(), want, "vector {name}"),
            (got, want) => panic!("vector {name}: Rust says {got:?}, Python says {want:?}"),
        }
    }
}

#[test]
fn canonical_bytes_decode_strictly() {
    for v in entries() {
        let canonical = unhex(&v["canonical_hex"]);
        let case = decode_strict(&canonical).expect("canonical bytes");
        assert_eq!(encode(&case).unwrap(), canonical, "vector {}", v["name"]);
    }
}
