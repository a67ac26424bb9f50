//! Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
//! as 1, 2, 3", SC 2011), written from the paper's specification and checked against the
//! Random123 known-answer vectors in the tests.
//!
//! Every draw of the simulator is a pure function of `(seed, sequence index, time step, slot)`:
//! the 128-bit counter is `[slot, step, sequence_lo, sequence_hi]` and the 64-bit key is the seed.
//! There is no generator state to carry, so the output does not depend on threads, batch splits
//! or the start index. `s2ssm.sim.reference` implements the same functions in NumPy.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// 2^-53, the spacing of the 53-bit uniforms.
const TWO_POW_M53: f64 = 1.0 / 9_007_199_254_740_992.0;

/// One Philox4x32 bijection of `ctr` under `key` with 10 rounds.
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// A uniform double in `[0, 1)` with 53 random bits from two words.
#[inline]
pub fn uniform_from(a: u32, b: u32) -> f64 {
    (f64::from(a >> 5) * 67_108_864.0 + f64::from(b >> 6)) * TWO_POW_M53
}

/// The draws of one sequence at one time step.
#[derive(Clone, Copy, Debug)]
pub struct Draws {
    key: [u32; 2],
    step: u32,
    seq: [u32; 2],
}

impl Draws {
    /// Draws of sequence `sequence` at time step `step` under `seed`.
    pub fn new(seed: u64, sequence: u64, step: u32) -> Self {
        Draws {
            key: [seed as u32, (seed >> 32) as u32],
            step,
            seq: [sequence as u32, (sequence >> 32) as u32],
        }
    }

    /// The four raw words of draw slot `slot`.
    #[inline]
    pub fn block(&self, slot: u32) -> [u32; 4] {
        philox4x32_10([slot, self.step, self.seq[0], self.seq[1]], self.key)
    }

    /// Two independent uniforms in `[0, 1)` of slot `slot`.
    #[inline]
    pub fn uniforms(&self, slot: u32) -> (f64, f64) {
        let w = self.block(slot);
        (uniform_from(w[0], w[1]), uniform_from(w[2], w[3]))
    }

    /// Two independent standard normals of slot `slot` (Box-Muller with portable libm).
    #[inline]
    pub fn normals(&self, slot: u32) -> (f64, f64) {
        let (u1, u2) = self.uniforms(slot);
        let r = libm::sqrt(-2.0 * libm::log(1.0 - u1));
        let theta = core::f64::consts::TAU * u2;
        let (sin, cos) = libm::sincos(theta);
        (r * cos, r * sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_random123() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn uniforms_in_range() {
        assert_eq!(uniform_from(0, 0), 0.0);
        assert!(uniform_from(u32::MAX, u32::MAX) < 1.0);
        let d = Draws::new(7, 3, 5);
        for slot in 0..100 {
            let (a, b) = d.uniforms(slot);
            assert!((0.0..1.0).contains(&a) && (0.0..1.0).contains(&b));
            let (x, y) = d.normals(slot);
            assert!(x.is_finite() && y.is_finite());
        }
    }
}
