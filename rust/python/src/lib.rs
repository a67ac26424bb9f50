//! `s2ssm._core`: thin PyO3 bindings over `s2ssm-core`.
//!
//! The Python package (`s2ssm.graph`, ...) validates and normalises arguments (dtype, layout,
//! contiguity) and calls these functions; they check shapes again, release the GIL around the
//! work and hand their results to numpy without copies.

use pyo3::prelude::*;

mod errors;
mod graph;
mod sim;

/// The compiled core of s2ssm.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_NODES", s2ssm_core::graph::MAX_NODES)?;
    graph::register(m)?;
    sim::register(m)?;
    Ok(())
}
