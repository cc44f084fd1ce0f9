//! The one integration-test binary (shuttle's layout): each module is a group of tests.

mod codec;
mod engine;
mod oracle;
mod rig;
mod rules;
mod rules_lock;
mod sched;
mod vma_lock;
