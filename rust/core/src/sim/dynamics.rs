//! One transition of Interventional Pong: the CITRIS dynamics, the mechanism changes of the
//! environment, hard interventions and the local ground-truth graph of the transition.
//!
//! All arithmetic is in f64 with portable `libm` functions; every random number comes from
//! [`Draws`] slots listed in [`slot`]. `s2ssm.sim.reference` mirrors this file line by line.

use super::env::{
    Mechanism, Mechanisms, BALL, BOUNCE_FACTOR, BOUNCE_MAX_SPEED, BOUNCE_SPIN, ENV,
    FRICTION_HALF_WIDTH, FRICTION_SPEED, GRAVITY, K, LEFT, RIGHT, SCORE, SINE_AMPLITUDE,
    SINE_PERIOD, SPEED_RELAXATION,
};
use super::rng::Draws;
use core::f64::consts::{PI, TAU};

/// Draw slots of one step (and of the initial state, drawn with step 0).
pub mod slot {
    /// Single-target intervention choice (first uniform).
    pub const CHOOSE: u32 = 0;
    /// Multi-target choices: targets 0-1, 2-3, 4.
    pub const MULTI: [u32; 3] = [1, 2, 3];
    /// Intervention values: (dir, x).
    pub const VALUE_DIR_X: u32 = 4;
    /// Intervention values: (y, sign of the left paddle move).
    pub const VALUE_Y_SIGN_L: u32 = 5;
    /// Intervention paddle noise normals (left, right).
    pub const VALUE_PADDLE_NOISE: u32 = 6;
    /// Intervention: (sign of the right paddle move, unused).
    pub const VALUE_SIGN_R: u32 = 7;
    /// Paddle tracking noise normals (left, right).
    pub const PADDLE_NOISE: u32 = 8;
    /// Ball position noise normals (x, y).
    pub const BALL_NOISE: u32 = 9;
    /// Ball direction noise normal (first of the pair).
    pub const DIR_NOISE: u32 = 10;
    /// Point reset: (direction, unused).
    pub const POINT_DIR: u32 = 11;
    /// Point reset: paddles (left, right).
    pub const POINT_PADDLES: u32 = 12;
    /// Paddle intervention values on a point step (left, right).
    pub const VALUE_POINT_PADDLES: u32 = 13;
    /// Initial state: (ball x, ball y).
    pub const INIT_BALL: u32 = 32;
    /// Initial state: (direction, left paddle).
    pub const INIT_DIR_LEFT: u32 = 33;
    /// Initial state: (right paddle, left score).
    pub const INIT_RIGHT_SCORE: u32 = 34;
    /// Initial state: (right score, unused).
    pub const INIT_SCORE: u32 = 35;
}

/// World size in units.
pub const WORLD: f64 = 32.0;
/// Ball radius.
pub const BALL_RADIUS: f64 = 1.2;
/// Neutral ball speed.
pub const SPEED: f64 = 2.0;
/// Ball y range.
pub const BALL_Y_MIN: f64 = 3.2;
/// Ball y range.
pub const BALL_Y_MAX: f64 = 28.8;
/// The right player scores when the ball's x falls below this.
pub const GOAL_LEFT: f64 = 3.2;
/// The left player scores when the ball's x exceeds this.
pub const GOAL_RIGHT: f64 = 28.8;
/// Ball x range of a clamp.
pub const BALL_X_MIN: f64 = 2.0;
/// Ball x range of a clamp.
pub const BALL_X_MAX: f64 = 30.0;
/// Paddle y range.
pub const PADDLE_MIN: f64 = 2.0;
/// Paddle y range.
pub const PADDLE_MAX: f64 = 30.0;
/// Largest tracking step of a paddle.
pub const PADDLE_STEP: f64 = 1.5;
/// Speed range of a clamp (the speed is 2 in the neutral environment).
pub const SPEED_MIN: f64 = 0.5;
/// Speed range of a clamp.
pub const SPEED_MAX: f64 = 4.0;
/// A score that resets both scores.
pub const SCORE_RESET: u8 = 5;

/// Number of intervention targets: ball dir, ball x, ball y, left paddle, right paddle.
pub const TARGETS: usize = 5;
/// Intervention target indices.
pub const T_DIR: usize = 0;
/// Target index of ball x.
pub const T_X: usize = 1;
/// Target index of ball y.
pub const T_Y: usize = 2;
/// Target index of the left paddle.
pub const T_LEFT: usize = 3;
/// Target index of the right paddle.
pub const T_RIGHT: usize = 4;

/// Number of recorded state variables, in the order of [`State::to_array`].
pub const STATE_DIM: usize = 8;

/// The state of one game.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct State {
    pub paddle_left: f64,
    pub paddle_right: f64,
    pub ball_x: f64,
    pub ball_y: f64,
    pub ball_dir: f64,
    pub ball_speed: f64,
    pub score_left: u8,
    pub score_right: u8,
}

impl State {
    /// `[paddle_left_y, paddle_right_y, ball_x, ball_y, ball_dir, ball_speed, score_left, score_right]`.
    pub fn to_array(&self) -> [f64; STATE_DIM] {
        [
            self.paddle_left,
            self.paddle_right,
            self.ball_x,
            self.ball_y,
            self.ball_dir,
            self.ball_speed,
            f64::from(self.score_left),
            f64::from(self.score_right),
        ]
    }

    /// The initial state of a sequence (drawn before the warm-up step).
    pub fn initial(draws: &Draws) -> State {
        let (ux, uy) = draws.uniforms(slot::INIT_BALL);
        let (ud, ul) = draws.uniforms(slot::INIT_DIR_LEFT);
        let (ur, usl) = draws.uniforms(slot::INIT_RIGHT_SCORE);
        let (usr, _) = draws.uniforms(slot::INIT_SCORE);
        State {
            paddle_left: PADDLE_MIN + (PADDLE_MAX - PADDLE_MIN) * ul,
            paddle_right: PADDLE_MIN + (PADDLE_MAX - PADDLE_MIN) * ur,
            ball_x: 7.2 + (24.8 - 7.2) * ux,
            ball_y: BALL_Y_MIN + (BALL_Y_MAX - BALL_Y_MIN) * uy,
            ball_dir: TAU * ud,
            ball_speed: SPEED,
            score_left: score_from(usl),
            score_right: score_from(usr),
        }
    }
}

/// A uniform score in `0..5` from a uniform in `[0, 1)`.
fn score_from(u: f64) -> u8 {
    // u < 1 so the product is < 5; the cast truncates toward zero like numpy's floor here.
    ((u * 5.0) as u8).min(4)
}

/// How interventions are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interventions {
    /// Probability of each target per step.
    pub prob: f64,
    /// Multi-target mode: each target independently with `prob`; else (single-target, CITRIS)
    /// none with probability `(1 - prob)^5`, otherwise one target uniformly at random.
    pub multi: bool,
}

/// What happened on a transition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepInfo {
    /// Intervened targets (ball dir, ball x, ball y, left paddle, right paddle).
    pub intervened: [bool; TARGETS],
    /// Local graph, child x parent, `K x (K + 1)`.
    pub graph: [[bool; K + 1]; K],
    /// 0: no point; 1: left player scored; 2: right player scored.
    pub point: u8,
    /// 0: no hit; 1: left paddle; 2: right paddle.
    pub hit: u8,
}

/// Interventions chosen by the caller for one step (a do() schedule, an agent's action): which
/// targets, and for each a value, or NaN for the simulator's own intervention value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forced {
    /// Intervened targets, in the order of [`T_DIR`] .. [`T_RIGHT`].
    pub targets: [bool; TARGETS],
    /// `do(target = value)`; NaN: the value an intervention would draw. Clamped (and the angle
    /// wrapped) like every state.
    pub values: [f64; TARGETS],
}

impl Forced {
    /// No target intervened.
    pub const NONE: Forced = Forced {
        targets: [false; TARGETS],
        values: [f64::NAN; TARGETS],
    };
}

/// `p` moved toward (or, with `away`, away from) `target` by at most [`PADDLE_STEP`].
#[inline]
fn track(p: f64, target: f64, away: bool) -> f64 {
    let d = target - p;
    let step = d.abs().min(PADDLE_STEP);
    let sign = if d >= 0.0 { 1.0 } else { -1.0 };
    if away {
        p - sign * step
    } else {
        p + sign * step
    }
}

#[inline]
fn clamp(v: f64, lo: f64, hi: f64) -> f64 {
    v.max(lo).min(hi)
}

/// `dir` reduced to `[0, 2 pi)`.
#[inline]
fn wrap_angle(dir: f64) -> f64 {
    let r = dir % TAU;
    let r = if r < 0.0 { r + TAU } else { r };
    if r >= TAU {
        0.0
    } else {
        r
    }
}

/// Which targets are intervened on this step.
fn choose_targets(draws: &Draws, cfg: &Interventions) -> [bool; TARGETS] {
    let mut out = [false; TARGETS];
    if cfg.prob <= 0.0 {
        return out;
    }
    if cfg.multi {
        let (a, b) = draws.uniforms(slot::MULTI[0]);
        let (c, d) = draws.uniforms(slot::MULTI[1]);
        let (e, _) = draws.uniforms(slot::MULTI[2]);
        for (o, u) in out.iter_mut().zip([a, b, c, d, e]) {
            *o = u < cfg.prob;
        }
    } else {
        // CITRIS's rule: no intervention with probability (1 - p)^5, else one target chosen
        // uniformly (p = 0.15: none 44 %, each target 11 %).
        let (u, _) = draws.uniforms(slot::CHOOSE);
        let q = 1.0 - cfg.prob;
        let none = q * q * q * q * q;
        if u >= none {
            let k = ((u - none) / (1.0 - none) * TARGETS as f64) as usize;
            if let Some(o) = out.get_mut(k.min(TARGETS - 1)) {
                *o = true;
            }
        }
    }
    out
}

/// One transition from `s` under `mechanisms`, with the draws of its step.
pub fn step(
    s: &State,
    mechanisms: Mechanisms,
    interventions: &Interventions,
    draws: &Draws,
) -> (State, StepInfo) {
    step_with(s, mechanisms, interventions, draws, None)
}

/// [`step`] with the interventions of `forced`, when given, instead of random ones (every other
/// draw is the same, so a schedule that repeats the random choice reproduces [`step`]).
pub fn step_with(
    s: &State,
    mechanisms: Mechanisms,
    interventions: &Interventions,
    draws: &Draws,
    forced: Option<&Forced>,
) -> (State, StepInfo) {
    let mut info = StepInfo {
        intervened: match forced {
            Some(f) => f.targets,
            None => choose_targets(draws, interventions),
        },
        ..StepInfo::default()
    };
    let mut n = *s;

    // 1. Paddles track the previous ball height.
    let (noise_l, noise_r) = draws.normals(slot::PADDLE_NOISE);
    let target_r = if mechanisms.has(Mechanism::RightMirror) {
        WORLD - s.ball_y
    } else {
        s.ball_y
    };
    n.paddle_left =
        track(s.paddle_left, s.ball_y, mechanisms.has(Mechanism::LeftAway)) + 0.5 * noise_l;
    n.paddle_right = track(
        s.paddle_right,
        target_r,
        mechanisms.has(Mechanism::RightAway),
    ) + 0.5 * noise_r;

    // 2. Ball velocity under the environment's mechanisms.
    let in_band = (s.ball_x - 16.0).abs() < FRICTION_HALF_WIDTH;
    let friction = mechanisms.has(Mechanism::Friction) && in_band;
    let target_speed = if friction { FRICTION_SPEED } else { SPEED };
    let mut speed = s.ball_speed + SPEED_RELAXATION * (target_speed - s.ball_speed);
    let sine = mechanisms.has(Mechanism::Sine);
    let mut dir = if sine {
        s.ball_dir + SINE_AMPLITUDE * libm::sin(TAU * s.ball_x / SINE_PERIOD)
    } else {
        s.ball_dir
    };
    let (sin_dir, cos_dir) = libm::sincos(dir);
    let vx = sin_dir * speed;
    let mut vy = cos_dir * speed;
    let gravity = mechanisms.has(Mechanism::Gravity) && s.ball_x < 16.0;
    if gravity {
        vy -= GRAVITY;
        dir = libm::atan2(vx, vy);
        speed = libm::hypot(vx, vy);
    }

    // 3. Move, score, bounce, collide.
    let mut x = s.ball_x + vx;
    let mut bounce = false;
    if !(GOAL_LEFT..=GOAL_RIGHT).contains(&x) {
        info.point = if x < GOAL_LEFT { 2 } else { 1 };
        let (ud, _) = draws.uniforms(slot::POINT_DIR);
        let (ul, ur) = draws.uniforms(slot::POINT_PADDLES);
        n.ball_x = 16.0;
        n.ball_y = 16.0;
        n.ball_dir = TAU * ud;
        n.ball_speed = SPEED;
        n.paddle_left = 4.0 + 24.0 * ul;
        n.paddle_right = 4.0 + 24.0 * ur;
    } else {
        let mut y = s.ball_y + vy;
        if y > BALL_Y_MAX {
            y = 2.0 * BALL_Y_MAX - y;
            dir = PI - dir;
        } else if y < BALL_Y_MIN {
            y = 2.0 * BALL_Y_MIN - y;
            dir = PI - dir;
        }
        let r = BALL_RADIUS;
        if (y - s.paddle_left).abs() <= 3.0 && x > 4.0 && x - r < 6.0 {
            x = 14.4 - x;
            dir = -dir;
            info.hit = 1;
        } else if (y - s.paddle_right).abs() <= 3.0 && x < 28.0 && x + r > 26.0 {
            x = 49.6 - x;
            dir = -dir;
            info.hit = 2;
        }
        if info.hit != 0 && mechanisms.has(Mechanism::Bounce) {
            bounce = true;
            speed = (speed * BOUNCE_FACTOR).min(BOUNCE_MAX_SPEED);
            if info.hit == 1 {
                dir -= BOUNCE_SPIN * (y - s.paddle_left) / 3.0;
            } else {
                dir += BOUNCE_SPIN * (y - s.paddle_right) / 3.0;
            }
        }
        let (nx, ny) = draws.normals(slot::BALL_NOISE);
        let (nd, _) = draws.normals(slot::DIR_NOISE);
        n.ball_x = x + 0.2 * nx;
        n.ball_y = y + 0.2 * ny;
        n.ball_dir = dir + 0.1 * nd;
        n.ball_speed = speed;
    }

    // 4. Scores.
    if info.point == 1 {
        n.score_left += 1;
    } else if info.point == 2 {
        n.score_right += 1;
    }
    if n.score_left >= SCORE_RESET || n.score_right >= SCORE_RESET {
        n.score_left = 0;
        n.score_right = 0;
    }

    // Hard interventions replace the regular values.
    let iv = info.intervened;
    if iv.iter().any(|&b| b) {
        let (u_dir, u_x) = draws.uniforms(slot::VALUE_DIR_X);
        let (u_y, u_sign_l) = draws.uniforms(slot::VALUE_Y_SIGN_L);
        let (z_l, z_r) = draws.normals(slot::VALUE_PADDLE_NOISE);
        let (u_sign_r, _) = draws.uniforms(slot::VALUE_SIGN_R);
        let (u_pl, u_pr) = draws.uniforms(slot::VALUE_POINT_PADDLES);
        let sign = |u: f64| if u < 0.5 { -1.0 } else { 1.0 };
        if iv[T_DIR] {
            n.ball_dir = TAU * u_dir;
        }
        if iv[T_X] {
            n.ball_x = 7.2 + (24.8 - 7.2) * u_x;
        }
        if iv[T_Y] {
            n.ball_y = BALL_Y_MIN + (BALL_Y_MAX - BALL_Y_MIN) * u_y;
        }
        if iv[T_LEFT] {
            n.paddle_left = if info.point != 0 {
                4.0 + 24.0 * u_pl
            } else {
                s.paddle_left + sign(u_sign_l) * PADDLE_STEP + 0.5 * z_l
            };
        }
        if iv[T_RIGHT] {
            n.paddle_right = if info.point != 0 {
                4.0 + 24.0 * u_pr
            } else {
                s.paddle_right + sign(u_sign_r) * PADDLE_STEP + 0.5 * z_r
            };
        }
        if let Some(f) = forced {
            let fields = [
                &mut n.ball_dir,
                &mut n.ball_x,
                &mut n.ball_y,
                &mut n.paddle_left,
                &mut n.paddle_right,
            ];
            for ((field, &on), &value) in fields.into_iter().zip(&f.targets).zip(&f.values) {
                if on && !value.is_nan() {
                    *field = value;
                }
            }
        }
    }

    // Wrap and clamp.
    n.ball_dir = wrap_angle(n.ball_dir);
    n.ball_x = clamp(n.ball_x, BALL_X_MIN, BALL_X_MAX);
    n.ball_y = clamp(n.ball_y, BALL_Y_MIN, BALL_Y_MAX);
    n.ball_speed = clamp(n.ball_speed, SPEED_MIN, SPEED_MAX);
    n.paddle_left = clamp(n.paddle_left, PADDLE_MIN, PADDLE_MAX);
    n.paddle_right = clamp(n.paddle_right, PADDLE_MIN, PADDLE_MAX);

    // Local graph of the transition, child x parent.
    let g = &mut info.graph;
    let point = info.point != 0;
    for (k, away_env) in [
        (LEFT, mechanisms.changes_left()),
        (RIGHT, mechanisms.changes_right()),
    ] {
        let target = if k == LEFT { T_LEFT } else { T_RIGHT };
        if iv[target] {
            // The intervention's value is the paddle's own past +- PADDLE_STEP + noise
            // (CITRIS's rule): the paddle keeps its self-loop and loses the ball. On a point
            // step the value is a fresh U[4, 28], and a value set by the caller is just that:
            // the intervention alone.
            let set = forced.is_some_and(|f| f.targets[target] && !f.values[target].is_nan());
            g[k][ENV] = true;
            g[k][k] = !point && !set;
        } else if point {
            g[k][BALL] = true;
        } else {
            g[k][k] = true;
            g[k][BALL] = true;
            g[k][ENV] = away_env;
        }
    }
    g[BALL][BALL] = true;
    g[BALL][LEFT] = info.hit == 1;
    g[BALL][RIGHT] = info.hit == 2;
    g[BALL][ENV] = sine || friction || gravity || bounce || iv[T_DIR] || iv[T_X] || iv[T_Y];
    g[SCORE][SCORE] = true;
    g[SCORE][BALL] = point;
    (n, info)
}
