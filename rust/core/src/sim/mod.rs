//! Interventional Pong simulator: deterministic, batched, all SPARTAN / S2-SSM environments.
//!
//! - [`rng`]: counter-based Philox4x32-10 draws keyed by (seed, sequence, step, slot).
//! - [`env`]: mechanism changes and the 11 named environments, global graphs.
//! - [`dynamics`]: one transition (CITRIS dynamics + mechanisms + interventions + local graph).
//! - [`render`]: anti-aliased frames and amodal per-object bit masks.
//!
//! [`generate_into`] fills caller-provided buffers for `n` sequences starting at sequence index
//! `start_index`; sequence `i` depends only on `(seed, i)`, so any batch split or thread count
//! gives the same bytes.

pub mod dynamics;
pub mod env;
pub mod games;
pub mod render;
pub mod rng;

use crate::error::{CoreError, CoreResult};
use dynamics::{Forced, Interventions, State, STATE_DIM, TARGETS};
use env::{Mechanisms, K};
use rayon::prelude::*;
use render::{BallCues, RenderConfig, Renderer};
use rng::Draws;

/// Everything that defines a generated data set besides the sequence range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimConfig {
    pub mechanisms: Mechanisms,
    pub env_id: i64,
    pub seed: u64,
    pub interventions: Interventions,
    pub render: RenderConfig,
    /// Whether frames and masks are drawn (else their buffers must be empty).
    pub draw: bool,
}

impl SimConfig {
    /// Checks the intervention settings and the rendering options.
    pub fn validate(&self) -> CoreResult<()> {
        let p = self.interventions.prob;
        if !(0.0..=1.0).contains(&p) {
            return Err(CoreError::invalid(
                "intervention_prob",
                format!("expected a probability in [0, 1], got {p}"),
            ));
        }
        self.render.validate()
    }
}

/// Output buffers of `n` sequences of length `t`, C-order.
pub struct Outputs<'a> {
    /// `(n, t, R, R, C)` uint8, or empty when not drawing.
    pub frames: &'a mut [u8],
    /// `(n, t, R, R)` uint8 bit masks, or empty when not drawing.
    pub masks: &'a mut [u8],
    /// `(n, t, STATE_DIM)`.
    pub states: &'a mut [f32],
    /// `(n, t, TARGETS)`.
    pub interventions: &'a mut [bool],
    /// `(n, t, K, K + 1)`.
    pub graphs: &'a mut [bool],
    /// `(n,)`.
    pub env_ids: &'a mut [i64],
}

pub(crate) fn check_len(argument: &'static str, got: usize, want: usize) -> CoreResult<()> {
    if got != want {
        return Err(CoreError::invalid(
            argument,
            format!("expected a buffer of {want} elements, got {got}"),
        ));
    }
    Ok(())
}

/// An explicit do() schedule for `n` sequences of `t` steps, C-order `(n, t, TARGETS)`: at
/// `[i, s, k]`, whether target `k` is intervened on the transition to frame `s` of sequence
/// `i`, and its value (NaN: the simulator's own intervention value). It replaces the random
/// interventions.
#[derive(Clone, Copy, Debug)]
pub struct Schedule<'a> {
    pub targets: &'a [bool],
    pub values: &'a [f64],
}

impl Schedule<'_> {
    /// The forced interventions of row `row` (`sequence * t + step`).
    fn at(&self, row: usize) -> Forced {
        let mut forced = Forced::NONE;
        let range = row * TARGETS..(row + 1) * TARGETS;
        if let (Some(t), Some(v)) = (self.targets.get(range.clone()), self.values.get(range)) {
            forced.targets.copy_from_slice(t);
            forced.values.copy_from_slice(v);
        }
        forced
    }
}

/// Checks that do() values are finite or NaN (an infinite angle has no direction).
pub(crate) fn check_values(argument: &'static str, values: &[f64]) -> CoreResult<()> {
    if values.iter().any(|v| v.is_infinite()) {
        return Err(CoreError::invalid(
            argument,
            "expected finite values (or NaN for the drawn value), got an infinity",
        ));
    }
    Ok(())
}

/// Most sequences handed to one rayon task (fewer for small batches, so that every thread
/// gets several tasks).
const SEQUENCES_PER_TASK: usize = 16;

/// Generates sequences `start_index .. start_index + n` of length `seq_len` into `out`, with
/// the interventions of `schedule` (rows of these `n` sequences) when given.
pub fn generate_into(
    config: &SimConfig,
    renderer: Option<&Renderer>,
    start_index: u64,
    n: usize,
    seq_len: usize,
    schedule: Option<Schedule<'_>>,
    out: Outputs<'_>,
) -> CoreResult<()> {
    config.validate()?;
    if seq_len == 0 || seq_len > u32::MAX as usize {
        return Err(CoreError::invalid(
            "seq_len",
            format!("expected 1 to {} steps, got {seq_len}", u32::MAX),
        ));
    }
    if start_index.checked_add(n as u64).is_none() {
        return Err(CoreError::invalid(
            "start_index",
            "start_index + n_sequences overflows 64 bits",
        ));
    }
    let frames_per_seq = n.checked_mul(seq_len).map(|_| seq_len).ok_or_else(|| {
        CoreError::invalid("n_sequences", "n_sequences * seq_len overflows".to_string())
    })?;
    let (frame_len, mask_len) = match (config.draw, renderer) {
        (true, Some(r)) => {
            if r.config() != config.render {
                return Err(CoreError::invalid(
                    "renderer",
                    "built for other rendering options",
                ));
            }
            (r.frame_len(), r.mask_len())
        }
        (true, None) => return Err(CoreError::invalid("renderer", "needed to draw frames")),
        (false, _) => (0, 0),
    };
    let fs = frames_per_seq * frame_len;
    let ms = frames_per_seq * mask_len;
    let ss = frames_per_seq * STATE_DIM;
    let is = frames_per_seq * TARGETS;
    let gs = frames_per_seq * K * (K + 1);
    check_len("frames", out.frames.len(), n * fs)?;
    check_len("masks", out.masks.len(), n * ms)?;
    check_len("states", out.states.len(), n * ss)?;
    check_len("interventions", out.interventions.len(), n * is)?;
    check_len("local_graphs", out.graphs.len(), n * gs)?;
    check_len("env_ids", out.env_ids.len(), n)?;
    if let Some(sc) = &schedule {
        check_len("schedule_targets", sc.targets.len(), n * is)?;
        check_len("schedule_values", sc.values.len(), n * is)?;
        check_values("schedule_values", sc.values)?;
    }
    if n == 0 {
        return Ok(());
    }
    let per = (n / (8 * rayon::current_num_threads())).clamp(1, SEQUENCES_PER_TASK);
    let chunks = n.div_ceil(per);
    // Empty buffers (no drawing) still need `chunks` pieces for the zip below.
    let mut no_frames: Vec<&mut [u8]> = Vec::new();
    let mut no_masks: Vec<&mut [u8]> = Vec::new();
    let frame_chunks: Vec<&mut [u8]> = if fs == 0 {
        (0..chunks).for_each(|_| no_frames.push(&mut []));
        no_frames
    } else {
        out.frames.chunks_mut(per * fs).collect()
    };
    let mask_chunks: Vec<&mut [u8]> = if ms == 0 {
        (0..chunks).for_each(|_| no_masks.push(&mut []));
        no_masks
    } else {
        out.masks.chunks_mut(per * ms).collect()
    };
    frame_chunks
        .into_par_iter()
        .zip(mask_chunks)
        .zip(out.states.par_chunks_mut(per * ss))
        .zip(out.interventions.par_chunks_mut(per * is))
        .zip(out.graphs.par_chunks_mut(per * gs))
        .zip(out.env_ids.par_chunks_mut(per))
        .enumerate()
        .for_each(
            |(chunk, (((((frames, masks), states), ivs), graphs), ids))| {
                for (i, id) in ids.iter_mut().enumerate() {
                    *id = config.env_id;
                    let local = chunk * per + i;
                    let seq = start_index + local as u64;
                    let range = |len: usize| i * len..(i + 1) * len;
                    run_sequence(
                        config,
                        renderer,
                        seq,
                        seq_len,
                        schedule.map(|sc| (sc, local * seq_len)),
                        frames.get_mut(range(fs)).unwrap_or(&mut []),
                        masks.get_mut(range(ms)).unwrap_or(&mut []),
                        states.get_mut(range(ss)).unwrap_or(&mut []),
                        ivs.get_mut(range(is)).unwrap_or(&mut []),
                        graphs.get_mut(range(gs)).unwrap_or(&mut []),
                    );
                }
            },
        );
    Ok(())
}

/// Renders `n` arbitrary states (`states`: `n * STATE_DIM`, in the order of
/// [`State::to_array`]; scores rounded and clipped to 0..4) into `frames` and `masks`.
/// `previous` (`n * 2` ball positions) feeds [`render::Velocity::Previous`]; without it the
/// current position is used. Non-finite states are an error.
pub fn render_states(
    renderer: &Renderer,
    states: &[f64],
    previous: Option<&[f64]>,
    frames: &mut [u8],
    masks: &mut [u8],
) -> CoreResult<()> {
    if states.len() % STATE_DIM != 0 {
        return Err(CoreError::invalid(
            "states",
            format!(
                "expected rows of {STATE_DIM} values, got {} values",
                states.len()
            ),
        ));
    }
    let n = states.len() / STATE_DIM;
    check_len("frames", frames.len(), n * renderer.frame_len())?;
    check_len("masks", masks.len(), n * renderer.mask_len())?;
    if let Some(prev) = previous {
        check_len("previous", prev.len(), n * 2)?;
        if prev.iter().any(|v| !v.is_finite()) {
            return Err(CoreError::invalid("previous", "expected finite positions"));
        }
    }
    if states.iter().any(|v| !v.is_finite()) {
        return Err(CoreError::invalid("states", "expected finite values"));
    }
    if n == 0 {
        return Ok(());
    }
    let score = |v: f64| v.round().clamp(0.0, 4.0) as u8;
    frames
        .par_chunks_mut(renderer.frame_len())
        .zip(masks.par_chunks_mut(renderer.mask_len()))
        .zip(states.par_chunks(STATE_DIM))
        .enumerate()
        .for_each(|(i, ((frame, mask), row))| {
            let s = State {
                paddle_left: row[0],
                paddle_right: row[1],
                ball_x: row[2],
                ball_y: row[3],
                ball_dir: row[4],
                ball_speed: row[5],
                score_left: score(row[6]),
                score_right: score(row[7]),
            };
            let prev = previous
                .and_then(|p| p.get(2 * i..2 * i + 2))
                .map_or((s.ball_x, s.ball_y), |p| (p[0], p[1]));
            let cues = BallCues {
                previous: prev,
                next: (
                    s.ball_x + libm::sin(s.ball_dir) * s.ball_speed,
                    s.ball_y + libm::cos(s.ball_dir) * s.ball_speed,
                ),
            };
            renderer.render(&s, &cues, frame, mask);
        });
    Ok(())
}

/// Draws the frame of the transition `previous -> next` (the ball cues need both).
pub(crate) fn render_transition(
    renderer: &Renderer,
    previous: &State,
    next: &State,
    frame: &mut [u8],
    mask: &mut [u8],
) {
    let cues = BallCues {
        previous: (previous.ball_x, previous.ball_y),
        next: (
            next.ball_x + libm::sin(next.ball_dir) * next.ball_speed,
            next.ball_y + libm::cos(next.ball_dir) * next.ball_speed,
        ),
    };
    renderer.render(next, &cues, frame, mask);
}

/// Runs one sequence into its slices (lengths checked by the caller); `schedule` with the row
/// of its first step.
#[allow(clippy::too_many_arguments)]
fn run_sequence(
    config: &SimConfig,
    renderer: Option<&Renderer>,
    seq: u64,
    seq_len: usize,
    schedule: Option<(Schedule<'_>, usize)>,
    frames: &mut [u8],
    masks: &mut [u8],
    states: &mut [f32],
    ivs: &mut [bool],
    graphs: &mut [bool],
) {
    let mut state = State::initial(&Draws::new(config.seed, seq, 0));
    let mut frame_iter = renderer
        .map(|r| r.frame_len())
        .filter(|&len| len > 0 && !frames.is_empty())
        .map(|len| frames.chunks_exact_mut(len));
    let mut mask_iter = renderer
        .map(|r| r.mask_len())
        .filter(|&len| len > 0 && !masks.is_empty())
        .map(|len| masks.chunks_exact_mut(len));
    let rows = states
        .chunks_exact_mut(STATE_DIM)
        .zip(ivs.chunks_exact_mut(TARGETS))
        .zip(graphs.chunks_exact_mut(K * (K + 1)))
        .take(seq_len);
    for (t, ((state_out, iv_out), graph_out)) in rows.enumerate() {
        let draws = Draws::new(config.seed, seq, t as u32);
        let forced = schedule.map(|(sc, first)| sc.at(first + t));
        let (next, info) = dynamics::step_with(
            &state,
            config.mechanisms,
            &config.interventions,
            &draws,
            forced.as_ref(),
        );
        for (o, v) in state_out.iter_mut().zip(next.to_array()) {
            *o = v as f32;
        }
        iv_out.copy_from_slice(&info.intervened);
        for (o, v) in graph_out
            .iter_mut()
            .zip(info.graph.iter().flat_map(|row| row.iter()))
        {
            *o = *v;
        }
        if let (Some(r), Some(fi), Some(mi)) = (renderer, frame_iter.as_mut(), mask_iter.as_mut()) {
            if let (Some(frame), Some(mask)) = (fi.next(), mi.next()) {
                render_transition(r, &state, &next, frame, mask);
            }
        }
        state = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamics::Interventions;
    use render::Velocity;

    fn config(env: u32, draw: bool) -> SimConfig {
        SimConfig {
            mechanisms: Mechanisms(env),
            env_id: 0,
            seed: 42,
            interventions: Interventions {
                prob: 0.15,
                multi: false,
            },
            render: RenderConfig {
                resolution: 32,
                velocity: Velocity::None,
                occlusion: false,
            },
            draw,
        }
    }

    struct Buffers {
        frames: Vec<u8>,
        masks: Vec<u8>,
        states: Vec<f32>,
        ivs: Vec<bool>,
        graphs: Vec<bool>,
        ids: Vec<i64>,
    }

    fn run(cfg: &SimConfig, start: u64, n: usize, t: usize) -> Buffers {
        let renderer = Renderer::new(cfg.render).ok();
        let (fl, ml) = if cfg.draw {
            (32 * 32 * 3, 32 * 32)
        } else {
            (0, 0)
        };
        let mut b = Buffers {
            frames: vec![0; n * t * fl],
            masks: vec![0; n * t * ml],
            states: vec![0.0; n * t * STATE_DIM],
            ivs: vec![false; n * t * TARGETS],
            graphs: vec![false; n * t * K * (K + 1)],
            ids: vec![0; n],
        };
        generate_into(
            cfg,
            renderer.as_ref(),
            start,
            n,
            t,
            None,
            Outputs {
                frames: &mut b.frames,
                masks: &mut b.masks,
                states: &mut b.states,
                interventions: &mut b.ivs,
                graphs: &mut b.graphs,
                env_ids: &mut b.ids,
            },
        )
        .map(|_| b)
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn batch_split_invariant() {
        let cfg = config(0, true);
        let whole = run(&cfg, 0, 40, 7);
        let tail = run(&cfg, 17, 23, 7);
        let f = 7 * 32 * 32 * 3;
        assert_eq!(&whole.frames[17 * f..], &tail.frames[..]);
        assert_eq!(
            &whole.states[17 * 7 * STATE_DIM..],
            &tail.states[..],
            "states differ"
        );
    }

    #[test]
    fn thread_count_invariant() {
        let cfg = config(env::ENVIRONMENTS[7].1, true);
        let pool = |n: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let one = pool(1).install(|| run(&cfg, 5, 50, 6));
        let three = pool(3).install(|| run(&cfg, 5, 50, 6));
        assert_eq!(one.frames, three.frames);
        assert_eq!(one.masks, three.masks);
        assert_eq!(one.states, three.states);
        assert_eq!(one.graphs, three.graphs);
        assert_eq!(one.ivs, three.ivs);
    }

    #[test]
    fn all_envs_stay_in_field() {
        for (_, mech) in env::ENVIRONMENTS {
            let b = run(&config(mech, false), 0, 8, 200);
            for row in b.states.chunks_exact(STATE_DIM) {
                assert!((2.0..=30.0).contains(&row[0]) && (2.0..=30.0).contains(&row[1]));
                assert!((2.0..=30.0).contains(&row[2]) && (3.2..=28.8).contains(&row[3]));
                assert!((0.0..=std::f32::consts::TAU).contains(&row[4]));
                assert!(row[6] < 5.0 && row[7] < 5.0);
            }
        }
    }

    #[test]
    fn bad_lengths_are_errors() {
        let cfg = config(0, false);
        let mut states = vec![0f32; 3];
        let r = generate_into(
            &cfg,
            None,
            0,
            1,
            1,
            None,
            Outputs {
                frames: &mut [],
                masks: &mut [],
                states: &mut states,
                interventions: &mut [false; TARGETS],
                graphs: &mut [false; K * (K + 1)],
                env_ids: &mut [0],
            },
        );
        assert!(r.is_err());
    }
}
