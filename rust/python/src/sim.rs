//! Bindings of `s2ssm_core::sim`: the Interventional Pong generator. The `s2ssm.sim` wrapper
//! allocates (or checks) C-contiguous output arrays; this fills them in place with the GIL
//! released, in chunks, checking for Ctrl-C between chunks.

use crate::errors::{invalid, require_c_order, run_in, thread_pool, to_py_err};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn,
    PyReadwriteArray1, PyReadwriteArrayDyn, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use s2ssm_core::sim::dynamics::{Forced, Interventions, STATE_DIM, TARGETS};
use s2ssm_core::sim::env::{self, Mechanisms, K};
use s2ssm_core::sim::games::{step_games, Game, StepOutputs};
use s2ssm_core::sim::render::{RenderConfig, Renderer, Velocity};
use s2ssm_core::sim::{generate_into, render_states, Outputs, Schedule, SimConfig};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Process id of the first call that used rayon's global pool.
static GLOBAL_POOL_PID: AtomicU32 = AtomicU32::new(0);

/// `None` (rayon's global pool) in the process that first used it; in a forked child (a
/// PyTorch DataLoader worker), whose copy of the global pool has no threads, a dedicated pool
/// of the machine's parallelism instead, so the call cannot hang.
fn fork_safe_threads() -> Option<usize> {
    let pid = std::process::id();
    match GLOBAL_POOL_PID.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => None,
        Err(owner) if owner == pid => None,
        Err(_) => Some(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        ),
    }
}

/// Frames generated per chunk between two Ctrl-C checks.
const FRAMES_PER_CHUNK: usize = 1 << 16;

fn parse_velocity(py: Python<'_>, value: &str) -> PyResult<Velocity> {
    match value {
        "none" => Ok(Velocity::None),
        "previous" => Ok(Velocity::Previous),
        "next_channel" => Ok(Velocity::NextChannel),
        other => Err(invalid(
            py,
            "velocity",
            format!("expected 'none', 'previous' or 'next_channel', got {other:?}"),
        )),
    }
}

fn mechanisms(py: Python<'_>, bits: u32) -> PyResult<Mechanisms> {
    Mechanisms::new(bits).ok_or_else(|| {
        invalid(
            py,
            "mechanisms",
            format!("unknown mechanism bits in {bits:#x}"),
        )
    })
}

/// The simulator settings of a call, checked, and its renderer when it draws.
#[allow(clippy::too_many_arguments)]
fn checked_config(
    py: Python<'_>,
    mechanisms_bits: u32,
    env_id: i64,
    seed: u64,
    resolution: usize,
    velocity: &str,
    occlusion: bool,
    intervention_prob: f64,
    intervention_multi: bool,
    draw: bool,
) -> PyResult<(SimConfig, Option<Arc<Renderer>>)> {
    let config = SimConfig {
        mechanisms: mechanisms(py, mechanisms_bits)?,
        env_id,
        seed,
        interventions: Interventions {
            prob: intervention_prob,
            multi: intervention_multi,
        },
        render: RenderConfig {
            resolution,
            velocity: parse_velocity(py, velocity)?,
            occlusion,
        },
        draw,
    };
    config.validate().map_err(|e| to_py_err(py, e))?;
    let renderer = if draw {
        Some(
            py.detach(|| Renderer::shared(config.render))
                .map_err(|e| to_py_err(py, e))?,
        )
    } else {
        None
    };
    Ok((config, renderer))
}

/// Fills the output arrays with sequences `start_index ..` (one per entry of `env_ids`).
#[pyfunction]
#[pyo3(signature = (
    mechanisms_bits, env_id, seed, start_index, seq_len, resolution, velocity, occlusion,
    intervention_prob, intervention_multi, draw, frames, masks, states, interventions,
    local_graphs, env_ids, num_threads=None, schedule_targets=None, schedule_values=None
))]
#[allow(clippy::too_many_arguments)]
fn sim_generate_into(
    py: Python<'_>,
    mechanisms_bits: u32,
    env_id: i64,
    seed: u64,
    start_index: u64,
    seq_len: usize,
    resolution: usize,
    velocity: &str,
    occlusion: bool,
    intervention_prob: f64,
    intervention_multi: bool,
    draw: bool,
    mut frames: PyReadwriteArrayDyn<'_, u8>,
    mut masks: PyReadwriteArrayDyn<'_, u8>,
    mut states: PyReadwriteArrayDyn<'_, f32>,
    mut interventions: PyReadwriteArrayDyn<'_, bool>,
    mut local_graphs: PyReadwriteArrayDyn<'_, bool>,
    mut env_ids: PyReadwriteArray1<'_, i64>,
    num_threads: Option<usize>,
    schedule_targets: Option<PyReadonlyArrayDyn<'_, bool>>,
    schedule_values: Option<PyReadonlyArrayDyn<'_, f64>>,
) -> PyResult<()> {
    let (config, renderer) = checked_config(
        py,
        mechanisms_bits,
        env_id,
        seed,
        resolution,
        velocity,
        occlusion,
        intervention_prob,
        intervention_multi,
        draw,
    )?;
    if seq_len == 0 {
        return Err(invalid(py, "seq_len", "expected a positive length, got 0"));
    }
    let pool = thread_pool(py, num_threads.or_else(fork_safe_threads))?;
    let slice_err = |name: &'static str| invalid(py, name, "expected a C-contiguous array");
    for (name, c_order) in [
        ("frames", frames.is_c_contiguous()),
        ("masks", masks.is_c_contiguous()),
        ("states", states.is_c_contiguous()),
        ("interventions", interventions.is_c_contiguous()),
        ("local_graphs", local_graphs.is_c_contiguous()),
        ("env_ids", env_ids.is_c_contiguous()),
    ] {
        require_c_order(py, c_order, name)?;
    }
    let frames = frames.as_slice_mut().map_err(|_| slice_err("frames"))?;
    let masks = masks.as_slice_mut().map_err(|_| slice_err("masks"))?;
    let states = states.as_slice_mut().map_err(|_| slice_err("states"))?;
    let ivs = interventions
        .as_slice_mut()
        .map_err(|_| slice_err("interventions"))?;
    let graphs = local_graphs
        .as_slice_mut()
        .map_err(|_| slice_err("local_graphs"))?;
    let ids = env_ids.as_slice_mut().map_err(|_| slice_err("env_ids"))?;
    let n = ids.len();
    let schedule = match (&schedule_targets, &schedule_values) {
        (Some(t), Some(v)) => {
            require_c_order(py, t.is_c_contiguous(), "schedule_targets")?;
            require_c_order(py, v.is_c_contiguous(), "schedule_values")?;
            Some((
                t.as_slice().map_err(|_| slice_err("schedule_targets"))?,
                v.as_slice().map_err(|_| slice_err("schedule_values"))?,
            ))
        }
        (None, None) => None,
        _ => {
            return Err(invalid(
                py,
                "schedule_values",
                "schedule_targets and schedule_values come together",
            ))
        }
    };
    let (frame_len, mask_len) = match &renderer {
        Some(r) => (r.frame_len() * seq_len, r.mask_len() * seq_len),
        None => (0, 0),
    };
    let per_chunk = (FRAMES_PER_CHUNK / seq_len).max(1);
    // Whole-buffer lengths are checked first so no chunk is written on a bad call.
    let check = |name: &'static str, got: usize, per_seq: usize| -> PyResult<()> {
        match n.checked_mul(per_seq) {
            Some(want) if want == got => Ok(()),
            _ => Err(invalid(
                py,
                name,
                format!("expected {n} sequences of {per_seq} elements, got {got} elements"),
            )),
        }
    };
    check("frames", frames.len(), frame_len)?;
    check("masks", masks.len(), mask_len)?;
    check("states", states.len(), seq_len * STATE_DIM)?;
    check("interventions", ivs.len(), seq_len * TARGETS)?;
    check("local_graphs", graphs.len(), seq_len * K * (K + 1))?;
    if let Some((t, v)) = schedule {
        check("schedule_targets", t.len(), seq_len * TARGETS)?;
        check("schedule_values", v.len(), seq_len * TARGETS)?;
    }
    let mut done = 0usize;
    while done < n {
        let m = per_chunk.min(n - done);
        let range = |len: usize| done * len..(done + m) * len;
        let out = Outputs {
            frames: frames.get_mut(range(frame_len)).unwrap_or(&mut []),
            masks: masks.get_mut(range(mask_len)).unwrap_or(&mut []),
            states: states
                .get_mut(range(seq_len * STATE_DIM))
                .unwrap_or(&mut []),
            interventions: ivs.get_mut(range(seq_len * TARGETS)).unwrap_or(&mut []),
            graphs: graphs
                .get_mut(range(seq_len * K * (K + 1)))
                .unwrap_or(&mut []),
            env_ids: ids.get_mut(range(1)).unwrap_or(&mut []),
        };
        let start = start_index
            .checked_add(done as u64)
            .ok_or_else(|| invalid(py, "start_index", "start_index + n overflows 64 bits"))?;
        let chunk_schedule = schedule.and_then(|(t, v)| {
            let r = range(seq_len * TARGETS);
            Some(Schedule {
                targets: t.get(r.clone())?,
                values: v.get(r)?,
            })
        });
        py.detach(|| {
            run_in(pool.as_ref(), || {
                generate_into(
                    &config,
                    renderer.as_deref(),
                    start,
                    m,
                    seq_len,
                    chunk_schedule,
                    out,
                )
            })
        })
        .map_err(|e| to_py_err(py, e))?;
        py.check_signals()?;
        done += m;
    }
    Ok(())
}

/// Renders `(n, STATE_DIM)` float64 states into `(n, R, R, C)` frames and `(n, R, R)` masks.
#[pyfunction]
#[pyo3(signature = (states, previous, resolution, velocity, occlusion, frames, masks, num_threads=None))]
#[allow(clippy::too_many_arguments)]
fn sim_render_into(
    py: Python<'_>,
    states: PyReadonlyArray2<'_, f64>,
    previous: Option<PyReadonlyArray2<'_, f64>>,
    resolution: usize,
    velocity: &str,
    occlusion: bool,
    mut frames: PyReadwriteArrayDyn<'_, u8>,
    mut masks: PyReadwriteArrayDyn<'_, u8>,
    num_threads: Option<usize>,
) -> PyResult<()> {
    let config = RenderConfig {
        resolution,
        velocity: parse_velocity(py, velocity)?,
        occlusion,
    };
    let pool = thread_pool(py, num_threads.or_else(fork_safe_threads))?;
    let renderer = py
        .detach(|| Renderer::shared(config))
        .map_err(|e| to_py_err(py, e))?;
    let slice_err = |name: &'static str| invalid(py, name, "expected a C-contiguous array");
    let previous_c_order = previous.as_ref().is_none_or(|p| p.is_c_contiguous());
    for (name, c_order) in [
        ("states", states.is_c_contiguous()),
        ("previous", previous_c_order),
        ("frames", frames.is_c_contiguous()),
        ("masks", masks.is_c_contiguous()),
    ] {
        require_c_order(py, c_order, name)?;
    }
    let states = states.as_slice().map_err(|_| slice_err("states"))?;
    let previous = match previous.as_ref() {
        Some(p) => Some(p.as_slice().map_err(|_| slice_err("previous"))?),
        None => None,
    };
    let frames = frames.as_slice_mut().map_err(|_| slice_err("frames"))?;
    let masks = masks.as_slice_mut().map_err(|_| slice_err("masks"))?;
    py.detach(|| {
        run_in(pool.as_ref(), || {
            render_states(&renderer, states, previous, frames, masks)
        })
    })
    .map_err(|e| to_py_err(py, e))
}

/// A batch of games stepped together (the gymnasium environments' engine), full-precision
/// states kept between steps.
#[pyclass(module = "s2ssm._core")]
struct SimGames {
    mechanisms: Mechanisms,
    interventions: Interventions,
    renderer: Option<Arc<Renderer>>,
    games: Vec<Game>,
}

#[pymethods]
impl SimGames {
    #[new]
    #[pyo3(signature = (
        mechanisms_bits, n, resolution, velocity, occlusion, intervention_prob,
        intervention_multi, draw=true
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        mechanisms_bits: u32,
        n: usize,
        resolution: usize,
        velocity: &str,
        occlusion: bool,
        intervention_prob: f64,
        intervention_multi: bool,
        draw: bool,
    ) -> PyResult<Self> {
        let (config, renderer) = checked_config(
            py,
            mechanisms_bits,
            0,
            0,
            resolution,
            velocity,
            occlusion,
            intervention_prob,
            intervention_multi,
            draw,
        )?;
        Ok(SimGames {
            mechanisms: config.mechanisms,
            interventions: config.interventions,
            renderer,
            games: (0..n).map(|_| Game::new(0, 0)).collect(),
        })
    }

    fn __len__(&self) -> usize {
        self.games.len()
    }

    /// Starts game `index` anew as sequence `sequence` of `seed` (before its warm-up step).
    fn reset(&mut self, py: Python<'_>, index: usize, seed: u64, sequence: u64) -> PyResult<()> {
        let game = self
            .games
            .get_mut(index)
            .ok_or_else(|| invalid(py, "index", format!("expected a game index, got {index}")))?;
        *game = Game::new(seed, sequence);
        Ok(())
    }

    /// The games' full-precision states `(n, STATE_DIM)`.
    fn states<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let flat: Vec<f64> = self.games.iter().flat_map(|g| g.state.to_array()).collect();
        let array = Array2::from_shape_vec((self.games.len(), STATE_DIM), flat)
            .map_err(|e| invalid(py, "states", e.to_string()))?;
        Ok(array.into_pyarray(py))
    }

    /// Transitions taken by each game.
    fn steps<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        let steps: Vec<u32> = self.games.iter().map(|g| g.t).collect();
        steps.into_pyarray(py)
    }

    /// Steps every game once into the `(n, ...)` outputs; the rows of `forced_rows` take the
    /// interventions of `forced_targets` / `forced_values` (NaN: the drawn value).
    #[pyo3(signature = (
        frames, masks, states, interventions, local_graphs, forced_rows=None,
        forced_targets=None, forced_values=None, num_threads=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        py: Python<'_>,
        mut frames: PyReadwriteArrayDyn<'_, u8>,
        mut masks: PyReadwriteArrayDyn<'_, u8>,
        mut states: PyReadwriteArrayDyn<'_, f64>,
        mut interventions: PyReadwriteArrayDyn<'_, bool>,
        mut local_graphs: PyReadwriteArrayDyn<'_, bool>,
        forced_rows: Option<PyReadonlyArray1<'_, bool>>,
        forced_targets: Option<PyReadonlyArray2<'_, bool>>,
        forced_values: Option<PyReadonlyArray2<'_, f64>>,
        num_threads: Option<usize>,
    ) -> PyResult<()> {
        let n = self.games.len();
        let forced: Option<Vec<Option<Forced>>> = match (forced_rows, forced_targets, forced_values)
        {
            (None, None, None) => None,
            (Some(rows), Some(targets), Some(values)) => {
                let rows = rows.as_array();
                let targets = targets.as_array();
                let values = values.as_array();
                if rows.len() != n
                    || targets.shape() != [n, TARGETS]
                    || values.shape() != [n, TARGETS]
                {
                    return Err(invalid(
                        py,
                        "forced",
                        format!("expected ({n},) rows and ({n}, {TARGETS}) targets and values"),
                    ));
                }
                Some(
                    (0..n)
                        .map(|i| {
                            rows[i].then(|| {
                                let mut f = Forced::NONE;
                                for k in 0..TARGETS {
                                    f.targets[k] = targets[[i, k]];
                                    f.values[k] = values[[i, k]];
                                }
                                f
                            })
                        })
                        .collect(),
                )
            }
            _ => {
                return Err(invalid(
                    py,
                    "forced",
                    "forced_rows, forced_targets and forced_values come together",
                ))
            }
        };
        let pool = thread_pool(py, num_threads.or_else(fork_safe_threads))?;
        let slice_err = |name: &'static str| invalid(py, name, "expected a C-contiguous array");
        for (name, c_order) in [
            ("frames", frames.is_c_contiguous()),
            ("masks", masks.is_c_contiguous()),
            ("states", states.is_c_contiguous()),
            ("interventions", interventions.is_c_contiguous()),
            ("local_graphs", local_graphs.is_c_contiguous()),
        ] {
            require_c_order(py, c_order, name)?;
        }
        let out = StepOutputs {
            frames: frames.as_slice_mut().map_err(|_| slice_err("frames"))?,
            masks: masks.as_slice_mut().map_err(|_| slice_err("masks"))?,
            states: states.as_slice_mut().map_err(|_| slice_err("states"))?,
            interventions: interventions
                .as_slice_mut()
                .map_err(|_| slice_err("interventions"))?,
            graphs: local_graphs
                .as_slice_mut()
                .map_err(|_| slice_err("local_graphs"))?,
        };
        let (mechanisms, ivs) = (self.mechanisms, self.interventions);
        let renderer = self.renderer.clone();
        let games = &mut self.games;
        py.detach(|| {
            run_in(pool.as_ref(), || {
                step_games(
                    mechanisms,
                    &ivs,
                    renderer.as_deref(),
                    games,
                    forced.as_deref(),
                    out,
                )
            })
        })
        .map_err(|e| to_py_err(py, e))
    }
}

/// The built-in environments in id order: `[(name, mechanism bits), ...]`.
#[pyfunction]
fn sim_environments() -> Vec<(&'static str, u32)> {
    env::ENVIRONMENTS.to_vec()
}

/// The mechanisms: `[(name, bit), ...]`.
#[pyfunction]
fn sim_mechanisms() -> Vec<(&'static str, u32)> {
    env::MECHANISMS
        .iter()
        .map(|(m, name)| (*name, *m as u32))
        .collect()
}

/// Global graph `(K, K + 1)` bool of a mechanism set (child x parent, env column last).
#[pyfunction]
#[pyo3(signature = (mechanisms_bits, interventions=false))]
fn sim_global_graph(
    py: Python<'_>,
    mechanisms_bits: u32,
    interventions: bool,
) -> PyResult<Bound<'_, PyArray2<bool>>> {
    let g = env::global_graph(mechanisms(py, mechanisms_bits)?, interventions);
    let flat: Vec<bool> = g.iter().flat_map(|row| row.iter().copied()).collect();
    let array = Array2::from_shape_vec((K, K + 1), flat)
        .map_err(|e| invalid(py, "graph", e.to_string()))?;
    Ok(array.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sim_generate_into, m)?)?;
    m.add_function(wrap_pyfunction!(sim_render_into, m)?)?;
    m.add_function(wrap_pyfunction!(sim_environments, m)?)?;
    m.add_function(wrap_pyfunction!(sim_mechanisms, m)?)?;
    m.add_function(wrap_pyfunction!(sim_global_graph, m)?)?;
    m.add_class::<SimGames>()?;
    m.add("SIM_STATE_DIM", STATE_DIM)?;
    Ok(())
}
