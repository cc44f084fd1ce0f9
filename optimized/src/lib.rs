//! The optimized engine of vmafuzz: Linux v6.6 `mm/` with `CONFIG_PER_VMA_LOCK=y`.
//!
//! The model modules are plain Rust, built and tested by `cargo test` without Python. PyO3
//! appears only in `py.rs`, behind the `python` feature that maturin turns on when it builds
//! `optimized._native`.

pub mod case;
pub mod sched;

#[cfg(feature = "python")]
mod py;
