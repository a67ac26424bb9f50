//! Anti-aliased rendering of Pong frames and per-object masks.
//!
//! A frame of `R x R` pixels shows the 32-unit world (row 0 at the top, y up in the world). Each
//! pixel is the rounded mean of `SUB x SUB` subsamples at `x = (c + (i + 0.5) / SUB) * 32 / R`,
//! `y = 32 - (r + (j + 0.5) / SUB) * 32 / R`; a subsample takes the colour of the topmost shape
//! that contains it (background, score glyphs, paddles, borders, ball, occluder). The mean is
//! computed exactly in integers, `(sum + SUB^2 / 2) / SUB^2`, so the NumPy reference, which does
//! the same per subsample, reproduces every byte.
//!
//! Masks are amodal: bit `k` of a pixel is set when object `k` (left paddle, right paddle, ball,
//! score display) contains at least one of its subsamples, whether or not the ball or the
//! occluder hides it there. Paddles are clipped to the playfield between the borders.

use super::dynamics::{State, BALL_RADIUS, WORLD};
use super::env::{BALL, LEFT, RIGHT, SCORE};
use crate::error::{CoreError, CoreResult};
use std::sync::{Arc, Mutex, OnceLock};

/// Renderers kept by [`Renderer::shared`].
const RENDERER_CACHE: usize = 8;

/// Subsamples per pixel and axis.
pub const SUB: usize = 4;
const SUB2: i32 = (SUB * SUB) as i32;
/// Smallest and largest resolution.
pub const MIN_RESOLUTION: usize = 16;
/// Largest resolution.
pub const MAX_RESOLUTION: usize = 128;

/// Background grey.
pub const BACKGROUND: [u8; 3] = [230, 230, 230];
/// Score digits and colon.
pub const DIGIT: [u8; 3] = [128, 128, 128];
/// Top and bottom borders.
pub const BORDER: [u8; 3] = [26, 26, 26];
/// Left paddle.
pub const LEFT_PADDLE: [u8; 3] = [0, 0, 255];
/// Right paddle.
pub const RIGHT_PADDLE: [u8; 3] = [0, 128, 0];
/// Ball.
pub const BALL_COLOUR: [u8; 3] = [255, 0, 0];
/// The ball's previous position inside its mask (velocity cue `previous`).
pub const BALL_PREVIOUS: [u8; 3] = [140, 0, 0];
/// Occluder band.
pub const OCCLUDER: [u8; 3] = [64, 64, 64];
/// Occluder band extent in world units: x in `[13, 19)`, y in `[2, 22)`.
pub const OCCLUDER_BAND: [f64; 4] = [13.0, 19.0, 2.0, 22.0];
/// Border thickness (all four sides, as in CITRIS).
pub const BORDER_WIDTH: f64 = 2.0;
/// Left paddle's left edge; the right paddle's is `RIGHT_PADDLE_X`.
pub const LEFT_PADDLE_X: f64 = 4.0;
/// Right paddle's left edge.
pub const RIGHT_PADDLE_X: f64 = 26.0;
/// Paddle width and half height.
pub const PADDLE_WIDTH: f64 = 2.0;
/// Paddle half height.
pub const PADDLE_HALF_HEIGHT: f64 = 3.0;
/// Left edges of the two digits; the glyphs span y in `[24, 29)` (CITRIS's layout).
pub const DIGIT_X: [f64; 2] = [12.0, 18.0];
/// Bottom of the digits.
pub const DIGIT_Y: f64 = 24.0;
/// Colon column and its two dots' bottoms.
pub const COLON: [f64; 3] = [16.0, 25.0, 27.0];

/// 3 x 5 glyphs of the digits 0-4, rows top to bottom, bit 2 = left column.
pub const GLYPHS: [[u8; 5]; 5] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b010, 0b010, 0b010, 0b010],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
];

/// How the ball's velocity is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Velocity {
    /// No cue.
    None,
    /// The previous ball position, drawn in `BALL_PREVIOUS` inside the ball's disc (SPARTAN).
    Previous,
    /// A fourth channel with the ball's coverage at its projected next position (CITRIS).
    NextChannel,
}

/// Rendering options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderConfig {
    pub resolution: usize,
    pub velocity: Velocity,
    pub occlusion: bool,
}

impl RenderConfig {
    /// Channels of a frame: 3, or 4 with [`Velocity::NextChannel`].
    pub fn channels(&self) -> usize {
        if self.velocity == Velocity::NextChannel {
            4
        } else {
            3
        }
    }

    /// Checks the resolution.
    pub fn validate(&self) -> CoreResult<()> {
        if !(MIN_RESOLUTION..=MAX_RESOLUTION).contains(&self.resolution) {
            return Err(CoreError::invalid(
                "resolution",
                format!(
                    "expected {MIN_RESOLUTION} to {MAX_RESOLUTION} pixels, got {}",
                    self.resolution
                ),
            ));
        }
        Ok(())
    }
}

#[inline]
fn in_rect(x: f64, y: f64, x0: f64, x1: f64, y0: f64, y1: f64) -> bool {
    x >= x0 && x < x1 && y >= y0 && y < y1
}

#[inline]
fn in_disc(x: f64, y: f64, cx: f64, cy: f64) -> bool {
    let dx = x - cx;
    let dy = y - cy;
    dx * dx + dy * dy <= BALL_RADIUS * BALL_RADIUS
}

/// Whether `(x, y)` is on the score display (digits of `scores`, colon).
fn on_score(x: f64, y: f64, scores: [u8; 2]) -> bool {
    if !(DIGIT_Y..DIGIT_Y + 5.0).contains(&y) {
        return false;
    }
    if (COLON[0]..COLON[0] + 1.0).contains(&x) {
        return (COLON[1]..COLON[1] + 1.0).contains(&y) || (COLON[2]..COLON[2] + 1.0).contains(&y);
    }
    for (x0, score) in DIGIT_X.iter().zip(scores) {
        if x >= *x0 && x < x0 + 3.0 {
            let col = (x - x0).floor() as usize;
            let row = 4 - ((y - DIGIT_Y).floor() as usize).min(4);
            let glyph = GLYPHS[usize::from(score.min(4))][row];
            return glyph >> (2 - col.min(2)) & 1 == 1;
        }
    }
    false
}

/// Colour of the static scene (background, score display, borders on all sides) at `(x, y)`.
#[inline]
fn static_colour(x: f64, y: f64, scores: [u8; 2]) -> [u8; 3] {
    if !(BORDER_WIDTH..WORLD - BORDER_WIDTH).contains(&y)
        || !(BORDER_WIDTH..WORLD - BORDER_WIDTH).contains(&x)
    {
        BORDER
    } else if on_score(x, y, scores) {
        DIGIT
    } else {
        BACKGROUND
    }
}

/// Colour of the scene without ball and occluder at `(x, y)`, given the paddles' y spans.
#[inline]
fn under_colour(x: f64, y: f64, spans: &[(f64, f64); 2], scores: [u8; 2]) -> [u8; 3] {
    let [(l0, l1), (r0, r1)] = *spans;
    if in_rect(x, y, LEFT_PADDLE_X, LEFT_PADDLE_X + PADDLE_WIDTH, l0, l1) {
        LEFT_PADDLE
    } else if in_rect(x, y, RIGHT_PADDLE_X, RIGHT_PADDLE_X + PADDLE_WIDTH, r0, r1) {
        RIGHT_PADDLE
    } else {
        static_colour(x, y, scores)
    }
}

/// Playfield-clipped y extent of a paddle centred at `p`.
#[inline]
fn paddle_span(p: f64) -> (f64, f64) {
    (
        (p - PADDLE_HALF_HEIGHT).max(BORDER_WIDTH),
        (p + PADDLE_HALF_HEIGHT).min(WORLD - BORDER_WIDTH),
    )
}

/// Precomputed geometry and static layers of one resolution.
pub struct Renderer {
    config: RenderConfig,
    /// Units per pixel.
    unit: f64,
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// Per score pair (5 * left + right): rgb bytes, rgb subsample sums, mask bytes.
    static_rgb: Vec<Vec<u8>>,
    static_sum: Vec<Vec<u16>>,
    static_mask: Vec<Vec<u8>>,
    /// Pixels touched by the occluder band (empty without occlusion).
    occluded: Vec<(usize, usize)>,
}

/// A ball position and the frame's previous / projected next positions.
#[derive(Clone, Copy, Debug)]
pub struct BallCues {
    pub previous: (f64, f64),
    pub next: (f64, f64),
}

impl Renderer {
    /// Builds the static layers of `config`.
    pub fn new(config: RenderConfig) -> CoreResult<Self> {
        config.validate()?;
        let res = config.resolution;
        let unit = WORLD / res as f64;
        let offsets: Vec<f64> = (0..SUB).map(|i| (i as f64 + 0.5) / SUB as f64).collect();
        let mut xs = Vec::with_capacity(res * SUB);
        let mut ys = Vec::with_capacity(res * SUB);
        for c in 0..res {
            for o in &offsets {
                xs.push((c as f64 + o) * unit);
                ys.push(WORLD - (c as f64 + o) * unit);
            }
        }
        let mut renderer = Renderer {
            config,
            unit,
            xs,
            ys,
            static_rgb: Vec::with_capacity(25),
            static_sum: Vec::with_capacity(25),
            static_mask: Vec::with_capacity(25),
            occluded: Vec::new(),
        };
        for pair in 0..25u8 {
            let scores = [pair / 5, pair % 5];
            let mut rgb = vec![0u8; res * res * 3];
            let mut sums = vec![0u16; res * res * 3];
            let mut mask = vec![0u8; res * res];
            for r in 0..res {
                for c in 0..res {
                    let p = r * res + c;
                    let mut sum = [0u16; 3];
                    for &y in &renderer.ys[r * SUB..(r + 1) * SUB] {
                        for &x in &renderer.xs[c * SUB..(c + 1) * SUB] {
                            let colour = static_colour(x, y, scores);
                            for ch in 0..3 {
                                sum[ch] += u16::from(colour[ch]);
                            }
                            if on_score(x, y, scores) {
                                mask[p] |= 1 << SCORE;
                            }
                        }
                    }
                    for ch in 0..3 {
                        sums[p * 3 + ch] = sum[ch];
                        rgb[p * 3 + ch] = ((i32::from(sum[ch]) + SUB2 / 2) / SUB2) as u8;
                    }
                }
            }
            renderer.static_rgb.push(rgb);
            renderer.static_sum.push(sums);
            renderer.static_mask.push(mask);
        }
        if config.occlusion {
            let [x0, x1, y0, y1] = OCCLUDER_BAND;
            for r in 0..res {
                for c in 0..res {
                    let touched = renderer.ys[r * SUB..(r + 1) * SUB].iter().any(|&y| {
                        renderer.xs[c * SUB..(c + 1) * SUB]
                            .iter()
                            .any(|&x| in_rect(x, y, x0, x1, y0, y1))
                    });
                    if touched {
                        renderer.occluded.push((r, c));
                    }
                }
            }
        }
        Ok(renderer)
    }

    /// A renderer of `config` shared through a small process-wide cache (building the static
    /// layers costs about a millisecond at 32 x 32, more than a small batch takes to draw).
    pub fn shared(config: RenderConfig) -> CoreResult<Arc<Renderer>> {
        static CACHE: OnceLock<Mutex<Vec<Arc<Renderer>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
        if let Ok(entries) = cache.lock() {
            if let Some(found) = entries.iter().find(|r| r.config == config) {
                return Ok(Arc::clone(found));
            }
        }
        let renderer = Arc::new(Renderer::new(config)?);
        if let Ok(mut entries) = cache.lock() {
            if entries.len() >= RENDERER_CACHE {
                entries.remove(0);
            }
            entries.push(Arc::clone(&renderer));
        }
        Ok(renderer)
    }

    /// The options this renderer draws with.
    pub fn config(&self) -> RenderConfig {
        self.config
    }

    /// Bytes of one frame.
    pub fn frame_len(&self) -> usize {
        self.config.resolution * self.config.resolution * self.config.channels()
    }

    /// Bytes of one mask.
    pub fn mask_len(&self) -> usize {
        self.config.resolution * self.config.resolution
    }

    /// Columns whose subsamples may lie in `[x0, x1]`. Subsamples sit at least 1/8 pixel
    /// inside their pixel, so the pixels of `floor(x0 / unit) ..= floor(x1 / unit)` are enough
    /// whatever the rounding of the division.
    #[inline]
    fn cols(&self, x0: f64, x1: f64) -> core::ops::Range<usize> {
        let res = self.config.resolution as f64;
        // Truncation is floor for the non-negative values left by the clamps.
        let lo = (x0 / self.unit).clamp(0.0, res) as usize;
        let v = x1 / self.unit;
        let hi = if v < 0.0 {
            0
        } else {
            (v.min(res) as usize + 1).min(self.config.resolution)
        };
        lo..hi.max(lo)
    }

    /// Rows whose subsamples may lie in `[y0, y1]`.
    #[inline]
    fn rows(&self, y0: f64, y1: f64) -> core::ops::Range<usize> {
        self.cols(WORLD - y1, WORLD - y0)
    }

    #[inline]
    fn count(values: &[f64], lo: f64, hi: f64) -> i32 {
        values.iter().filter(|&&v| v >= lo && v < hi).count() as i32
    }

    /// Colour of the full scene at one subsample.
    fn scene(&self, x: f64, y: f64, s: &State, cues: &BallCues) -> [u8; 3] {
        let [ox0, ox1, oy0, oy1] = OCCLUDER_BAND;
        if self.config.occlusion && in_rect(x, y, ox0, ox1, oy0, oy1) {
            return OCCLUDER;
        }
        if in_disc(x, y, s.ball_x, s.ball_y) {
            return self.ball_colour(x, y, cues);
        }
        self.under_ball(x, y, s)
    }

    #[inline]
    fn ball_colour(&self, x: f64, y: f64, cues: &BallCues) -> [u8; 3] {
        if self.config.velocity == Velocity::Previous
            && in_disc(x, y, cues.previous.0, cues.previous.1)
        {
            BALL_PREVIOUS
        } else {
            BALL_COLOUR
        }
    }

    /// Colour of the scene without ball and occluder at one subsample.
    #[inline]
    fn under_ball(&self, x: f64, y: f64, s: &State) -> [u8; 3] {
        let spans = [paddle_span(s.paddle_left), paddle_span(s.paddle_right)];
        under_colour(x, y, &spans, [s.score_left, s.score_right])
    }

    /// Renders state `s` into `frame` (`R * R * channels`) and `mask` (`R * R`).
    pub fn render(&self, s: &State, cues: &BallCues, frame: &mut [u8], mask: &mut [u8]) {
        let res = self.config.resolution;
        let channels = self.config.channels();
        let pair = usize::from(s.score_left.min(4)) * 5 + usize::from(s.score_right.min(4));
        let (Some(rgb), Some(sums), Some(static_mask)) = (
            self.static_rgb.get(pair),
            self.static_sum.get(pair),
            self.static_mask.get(pair),
        ) else {
            return;
        };
        if frame.len() != res * res * channels || mask.len() != res * res {
            return;
        }
        if channels == 3 {
            frame.copy_from_slice(rgb);
        } else {
            for (dst, src) in frame.chunks_exact_mut(4).zip(rgb.chunks_exact(3)) {
                dst[..3].copy_from_slice(src);
                dst[3] = 0;
            }
        }
        mask.copy_from_slice(static_mask);

        let write = |frame: &mut [u8], p: usize, sum: [i32; 3]| {
            for (ch, v) in sum.iter().enumerate() {
                frame[p * channels + ch] = ((v + SUB2 / 2) / SUB2).clamp(0, 255) as u8;
            }
        };
        let paddles = [
            (LEFT, LEFT_PADDLE_X, paddle_span(s.paddle_left), LEFT_PADDLE),
            (
                RIGHT,
                RIGHT_PADDLE_X,
                paddle_span(s.paddle_right),
                RIGHT_PADDLE,
            ),
        ];
        // Subsample counts of a pixel inside the paddles: (left, right). The paddles' columns
        // are disjoint and lie on the plain background.
        let paddle_counts = |r: usize, c: usize| -> [i32; 2] {
            let ys = &self.ys[r * SUB..(r + 1) * SUB];
            let xs = &self.xs[c * SUB..(c + 1) * SUB];
            let mut n = [0; 2];
            for (k, (_, x0, (y0, y1), _)) in paddles.iter().enumerate() {
                let cx = Self::count(xs, *x0, x0 + PADDLE_WIDTH);
                if cx > 0 {
                    n[k] = cx * Self::count(ys, *y0, *y1);
                }
            }
            n
        };
        let base = |p: usize, n: [i32; 2]| -> [i32; 3] {
            let mut sum = [
                i32::from(sums[p * 3]),
                i32::from(sums[p * 3 + 1]),
                i32::from(sums[p * 3 + 2]),
            ];
            for (k, (_, _, _, colour)) in paddles.iter().enumerate() {
                for ch in 0..3 {
                    sum[ch] += n[k] * (i32::from(colour[ch]) - i32::from(BACKGROUND[ch]));
                }
            }
            sum
        };

        // Paddles over the plain background (their columns hold nothing else).
        for (object, x0, (y0, y1), colour) in &paddles {
            let cols = self.cols(*x0, x0 + PADDLE_WIDTH);
            let mut cxs = [0i32; 16];
            for (cx, c) in cxs.iter_mut().zip(cols.clone()) {
                *cx = Self::count(&self.xs[c * SUB..(c + 1) * SUB], *x0, x0 + PADDLE_WIDTH);
            }
            for r in self.rows(*y0, *y1) {
                let cy = Self::count(&self.ys[r * SUB..(r + 1) * SUB], *y0, *y1);
                if cy == 0 {
                    continue;
                }
                for (&cx, c) in cxs.iter().zip(cols.clone()) {
                    let n = cx * cy;
                    if n == 0 {
                        continue;
                    }
                    let p = r * res + c;
                    if n == SUB2 {
                        frame[p * channels..p * channels + 3].copy_from_slice(colour);
                    } else {
                        let mut sum = [0i32; 3];
                        for ch in 0..3 {
                            sum[ch] = i32::from(sums[p * 3 + ch])
                                + n * (i32::from(colour[ch]) - i32::from(BACKGROUND[ch]));
                        }
                        write(frame, p, sum);
                    }
                    mask[p] |= 1 << object;
                }
            }
        }

        // The ball on top. Per pixel, the disc's subsamples form a bit set; a pixel whose
        // static layer is all background (its subsample sum is exactly SUB2 * 230: every other
        // static colour is darker) and that no paddle touches needs no per-subsample lookups.
        let (bx, by) = (s.ball_x, s.ball_y);
        let rad = BALL_RADIUS;
        let (bx0, bx1, by0, by1) = (bx - rad, bx + rad, by - rad, by + rad);
        let previous_cue = self.config.velocity == Velocity::Previous;
        let rows = self.rows(by0, by1);
        let cols = self.cols(bx0, bx1);
        let spans = [paddles[0].2, paddles[1].2];
        let scores = [s.score_left, s.score_right];
        // Squared offsets of the box's subsample coordinates (at most 11 pixels of 4).
        let mut dx2 = [0.0f64; 64];
        let mut dy2 = [0.0f64; 64];
        let (Some(xs), Some(ys)) = (
            self.xs.get(cols.start * SUB..cols.end * SUB),
            self.ys.get(rows.start * SUB..rows.end * SUB),
        ) else {
            return;
        };
        for (d, &x) in dx2.iter_mut().zip(xs) {
            *d = (x - bx) * (x - bx);
        }
        for (d, &y) in dy2.iter_mut().zip(ys) {
            *d = (y - by) * (y - by);
        }
        let r2 = BALL_RADIUS * BALL_RADIUS;
        let plain_sum = SUB2 * i32::from(BACKGROUND[0]);
        for (ri, r) in rows.clone().enumerate() {
            for (ci, c) in cols.clone().enumerate() {
                let mut inside = 0u32;
                for (j, &dy) in dy2[ri * SUB..(ri + 1) * SUB].iter().enumerate() {
                    for (i, &dx) in dx2[ci * SUB..(ci + 1) * SUB].iter().enumerate() {
                        inside |= u32::from(dx + dy <= r2) << (j * SUB + i);
                    }
                }
                if inside == 0 {
                    continue;
                }
                let n = inside.count_ones() as i32;
                let p = r * res + c;
                // A paddle may share the pixel even where it misses the ball's box.
                let counts = paddle_counts(r, c);
                let mut sum = base(p, counts);
                if !previous_cue && counts == [0, 0] && i32::from(sums[p * 3]) == plain_sum {
                    for ch in 0..3 {
                        sum[ch] += n * (i32::from(BALL_COLOUR[ch]) - i32::from(BACKGROUND[ch]));
                    }
                } else {
                    let pixel_ys = &self.ys[r * SUB..(r + 1) * SUB];
                    let pixel_xs = &self.xs[c * SUB..(c + 1) * SUB];
                    for (j, &y) in pixel_ys.iter().enumerate() {
                        for (i, &x) in pixel_xs.iter().enumerate() {
                            if inside >> (j * SUB + i) & 1 == 0 {
                                continue;
                            }
                            let under = under_colour(x, y, &spans, scores);
                            let colour = self.ball_colour(x, y, cues);
                            for ch in 0..3 {
                                sum[ch] += i32::from(colour[ch]) - i32::from(under[ch]);
                            }
                        }
                    }
                }
                write(frame, p, sum);
                mask[p] |= 1 << BALL;
            }
        }

        // The projected next position in the fourth channel.
        if channels == 4 {
            let (nx, ny) = cues.next;
            for r in self.rows(ny - BALL_RADIUS, ny + BALL_RADIUS) {
                for c in self.cols(nx - BALL_RADIUS, nx + BALL_RADIUS) {
                    let mut n = 0;
                    for &y in &self.ys[r * SUB..(r + 1) * SUB] {
                        for &x in &self.xs[c * SUB..(c + 1) * SUB] {
                            n += i32::from(in_disc(x, y, nx, ny));
                        }
                    }
                    frame[(r * res + c) * 4 + 3] = ((n * 255 + SUB2 / 2) / SUB2) as u8;
                }
            }
        }

        // The occluder hides whatever passes behind it (masks keep reporting it).
        for &(r, c) in &self.occluded {
            let mut sum = [0i32; 3];
            for &y in &self.ys[r * SUB..(r + 1) * SUB] {
                for &x in &self.xs[c * SUB..(c + 1) * SUB] {
                    let colour = self.scene(x, y, s, cues);
                    for ch in 0..3 {
                        sum[ch] += i32::from(colour[ch]);
                    }
                }
            }
            write(frame, r * res + c, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(resolution: usize, velocity: Velocity, occlusion: bool) -> RenderConfig {
        RenderConfig {
            resolution,
            velocity,
            occlusion,
        }
    }

    fn state() -> State {
        State {
            paddle_left: 16.0,
            paddle_right: 10.0,
            ball_x: 20.5,
            ball_y: 8.5,
            ball_dir: 0.0,
            ball_speed: 2.0,
            score_left: 3,
            score_right: 1,
        }
    }

    #[test]
    fn resolution_out_of_range_is_an_error() {
        for res in [0, 15, 129, 1000] {
            assert!(Renderer::new(config(res, Velocity::None, false)).is_err());
        }
        assert!(Renderer::new(config(16, Velocity::None, false)).is_ok());
    }

    /// The fast paths agree with evaluating the full scene at every subsample.
    #[test]
    fn fast_paths_match_full_scene() {
        for res in [16, 32, 37, 64] {
            for velocity in [Velocity::None, Velocity::Previous] {
                let r =
                    Renderer::new(config(res, velocity, false)).unwrap_or_else(|e| panic!("{e}"));
                let mut s = state();
                for k in 0..30 {
                    let f = k as f64;
                    s.ball_x = 2.0 + (f * 0.731) % 28.0;
                    s.ball_y = 3.2 + (f * 1.37) % 25.6;
                    s.paddle_left = 2.0 + (f * 2.11) % 28.0;
                    s.paddle_right = 2.0 + (f * 0.53) % 28.0;
                    s.score_left = (k % 5) as u8;
                    let cues = BallCues {
                        previous: (s.ball_x - 1.0, s.ball_y + 0.7),
                        next: (s.ball_x + 1.0, s.ball_y),
                    };
                    let mut frame = vec![0u8; r.frame_len()];
                    let mut mask = vec![0u8; r.mask_len()];
                    r.render(&s, &cues, &mut frame, &mut mask);
                    for row in 0..res {
                        for col in 0..res {
                            let mut sum = [0i32; 3];
                            for &y in &r.ys[row * SUB..(row + 1) * SUB] {
                                for &x in &r.xs[col * SUB..(col + 1) * SUB] {
                                    let c = r.scene(x, y, &s, &cues);
                                    for ch in 0..3 {
                                        sum[ch] += i32::from(c[ch]);
                                    }
                                }
                            }
                            let p = row * res + col;
                            for ch in 0..3 {
                                let want = ((sum[ch] + SUB2 / 2) / SUB2) as u8;
                                assert_eq!(frame[p * 3 + ch], want, "res {res} pixel {row},{col}");
                            }
                        }
                    }
                }
            }
        }
    }
}
