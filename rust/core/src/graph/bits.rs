//! Bit packing of dense 0/1 adjacency bytes into `u64` rows.
//!
//! A row of up to 64 cells packs into one `u64` (bit `j` = column `j`); a graph of at most
//! 8 x 8 cells packs into one `u64` (byte `i` = row `i`, bit `8 * i + j` = cell `(i, j)`).

/// Collapses every byte of `x` to 0 or 1 (1 where the byte is non-zero).
#[inline(always)]
fn normalize_bytes(x: u64) -> u64 {
    let mut t = x | (x >> 4);
    t |= t >> 2;
    t |= t >> 1;
    t & 0x0101_0101_0101_0101
}

/// Packs 8 little-endian bytes that are each 0 or 1 into the low 8 bits.
#[inline(always)]
fn pack8_binary(x: u64) -> u64 {
    x.wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Packs 8 little-endian bytes (any non-zero byte is an edge) into the low 8 bits.
#[inline(always)]
pub fn pack8(x: u64) -> u64 {
    pack8_binary(normalize_bytes(x))
}

/// Bits that are set in some byte above 1: a word is 0/1 bytes iff `word & NOT_BINARY == 0`.
const NOT_BINARY: u64 = 0xFEFE_FEFE_FEFE_FEFE;

/// Packs `pred ^ true` of two row-major 8 x 8 graphs (64 bytes each) into one word.
///
/// The common case (all bytes 0 or 1, as bool arrays are) XORs the bytes and packs once;
/// other non-zero bytes are normalised first.
#[inline(always)]
pub fn pack_diff_8x8(pred: &[u8], truth: &[u8]) -> u64 {
    let (mut diff, mut wide) = (0u64, 0u64);
    for (i, (p, t)) in pred[..64]
        .chunks_exact(8)
        .zip(truth[..64].chunks_exact(8))
        .enumerate()
    {
        let (p, t) = (load8(p), load8(t));
        wide |= p | t;
        diff |= pack8_binary(p ^ t) << (8 * i);
    }
    if wide & NOT_BINARY == 0 {
        diff
    } else {
        pack_8x8(pred) ^ pack_8x8(truth)
    }
}

/// Reads 8 bytes as a little-endian `u64`.
#[inline(always)]
fn load8(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// Packs one row of at most 64 cells (non-zero byte = edge) into a `u64`.
#[inline]
pub fn pack_row(row: &[u8]) -> u64 {
    debug_assert!(row.len() <= 64);
    let (mut bits, mut wide) = (0u64, 0u64);
    let mut chunks = row.chunks_exact(8);
    for (i, chunk) in (&mut chunks).enumerate() {
        let word = load8(chunk);
        wide |= word;
        bits |= pack8_binary(word) << (8 * i);
    }
    if wide & NOT_BINARY != 0 {
        bits = 0;
        for (i, chunk) in row.chunks_exact(8).enumerate() {
            bits |= pack8(load8(chunk)) << (8 * i);
        }
    }
    let shift = row.len() - chunks.remainder().len();
    for (offset, &byte) in chunks.remainder().iter().enumerate() {
        bits |= u64::from(byte != 0) << (shift + offset);
    }
    bits
}

/// Byte `b` spread over 8 bytes: byte `k` of `SPREAD[b]` is bit `k` of `b`.
const SPREAD: [u64; 256] = spread_table();

const fn spread_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut bit = 0;
        while bit < 8 {
            table[byte] |= (((byte >> bit) & 1) as u64) << (8 * bit);
            bit += 1;
        }
        byte += 1;
    }
    table
}

/// Writes the low `dense.len()` bits of `row` as 0/1 bytes (inverse of [`pack_row`]).
#[inline]
pub fn unpack_row(row: u64, dense: &mut [u8]) {
    for (k, chunk) in dense.chunks_mut(8).enumerate() {
        let bytes = SPREAD[((row >> (8 * k)) & 0xFF) as usize].to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Packs a row-major `rows x cols` graph into `rows` row words.
#[inline]
pub fn pack_rows(graph: &[u8], cols: usize, out: &mut [u64]) {
    for (word, row) in out.iter_mut().zip(graph.chunks_exact(cols)) {
        *word = pack_row(row);
    }
}

/// Packs a row-major 8 x 8 graph (64 bytes) into one `u64`, row `i` in byte `i`.
#[inline(always)]
pub fn pack_8x8(graph: &[u8]) -> u64 {
    let (mut bits, mut wide) = (0u64, 0u64);
    for (i, chunk) in graph[..64].chunks_exact(8).enumerate() {
        let word = load8(chunk);
        wide |= word;
        bits |= pack8_binary(word) << (8 * i);
    }
    if wide & NOT_BINARY == 0 {
        return bits;
    }
    bits = 0;
    for (i, chunk) in graph[..64].chunks_exact(8).enumerate() {
        bits |= pack8(load8(chunk)) << (8 * i);
    }
    bits
}

/// Boolean product `a · b` of two 8 x 8 bit matrices (row `i` in byte `i`).
#[inline(always)]
pub fn bool_matmul_8x8(a: u64, b: u64) -> u64 {
    const LOW_BITS: u64 = 0x0101_0101_0101_0101;
    let mut product = 0u64;
    for k in 0..8 {
        // Column k of `a` spread over whole bytes, times row k of `b` copied into every byte.
        let column = ((a >> k) & LOW_BITS).wrapping_mul(0xFF);
        let row = ((b >> (8 * k)) & 0xFF).wrapping_mul(LOW_BITS);
        product |= column & row;
    }
    product
}

/// Transposes an 8 x 8 bit matrix stored one row per byte (Hacker's Delight, 7-3).
#[inline(always)]
pub fn transpose_8x8(mut x: u64) -> u64 {
    let mut t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^= t ^ (t << 28);
    x
}

/// Mask of the diagonal cells of an 8 x 8 graph packed by [`pack_8x8`].
pub const DIAGONAL_8X8: u64 = 0x8040_2010_0804_0201;
/// Mask of the strictly upper triangle (j > i) of an 8 x 8 graph packed by [`pack_8x8`].
pub const UPPER_8X8: u64 = upper_8x8();

const fn upper_8x8() -> u64 {
    let mut mask = 0u64;
    let mut i = 0;
    while i < 8 {
        mask |= (0xFFu64 << (i + 1) & 0xFF) << (8 * i);
        i += 1;
    }
    mask
}

/// The low `n` bits set (`n` up to 64).
#[inline(always)]
pub fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Transposes the strictly lower triangle of a square bit matrix of `n` rows into `out`
/// (so `out[j]` has bit `i` set iff `rows[i]` has bit `j` set, for `j < i`).
#[inline]
pub fn transpose_lower(rows: &[u64], out: &mut [u64]) {
    out.iter_mut().for_each(|w| *w = 0);
    for (i, &row) in rows.iter().enumerate() {
        let mut lower = row & low_bits(i);
        while lower != 0 {
            let j = lower.trailing_zeros() as usize;
            out[j] |= 1u64 << i;
            lower &= lower - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_pack_8x8(graph: &[u8]) -> u64 {
        let mut bits = 0;
        for (cell, &b) in graph.iter().enumerate() {
            if b != 0 {
                bits |= 1 << cell;
            }
        }
        bits
    }

    #[test]
    fn pack8_handles_any_nonzero_byte() {
        let bytes = [0u8, 1, 2, 0, 255, 0, 128, 7];
        assert_eq!(pack8(u64::from_le_bytes(bytes)), 0b1101_0110);
    }

    #[test]
    fn pack_row_matches_naive_for_all_lengths() {
        for len in 0..=64usize {
            let row: Vec<u8> = (0..len).map(|j| ((j * 7 + 3) % 5 == 0) as u8 * 3).collect();
            let expected = row
                .iter()
                .enumerate()
                .fold(0u64, |acc, (j, &b)| acc | (u64::from(b != 0) << j));
            assert_eq!(pack_row(&row), expected, "len {len}");
        }
    }

    #[test]
    fn unpack_row_inverts_pack_row() {
        for len in 0..=64usize {
            let row: Vec<u8> = (0..len).map(|j| ((j * 5 + 2) % 3 == 0) as u8).collect();
            let mut dense = vec![7u8; len];
            unpack_row(pack_row(&row), &mut dense);
            assert_eq!(dense, row, "len {len}");
        }
    }

    #[test]
    fn pack_and_transpose_8x8() {
        let graph: Vec<u8> = (0..64).map(|c| ((c * 13 + 5) % 7 < 3) as u8).collect();
        let packed = pack_8x8(&graph);
        assert_eq!(packed, naive_pack_8x8(&graph));
        let mut transposed = vec![0u8; 64];
        for i in 0..8 {
            for j in 0..8 {
                transposed[8 * j + i] = graph[8 * i + j];
            }
        }
        assert_eq!(transpose_8x8(packed), naive_pack_8x8(&transposed));
    }

    #[test]
    fn diff_and_bool_product_8x8() {
        let a: Vec<u8> = (0..64).map(|c| ((c * 13 + 5) % 7 < 3) as u8).collect();
        let b: Vec<u8> = (0..64).map(|c| ((c * 5 + 1) % 4 == 0) as u8 * 9).collect();
        assert_eq!(
            pack_diff_8x8(&a, &b),
            naive_pack_8x8(&a) ^ naive_pack_8x8(&b)
        );
        let (pa, pb) = (naive_pack_8x8(&a), naive_pack_8x8(&b));
        let mut expected = 0u64;
        for i in 0..8 {
            for j in 0..8 {
                if (0..8).any(|k| (pa >> (8 * i + k)) & 1 == 1 && (pb >> (8 * k + j)) & 1 == 1) {
                    expected |= 1 << (8 * i + j);
                }
            }
        }
        assert_eq!(bool_matmul_8x8(pa, pb), expected);
    }

    #[test]
    fn masks() {
        let mut diag = 0u64;
        let mut upper = 0u64;
        for i in 0..8 {
            diag |= 1 << (9 * i);
            for j in i + 1..8 {
                upper |= 1 << (8 * i + j);
            }
        }
        assert_eq!(DIAGONAL_8X8, diag);
        assert_eq!(UPPER_8X8, upper);
    }
}
