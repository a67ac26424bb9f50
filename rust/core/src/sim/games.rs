//! Games stepped one transition at a time, in batches: the engine of the gymnasium
//! environments. Game `(seed, sequence)` stepped `t` times without forced interventions gives
//! frame `t - 1` of sequence `sequence` of [`super::generate_into`] with `seed`, byte for byte.

use super::dynamics::{self, Forced, Interventions, State, StepInfo, STATE_DIM, TARGETS};
use super::env::{Mechanisms, K};
use super::render::Renderer;
use super::rng::Draws;
use super::{check_len, check_values, render_transition};
use crate::error::{CoreError, CoreResult};
use rayon::prelude::*;

/// One game: its draws' key and its current state (full precision).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Game {
    pub seed: u64,
    pub sequence: u64,
    /// Transitions taken so far (the next one uses the draws of step `t`).
    pub t: u32,
    pub state: State,
}

impl Game {
    /// A new game, before its first (warm-up) transition.
    pub fn new(seed: u64, sequence: u64) -> Game {
        Game {
            seed,
            sequence,
            t: 0,
            state: State::initial(&Draws::new(seed, sequence, 0)),
        }
    }

    /// One transition, with `forced` interventions instead of random ones when given.
    pub fn step(
        &mut self,
        mechanisms: Mechanisms,
        interventions: &Interventions,
        forced: Option<&Forced>,
    ) -> (State, StepInfo) {
        let draws = Draws::new(self.seed, self.sequence, self.t);
        let previous = self.state;
        let (next, info) =
            dynamics::step_with(&previous, mechanisms, interventions, &draws, forced);
        self.state = next;
        self.t += 1;
        (previous, info)
    }
}

/// Outputs of one transition of `n` games, C-order.
pub struct StepOutputs<'a> {
    /// `(n, R, R, C)` uint8, or empty when not drawing.
    pub frames: &'a mut [u8],
    /// `(n, R, R)` uint8 bit masks, or empty when not drawing.
    pub masks: &'a mut [u8],
    /// `(n, STATE_DIM)` float64.
    pub states: &'a mut [f64],
    /// `(n, TARGETS)`.
    pub interventions: &'a mut [bool],
    /// `(n, K, K + 1)`.
    pub graphs: &'a mut [bool],
}

/// Steps every game once. `forced` (one per game, or none) replaces the random interventions
/// of the games whose entry is `Some`.
pub fn step_games(
    mechanisms: Mechanisms,
    interventions: &Interventions,
    renderer: Option<&Renderer>,
    games: &mut [Game],
    forced: Option<&[Option<Forced>]>,
    out: StepOutputs<'_>,
) -> CoreResult<()> {
    let n = games.len();
    let (frame_len, mask_len) = renderer.map_or((0, 0), |r| (r.frame_len(), r.mask_len()));
    check_len("frames", out.frames.len(), n * frame_len)?;
    check_len("masks", out.masks.len(), n * mask_len)?;
    check_len("states", out.states.len(), n * STATE_DIM)?;
    check_len("interventions", out.interventions.len(), n * TARGETS)?;
    check_len("local_graphs", out.graphs.len(), n * K * (K + 1))?;
    if let Some(f) = forced {
        check_len("forced", f.len(), n)?;
        for entry in f.iter().flatten() {
            check_values("values", &entry.values)?;
        }
    }
    if games.iter().any(|g| g.t == u32::MAX) {
        return Err(CoreError::invalid(
            "games",
            format!("a game reached the last step, {}", u32::MAX),
        ));
    }
    if n == 0 {
        return Ok(());
    }
    // One frame per game: empty chunks stand in when not drawing.
    let frame_chunks: Vec<&mut [u8]> = match frame_len {
        0 => (0..n).map(|_| <&mut [u8]>::default()).collect(),
        len => out.frames.chunks_mut(len).collect(),
    };
    let mask_chunks: Vec<&mut [u8]> = match mask_len {
        0 => (0..n).map(|_| <&mut [u8]>::default()).collect(),
        len => out.masks.chunks_mut(len).collect(),
    };
    games
        .par_iter_mut()
        .zip(frame_chunks)
        .zip(mask_chunks)
        .zip(out.states.par_chunks_mut(STATE_DIM))
        .zip(out.interventions.par_chunks_mut(TARGETS))
        .zip(out.graphs.par_chunks_mut(K * (K + 1)))
        .enumerate()
        .for_each(|(i, (((((game, frame), mask), state), iv), graph))| {
            let f = forced.and_then(|f| f.get(i)).and_then(Option::as_ref);
            let (previous, info) = game.step(mechanisms, interventions, f);
            state.copy_from_slice(&game.state.to_array());
            iv.copy_from_slice(&info.intervened);
            for (o, v) in graph.iter_mut().zip(info.graph.iter().flatten()) {
                *o = *v;
            }
            if let Some(r) = renderer {
                render_transition(r, &previous, &game.state, frame, mask);
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::render::{RenderConfig, Velocity};
    use super::super::{generate_into, Outputs, Schedule, SimConfig};
    use super::*;

    const CFG: SimConfig = SimConfig {
        mechanisms: Mechanisms(0),
        env_id: 0,
        seed: 9,
        interventions: Interventions {
            prob: 0.3,
            multi: false,
        },
        render: RenderConfig {
            resolution: 16,
            velocity: Velocity::Previous,
            occlusion: false,
        },
        draw: true,
    };

    /// `generate_into` of `n` sequences of `t` steps, with an optional schedule.
    fn generate(
        n: usize,
        t: usize,
        schedule: Option<Schedule<'_>>,
    ) -> (Vec<u8>, Vec<f32>, Vec<bool>) {
        let r = Renderer::new(CFG.render).unwrap_or_else(|e| panic!("{e}"));
        let mut frames = vec![0; n * t * r.frame_len()];
        let mut masks = vec![0; n * t * r.mask_len()];
        let mut states = vec![0.0; n * t * STATE_DIM];
        let mut ivs = vec![false; n * t * TARGETS];
        let mut graphs = vec![false; n * t * K * (K + 1)];
        let mut ids = vec![0; n];
        let out = Outputs {
            frames: &mut frames,
            masks: &mut masks,
            states: &mut states,
            interventions: &mut ivs,
            graphs: &mut graphs,
            env_ids: &mut ids,
        };
        generate_into(&CFG, Some(&r), 0, n, t, schedule, out).unwrap_or_else(|e| panic!("{e}"));
        (frames, states, ivs)
    }

    #[test]
    fn stepped_games_replay_generate() {
        let (n, t) = (5, 12);
        let (want_frames, want_states, want_ivs) = generate(n, t, None);
        let r = Renderer::new(CFG.render).unwrap_or_else(|e| panic!("{e}"));
        let mut games: Vec<Game> = (0..n as u64).map(|i| Game::new(CFG.seed, i)).collect();
        let fl = r.frame_len();
        for s in 0..t {
            let mut frames = vec![0; n * fl];
            let mut masks = vec![0; n * r.mask_len()];
            let mut states = vec![0.0; n * STATE_DIM];
            let mut ivs = vec![false; n * TARGETS];
            let mut graphs = vec![false; n * K * (K + 1)];
            let out = StepOutputs {
                frames: &mut frames,
                masks: &mut masks,
                states: &mut states,
                interventions: &mut ivs,
                graphs: &mut graphs,
            };
            step_games(
                CFG.mechanisms,
                &CFG.interventions,
                Some(&r),
                &mut games,
                None,
                out,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            for i in 0..n {
                let row = i * t + s;
                assert_eq!(
                    frames[i * fl..(i + 1) * fl],
                    want_frames[row * fl..(row + 1) * fl]
                );
                for k in 0..STATE_DIM {
                    assert_eq!(
                        states[i * STATE_DIM + k] as f32,
                        want_states[row * STATE_DIM + k]
                    );
                }
                assert_eq!(
                    ivs[i * TARGETS..(i + 1) * TARGETS],
                    want_ivs[row * TARGETS..(row + 1) * TARGETS]
                );
            }
        }
    }

    #[test]
    fn a_schedule_that_repeats_the_draws_changes_nothing() {
        let (n, t) = (4, 9);
        let (frames, states, ivs) = generate(n, t, None);
        let values = vec![f64::NAN; ivs.len()];
        let again = generate(
            n,
            t,
            Some(Schedule {
                targets: &ivs,
                values: &values,
            }),
        );
        assert_eq!((frames, states, ivs), again);
    }

    #[test]
    fn forced_values_are_set_and_clamped() {
        let mut targets = vec![false; 2 * TARGETS];
        let mut values = vec![f64::NAN; 2 * TARGETS];
        targets[TARGETS + dynamics::T_X] = true; // sequence 0, step 1
        values[TARGETS + dynamics::T_X] = 11.5;
        targets[TARGETS + dynamics::T_LEFT] = true;
        values[TARGETS + dynamics::T_LEFT] = 99.0;
        let (_, states, ivs) = generate(
            1,
            2,
            Some(Schedule {
                targets: &targets,
                values: &values,
            }),
        );
        assert_eq!(ivs, targets);
        assert_eq!(states[STATE_DIM + 2], 11.5);
        assert_eq!(states[STATE_DIM], dynamics::PADDLE_MAX as f32);
    }

    #[test]
    fn infinite_values_are_refused() {
        let mut game = [Game::new(0, 0)];
        let mut forced = Forced::NONE;
        forced.targets[0] = true;
        forced.values[0] = f64::INFINITY;
        let r = step_games(
            Mechanisms(0),
            &CFG.interventions,
            None,
            &mut game,
            Some(&[Some(forced)]),
            StepOutputs {
                frames: &mut [],
                masks: &mut [],
                states: &mut [0.0; STATE_DIM],
                interventions: &mut [false; TARGETS],
                graphs: &mut [false; K * (K + 1)],
            },
        );
        assert!(r.is_err());
        assert_eq!(game[0].t, 0, "nothing stepped");
    }
}
