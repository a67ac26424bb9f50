//! Bindings of `s2ssm_core::graph`. Arrays arrive C-contiguous with the dtype named in each
//! signature (the `s2ssm.graph` wrappers see to that); results move into numpy without copies.

use crate::errors::{invalid, require_c_order, run_in, thread_pool, to_py_err, zeroed};
use numpy::ndarray::{Array1, Array2, Array3};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray3, PyReadonlyArray4,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use s2ssm_core::graph::{self, Diagonal, GraphShape, Layout, Reversal};

fn parse_reversal(py: Python<'_>, value: &str) -> PyResult<Reversal> {
    match value {
        "double" => Ok(Reversal::Double),
        "single" => Ok(Reversal::Single),
        other => Err(invalid(
            py,
            "reversal",
            format!("expected 'double' or 'single', got {other:?}"),
        )),
    }
}

fn parse_diagonal(py: Python<'_>, value: &str) -> PyResult<Diagonal> {
    match value {
        "ignore" => Ok(Diagonal::Ignore),
        "count" => Ok(Diagonal::Count),
        other => Err(invalid(
            py,
            "diagonal",
            format!("expected 'ignore' or 'count', got {other:?}"),
        )),
    }
}

fn parse_layout(py: Python<'_>, value: &str) -> PyResult<Layout> {
    match value {
        "parent_child" => Ok(Layout::ParentChild),
        "child_parent" => Ok(Layout::ChildParent),
        other => Err(invalid(
            py,
            "layout",
            format!("expected 'parent_child' or 'child_parent', got {other:?}"),
        )),
    }
}

/// The data of a C-contiguous array, or a clear error naming the argument.
macro_rules! contiguous {
    ($py:expr, $array:expr, $name:literal) => {{
        require_c_order($py, $array.is_c_contiguous(), $name)?;
        $array
            .as_slice()
            .map_err(|_| invalid($py, $name, "expected a C-contiguous array"))?
    }};
}

/// Checks that `pred` and `true` have one shape and returns it.
fn pair_shape(
    py: Python<'_>,
    pred: &PyReadonlyArray3<'_, u8>,
    truth: &PyReadonlyArray3<'_, u8>,
) -> PyResult<GraphShape> {
    let (p, t) = (pred.shape(), truth.shape());
    if p != t {
        return Err(invalid(
            py,
            "true",
            format!("expected the shape of pred {p:?}, got {t:?}"),
        ));
    }
    Ok(GraphShape {
        batch: p[0],
        rows: p[1],
        cols: p[2],
    })
}

/// Structural Hamming distance of each graph pair of two `(B, R, C)` uint8 batches.
#[pyfunction]
#[pyo3(signature = (pred, truth, reversal, diagonal, num_threads=None))]
fn shd<'py>(
    py: Python<'py>,
    pred: PyReadonlyArray3<'py, u8>,
    truth: PyReadonlyArray3<'py, u8>,
    reversal: &str,
    diagonal: &str,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let (reversal, diagonal) = (parse_reversal(py, reversal)?, parse_diagonal(py, diagonal)?);
    let shape = pair_shape(py, &pred, &truth)?;
    let (p, t) = (
        contiguous!(py, pred, "pred"),
        contiguous!(py, truth, "true"),
    );
    let pool = thread_pool(py, num_threads)?;
    let mut out = zeroed::<u32>(&[shape.batch])?;
    py.detach(|| {
        run_in(pool.as_ref(), || {
            graph::shd(p, t, shape, reversal, diagonal, &mut out)
        })
    })
    .map_err(|e| to_py_err(py, e))?;
    Ok(Array1::from_vec(out).into_pyarray(py))
}

/// Confusion counts `(B, 4)` = `[tp, fp, fn, tn]` of each graph pair.
#[pyfunction]
#[pyo3(signature = (pred, truth, diagonal, num_threads=None))]
fn edge_counts<'py>(
    py: Python<'py>,
    pred: PyReadonlyArray3<'py, u8>,
    truth: PyReadonlyArray3<'py, u8>,
    diagonal: &str,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let diagonal = parse_diagonal(py, diagonal)?;
    let shape = pair_shape(py, &pred, &truth)?;
    let (p, t) = (
        contiguous!(py, pred, "pred"),
        contiguous!(py, truth, "true"),
    );
    let pool = thread_pool(py, num_threads)?;
    let mut out = zeroed::<u32>(&[4, shape.batch])?;
    py.detach(|| {
        run_in(pool.as_ref(), || {
            graph::edge_counts(p, t, shape, diagonal, &mut out)
        })
    })
    .map_err(|e| to_py_err(py, e))?;
    let out = Array2::from_shape_vec((shape.batch, 4), out)
        .map_err(|e| invalid(py, "out", e.to_string()))?;
    Ok(out.into_pyarray(py))
}

/// `(B, L, N, N)` dimensions of a layer stack, checked to be square.
fn stack_dims(py: Python<'_>, shape: &[usize]) -> PyResult<(usize, usize, usize)> {
    if shape[2] != shape[3] {
        return Err(invalid(
            py,
            "layers",
            format!("expected square layers (N, N), got {:?}", &shape[2..]),
        ));
    }
    Ok((shape[0], shape[1], shape[2]))
}

/// Exact uint64 path counts `(B, N, N)` of a `(B, L, N, N)` uint8 or uint64 layer stack,
/// written into `out` when given (C-contiguous uint64 `(B, N, N)`, reused across calls).
#[pyfunction]
#[pyo3(signature = (layers, layout, num_threads=None, out=None))]
fn path_counts_u64<'py>(
    py: Python<'py>,
    layers: &Bound<'py, PyAny>,
    layout: &str,
    num_threads: Option<usize>,
    out: Option<Bound<'py, PyArray3<u64>>>,
) -> PyResult<Bound<'py, PyArray3<u64>>> {
    let layout = parse_layout(py, layout)?;
    let pool = thread_pool(py, num_threads)?;
    if let Ok(small) = layers.extract::<PyReadonlyArray4<'py, u8>>() {
        exact_counts(py, &small, layout, pool.as_ref(), out)
    } else {
        let wide = layers
            .extract::<PyReadonlyArray4<'py, u64>>()
            .map_err(|_| invalid(py, "layers", "expected a 4-d uint8 or uint64 array"))?;
        exact_counts(py, &wide, layout, pool.as_ref(), out)
    }
}

fn exact_counts<'py, I>(
    py: Python<'py>,
    layers: &PyReadonlyArray4<'py, I>,
    layout: Layout,
    pool: Option<&rayon::ThreadPool>,
    out: Option<Bound<'py, PyArray3<u64>>>,
) -> PyResult<Bound<'py, PyArray3<u64>>>
where
    I: numpy::Element + graph::Entry,
{
    let (b, l, n) = stack_dims(py, layers.shape())?;
    let data = contiguous!(py, layers, "layers");
    let compute = |counts: &mut [u64]| {
        py.detach(|| {
            run_in(pool, || {
                graph::path_counts_u64(data, b, l, n, layout, counts)
            })
        })
        .map_err(|e| to_py_err(py, e))
    };
    match out {
        Some(array) => {
            if array.shape() != [b, n, n] {
                let message = format!("expected shape ({b}, {n}, {n}), got {:?}", array.shape());
                return Err(invalid(py, "out", message));
            }
            {
                require_c_order(py, array.is_c_contiguous(), "out")?;
                let mut writable = array
                    .try_readwrite()
                    .map_err(|_| invalid(py, "out", "expected a writable array not in use"))?;
                let counts = writable
                    .as_slice_mut()
                    .map_err(|_| invalid(py, "out", "expected a C-contiguous array"))?;
                compute(counts)?;
            }
            Ok(array)
        }
        None => {
            let mut counts = zeroed::<u64>(&[b, n, n])?;
            compute(&mut counts)?;
            let counts = Array3::from_shape_vec((b, n, n), counts)
                .map_err(|e| invalid(py, "out", e.to_string()))?;
            Ok(counts.into_pyarray(py))
        }
    }
}

/// Float64 path counts `(B, N, N)` of a `(B, L, N, N)` float64 layer stack.
#[pyfunction]
#[pyo3(signature = (layers, layout, num_threads=None))]
fn path_counts_f64<'py>(
    py: Python<'py>,
    layers: PyReadonlyArray4<'py, f64>,
    layout: &str,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray3<f64>>> {
    let layout = parse_layout(py, layout)?;
    let (b, l, n) = stack_dims(py, layers.shape())?;
    let data = contiguous!(py, layers, "layers");
    let pool = thread_pool(py, num_threads)?;
    let mut out = zeroed::<f64>(&[b, n, n])?;
    py.detach(|| {
        run_in(pool.as_ref(), || {
            graph::path_counts_f64(data, b, l, n, layout, &mut out)
        })
    })
    .map_err(|e| to_py_err(py, e))?;
    let out =
        Array3::from_shape_vec((b, n, n), out).map_err(|e| invalid(py, "out", e.to_string()))?;
    Ok(out.into_pyarray(py))
}

/// Boolean path product of a `(B, L, N, N)` uint8 stack as packed rows `(B, N)` uint64.
#[pyfunction]
#[pyo3(signature = (layers, layout, num_threads=None))]
fn reachability<'py>(
    py: Python<'py>,
    layers: PyReadonlyArray4<'py, u8>,
    layout: &str,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<u64>>> {
    let layout = parse_layout(py, layout)?;
    let (b, l, n) = stack_dims(py, layers.shape())?;
    let data = contiguous!(py, layers, "layers");
    let pool = thread_pool(py, num_threads)?;
    let mut out = zeroed::<u64>(&[b, n])?;
    py.detach(|| {
        run_in(pool.as_ref(), || {
            graph::reachability(data, b, l, n, layout, &mut out)
        })
    })
    .map_err(|e| to_py_err(py, e))?;
    let out = Array2::from_shape_vec((b, n), out).map_err(|e| invalid(py, "out", e.to_string()))?;
    Ok(out.into_pyarray(py))
}

/// Boolean path product of a `(B, L, N, N)` uint8 stack as dense 0/1 bytes `(B, N, N)`.
#[pyfunction]
#[pyo3(signature = (layers, layout, num_threads=None))]
fn reachability_dense<'py>(
    py: Python<'py>,
    layers: PyReadonlyArray4<'py, u8>,
    layout: &str,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray3<u8>>> {
    let layout = parse_layout(py, layout)?;
    let (b, l, n) = stack_dims(py, layers.shape())?;
    let data = contiguous!(py, layers, "layers");
    let pool = thread_pool(py, num_threads)?;
    let mut out = zeroed::<u8>(&[b, n, n])?;
    py.detach(|| {
        run_in(pool.as_ref(), || {
            graph::reachability_dense(data, b, l, n, layout, &mut out)
        })
    })
    .map_err(|e| to_py_err(py, e))?;
    let out =
        Array3::from_shape_vec((b, n, n), out).map_err(|e| invalid(py, "out", e.to_string()))?;
    Ok(out.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(shd, m)?)?;
    m.add_function(wrap_pyfunction!(edge_counts, m)?)?;
    m.add_function(wrap_pyfunction!(path_counts_u64, m)?)?;
    m.add_function(wrap_pyfunction!(path_counts_f64, m)?)?;
    m.add_function(wrap_pyfunction!(reachability, m)?)?;
    m.add_function(wrap_pyfunction!(reachability_dense, m)?)?;
    Ok(())
}
