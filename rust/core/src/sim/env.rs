//! Environments: named mechanism changes on top of the neutral CITRIS dynamics.
//!
//! An environment is a set of [`Mechanism`]s (a bit mask), so users can compose their own from
//! Python (`s2ssm.sim.register_environment`). The constants of each mechanism are the `pub const`s
//! below; the papers publish none, so they are ours, chosen so that each change is visible.

/// One mechanism change; the value is its bit in [`Mechanisms`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Mechanism {
    /// The ball's direction is perturbed by `SINE_AMPLITUDE * sin(2 pi x / SINE_PERIOD)`.
    Sine = 1,
    /// The left paddle moves away from the ball height instead of towards it.
    LeftAway = 2,
    /// The right paddle tracks the mirrored ball height `32 - y`.
    RightMirror = 4,
    /// The ball relaxes to `FRICTION_SPEED` while inside the middle band `|x - 16| < FRICTION_HALF_WIDTH`.
    Friction = 8,
    /// Paddle hits multiply the speed by `BOUNCE_FACTOR` (up to `BOUNCE_MAX_SPEED`) and add spin.
    Bounce = 16,
    /// Gravity `GRAVITY` pulls the ball down while it is in the left half (`x < 16`).
    Gravity = 32,
    /// The right paddle moves away from the ball height instead of towards it.
    RightAway = 64,
}

/// Every mechanism with its registry name, in bit order.
pub const MECHANISMS: [(Mechanism, &str); 7] = [
    (Mechanism::Sine, "sine"),
    (Mechanism::LeftAway, "left_away"),
    (Mechanism::RightMirror, "right_mirror"),
    (Mechanism::Friction, "friction"),
    (Mechanism::Bounce, "bounce"),
    (Mechanism::Gravity, "gravity"),
    (Mechanism::RightAway, "right_away"),
];

/// Bit mask of every valid mechanism.
pub const ALL_MECHANISMS: u32 = 127;

/// Sine perturbation: amplitude in radians.
pub const SINE_AMPLITUDE: f64 = 0.35;
/// Sine perturbation: period along x in world units.
pub const SINE_PERIOD: f64 = 8.0;
/// Friction: half width of the middle band in world units.
pub const FRICTION_HALF_WIDTH: f64 = 5.0;
/// Friction: speed the ball relaxes to inside the band.
pub const FRICTION_SPEED: f64 = 0.8;
/// Relaxation rate of the speed toward its target (2, or `FRICTION_SPEED` in the band).
pub const SPEED_RELAXATION: f64 = 0.5;
/// Bounce: speed factor of a paddle hit.
pub const BOUNCE_FACTOR: f64 = 1.5;
/// Bounce: largest speed after a hit.
pub const BOUNCE_MAX_SPEED: f64 = 3.5;
/// Bounce: spin in radians per paddle half-height of offset between ball and paddle centre.
pub const BOUNCE_SPIN: f64 = 0.5;
/// Gravity: downward velocity change per step in the left half.
pub const GRAVITY: f64 = 0.4;

/// A set of mechanisms (bit mask of [`Mechanism`] values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mechanisms(pub u32);

impl Mechanisms {
    /// The mask, or `None` if it has unknown bits.
    pub fn new(bits: u32) -> Option<Self> {
        (bits & !ALL_MECHANISMS == 0).then_some(Mechanisms(bits))
    }

    /// Whether `mechanism` is part of the set.
    #[inline]
    pub fn has(self, mechanism: Mechanism) -> bool {
        self.0 & mechanism as u32 != 0
    }

    /// Whether the set changes the ball's mechanism.
    pub fn changes_ball(self) -> bool {
        self.has(Mechanism::Sine)
            || self.has(Mechanism::Friction)
            || self.has(Mechanism::Bounce)
            || self.has(Mechanism::Gravity)
    }

    /// Whether the set changes the left paddle's mechanism.
    pub fn changes_left(self) -> bool {
        self.has(Mechanism::LeftAway)
    }

    /// Whether the set changes the right paddle's mechanism.
    pub fn changes_right(self) -> bool {
        self.has(Mechanism::RightMirror) || self.has(Mechanism::RightAway)
    }
}

/// The 11 environments of SPARTAN / S2-SSM in id order: (name, mechanisms).
pub const ENVIRONMENTS: [(&str, u32); 11] = [
    ("neutral", 0),
    ("sine", Mechanism::Sine as u32),
    ("left_away", Mechanism::LeftAway as u32),
    ("right_mirror", Mechanism::RightMirror as u32),
    ("friction", Mechanism::Friction as u32),
    ("bounce", Mechanism::Bounce as u32),
    ("gravity", Mechanism::Gravity as u32),
    (
        "gravity_bounce",
        Mechanism::Gravity as u32 | Mechanism::Bounce as u32,
    ),
    (
        "friction_bounce",
        Mechanism::Friction as u32 | Mechanism::Bounce as u32,
    ),
    (
        "sine_left_away",
        Mechanism::Sine as u32 | Mechanism::LeftAway as u32,
    ),
    (
        "gravity_right_away",
        Mechanism::Gravity as u32 | Mechanism::RightAway as u32,
    ),
];

/// Number of objects: left paddle, right paddle, ball, score.
pub const K: usize = 4;
/// Object indices.
pub const LEFT: usize = 0;
/// Object index of the right paddle.
pub const RIGHT: usize = 1;
/// Object index of the ball.
pub const BALL: usize = 2;
/// Object index of the score.
pub const SCORE: usize = 3;
/// Column of the environment / intervention token in a `K x (K + 1)` graph.
pub const ENV: usize = K;

/// The global graph of an environment, child x parent, `K x (K + 1)` row-major: the union of its
/// possible local graphs. With `interventions`, the env column also has the edges interventions
/// add (left paddle, right paddle, ball).
pub fn global_graph(mechanisms: Mechanisms, interventions: bool) -> [[bool; K + 1]; K] {
    let mut g = [[false; K + 1]; K];
    for (k, row) in g.iter_mut().enumerate() {
        row[k] = true;
    }
    g[LEFT][BALL] = true;
    g[RIGHT][BALL] = true;
    g[BALL][LEFT] = true;
    g[BALL][RIGHT] = true;
    g[SCORE][BALL] = true;
    g[LEFT][ENV] = interventions || mechanisms.changes_left();
    g[RIGHT][ENV] = interventions || mechanisms.changes_right();
    g[BALL][ENV] = interventions || mechanisms.changes_ball();
    g
}
