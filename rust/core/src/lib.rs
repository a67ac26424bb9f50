//! s2ssm-core: the pure-Rust core of s2ssm.
//!
//! - [`graph`]: batched causal-graph metrics (structural Hamming distance, edge confusion
//!   counts, path counting, reachability).
//!
//! The crate has no Python dependency; the `s2ssm-python` crate exposes it as `s2ssm._core`.

pub mod error;
pub mod graph;
pub mod sim;

pub use error::{CoreError, CoreResult};
