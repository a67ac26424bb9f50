//! Mapping of core errors to the Python exception hierarchy of `s2ssm.errors`.

use pyo3::exceptions::{
    PyKeyboardInterrupt, PyMemoryError, PyOverflowError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use s2ssm_core::CoreError;

/// Builds an instance of `s2ssm.errors.<name>`, or of `fallback` if that module is missing.
fn package_error(
    py: Python<'_>,
    name: &str,
    message: String,
    fallback: fn(String) -> PyErr,
) -> PyErr {
    let class = py
        .import("s2ssm.errors")
        .and_then(|module| module.getattr(name))
        .and_then(|class| class.call1((message.clone(),)));
    match class {
        Ok(instance) => PyErr::from_value(instance),
        Err(_) => fallback(message),
    }
}

/// Converts a core error into the matching Python exception.
pub fn to_py_err(py: Python<'_>, error: CoreError) -> PyErr {
    match error {
        CoreError::InvalidArgument { .. } => {
            package_error(py, "InvalidInputError", error.to_string(), |m| {
                PyValueError::new_err(m)
            })
        }
        CoreError::Overflow(message) => package_error(py, "CountOverflowError", message, |m| {
            PyOverflowError::new_err(m)
        }),
        CoreError::Interrupted => PyKeyboardInterrupt::new_err("interrupted"),
    }
}

/// A `ValueError` of the package hierarchy for an argument the bindings reject themselves.
pub fn invalid(py: Python<'_>, argument: &'static str, message: impl Into<String>) -> PyErr {
    to_py_err(py, CoreError::invalid(argument, message))
}

/// A dedicated pool of `num_threads` threads, or `None` for rayon's global pool.
pub fn thread_pool(
    py: Python<'_>,
    num_threads: Option<usize>,
) -> PyResult<Option<rayon::ThreadPool>> {
    match num_threads {
        None => Ok(None),
        Some(0) => Err(invalid(
            py,
            "num_threads",
            "expected a positive number of threads, got 0",
        )),
        Some(threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map(Some)
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start {threads} threads: {e}"))),
    }
}

/// Runs `work` on `pool` when given, else on rayon's global pool.
pub fn run_in<T: Send>(pool: Option<&rayon::ThreadPool>, work: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// An `InvalidInputError` naming `name` unless its array is C-contiguous: `as_slice` of the
/// numpy crate also accepts Fortran order, whose data would be read in the wrong layout.
pub(crate) fn require_c_order(
    py: Python<'_>,
    c_contiguous: bool,
    name: &'static str,
) -> PyResult<()> {
    if c_contiguous {
        Ok(())
    } else {
        Err(invalid(py, name, "expected a C-contiguous array"))
    }
}

/// A zeroed output buffer of `dims`' product elements: a `MemoryError` when the product
/// overflows or the allocation fails (an input shape like `(2**40, 0, 0)` asks for terabytes
/// while holding no data), where `vec!` would abort the process.
pub(crate) fn zeroed<T: Clone + Default>(dims: &[usize]) -> PyResult<Vec<T>> {
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| PyMemoryError::new_err(format!("output of shape {dims:?} overflows")))?;
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| {
        PyMemoryError::new_err(format!("cannot allocate an output of shape {dims:?}"))
    })?;
    out.resize(len, T::default());
    Ok(out)
}
