//! Batched causal-graph metrics: structural Hamming distance, edge confusion counts,
//! path counting and reachability over stacks of per-layer adjacency matrices.
//!
//! Graphs arrive as row-major bytes of shape `(batch, rows, cols)`, any non-zero byte an edge.
//! `cols >= rows`: the first `rows` columns form the square node graph, the extra columns are
//! parent-only nodes (the environment / intervention token) compared cell by cell.
//! Every graph is independent, so the results do not depend on the thread count.

pub mod bits;
mod paths;

pub use paths::{
    path_counts_f64, path_counts_u64, reachability, reachability_dense, Entry, Layout,
};

use crate::error::{CoreError, CoreResult};
use bits::{
    low_bits, pack_diff_8x8, pack_rows, transpose_8x8, transpose_lower, DIAGONAL_8X8, UPPER_8X8,
};
use rayon::prelude::*;

/// Largest number of nodes (columns) a graph may have.
pub const MAX_NODES: usize = 64;

/// Graphs handled per rayon task.
const GRAPHS_PER_TASK: usize = 1 << 13;

/// How a reversed edge is counted by the structural Hamming distance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reversal {
    /// Every differing matrix cell counts: a reversal costs 2 (cdt's default).
    Double,
    /// Every node pair whose edges differ counts once: a reversal costs 1 (textbook SHD).
    Single,
}

/// Whether self-loops (diagonal cells) take part in a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diagonal {
    /// Diagonal cells are never compared.
    Ignore,
    /// A differing diagonal cell counts 1.
    Count,
}

/// Shape of a batch of graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphShape {
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
}

impl GraphShape {
    /// Cells per graph.
    pub fn cells(&self) -> usize {
        self.rows * self.cols
    }

    /// Checks the shape against the supported sizes and a buffer length.
    pub fn validate(&self, argument: &'static str, len: usize) -> CoreResult<()> {
        if self.batch == 0 {
            return Err(CoreError::invalid(
                argument,
                "expected at least one graph, got an empty batch",
            ));
        }
        if self.rows == 0 {
            return Err(CoreError::invalid(
                argument,
                "expected at least one node, got 0 rows",
            ));
        }
        if self.cols < self.rows {
            return Err(CoreError::invalid(
                argument,
                format!(
                    "expected cols >= rows, got shape ({}, {})",
                    self.rows, self.cols
                ),
            ));
        }
        if self.cols > MAX_NODES {
            return Err(CoreError::invalid(
                argument,
                format!("expected at most {MAX_NODES} nodes, got {}", self.cols),
            ));
        }
        let expected = self.batch.checked_mul(self.cells());
        if expected != Some(len) {
            return Err(CoreError::invalid(
                argument,
                format!("buffer of {len} cells does not match shape {self:?}"),
            ));
        }
        Ok(())
    }
}

fn check_pair(
    pred: &[u8],
    truth: &[u8],
    shape: GraphShape,
    out_len: usize,
    per: usize,
) -> CoreResult<()> {
    shape.validate("pred", pred.len())?;
    shape.validate("true", truth.len())?;
    if out_len != shape.batch * per {
        return Err(CoreError::invalid(
            "out",
            format!("expected {} values, got {out_len}", shape.batch * per),
        ));
    }
    Ok(())
}

/// SHD of one graph from its packed difference rows (`pred ^ true`).
fn shd_from_diff(
    diff: &[u64],
    rows: usize,
    reversal: Reversal,
    diagonal: Diagonal,
    scratch: &mut [u64],
) -> u32 {
    let diag: u32 = diff
        .iter()
        .enumerate()
        .map(|(i, &d)| ((d >> i) & 1) as u32)
        .sum();
    let diag_cost = if diagonal == Diagonal::Count { diag } else { 0 };
    match reversal {
        Reversal::Double => diff.iter().map(|d| d.count_ones()).sum::<u32>() - diag + diag_cost,
        Reversal::Single => {
            let square = low_bits(rows);
            let extra: u32 = diff.iter().map(|&d| (d & !square).count_ones()).sum();
            transpose_lower(diff, scratch);
            let pairs: u32 = diff
                .iter()
                .zip(scratch.iter())
                .enumerate()
                .map(|(i, (&d, &lower_t))| ((d & square & !low_bits(i + 1)) | lower_t).count_ones())
                .sum();
            pairs + extra + diag_cost
        }
    }
}

/// SHD of an 8 x 8 graph packed in one word.
#[inline(always)]
fn shd_8x8(diff: u64, reversal: Reversal, diagonal: Diagonal) -> u32 {
    let diag_cost = if diagonal == Diagonal::Count {
        (diff & DIAGONAL_8X8).count_ones()
    } else {
        0
    };
    let off = diff & !DIAGONAL_8X8;
    let off_cost = match reversal {
        Reversal::Double => off.count_ones(),
        Reversal::Single => ((off | transpose_8x8(off)) & UPPER_8X8).count_ones(),
    };
    off_cost + diag_cost
}

/// Structural Hamming distance of every graph pair; `out` has one value per graph.
pub fn shd(
    pred: &[u8],
    truth: &[u8],
    shape: GraphShape,
    reversal: Reversal,
    diagonal: Diagonal,
    out: &mut [u32],
) -> CoreResult<()> {
    check_pair(pred, truth, shape, out.len(), 1)?;
    let cells = shape.cells();
    let chunk_cells = GRAPHS_PER_TASK * cells;
    let tasks = out
        .par_chunks_mut(GRAPHS_PER_TASK)
        .zip(pred.par_chunks(chunk_cells))
        .zip(truth.par_chunks(chunk_cells));
    if shape.rows == 8 && shape.cols == 8 {
        tasks.for_each(|((out, pred), truth)| {
            for ((o, p), t) in out
                .iter_mut()
                .zip(pred.chunks_exact(64))
                .zip(truth.chunks_exact(64))
            {
                *o = shd_8x8(pack_diff_8x8(p, t), reversal, diagonal);
            }
        });
    } else {
        let rows = shape.rows;
        tasks.for_each(|((out, pred), truth)| {
            let mut p_rows = [0u64; MAX_NODES];
            let mut t_rows = [0u64; MAX_NODES];
            let mut scratch = [0u64; MAX_NODES];
            for ((o, p), t) in out
                .iter_mut()
                .zip(pred.chunks_exact(cells))
                .zip(truth.chunks_exact(cells))
            {
                pack_rows(p, shape.cols, &mut p_rows[..rows]);
                pack_rows(t, shape.cols, &mut t_rows[..rows]);
                for (pw, tw) in p_rows[..rows].iter_mut().zip(&t_rows[..rows]) {
                    *pw ^= tw;
                }
                *o = shd_from_diff(
                    &p_rows[..rows],
                    rows,
                    reversal,
                    diagonal,
                    &mut scratch[..rows],
                );
            }
        });
    }
    Ok(())
}

/// Confusion counts `[tp, fp, fn, tn]` of every graph pair over its directed cells;
/// `out` has four values per graph. Diagonal cells are skipped under [`Diagonal::Ignore`].
pub fn edge_counts(
    pred: &[u8],
    truth: &[u8],
    shape: GraphShape,
    diagonal: Diagonal,
    out: &mut [u32],
) -> CoreResult<()> {
    check_pair(pred, truth, shape, out.len(), 4)?;
    let (rows, cols, cells) = (shape.rows, shape.cols, shape.cells());
    let compared = (cells
        - if diagonal == Diagonal::Ignore {
            rows
        } else {
            0
        }) as u32;
    let chunk_cells = GRAPHS_PER_TASK * cells;
    out.par_chunks_mut(4 * GRAPHS_PER_TASK)
        .zip(pred.par_chunks(chunk_cells))
        .zip(truth.par_chunks(chunk_cells))
        .for_each(|((out, pred), truth)| {
            let mut p_rows = [0u64; MAX_NODES];
            let mut t_rows = [0u64; MAX_NODES];
            for ((o, p), t) in out
                .chunks_exact_mut(4)
                .zip(pred.chunks_exact(cells))
                .zip(truth.chunks_exact(cells))
            {
                pack_rows(p, cols, &mut p_rows[..rows]);
                pack_rows(t, cols, &mut t_rows[..rows]);
                let (mut tp, mut fp, mut fn_) = (0u32, 0u32, 0u32);
                for (i, (&pw, &tw)) in p_rows[..rows].iter().zip(&t_rows[..rows]).enumerate() {
                    let keep = if diagonal == Diagonal::Ignore {
                        !(1u64 << i)
                    } else {
                        u64::MAX
                    };
                    let (pw, tw) = (pw & keep, tw & keep);
                    tp += (pw & tw).count_ones();
                    fp += (pw & !tw).count_ones();
                    fn_ += (!pw & tw).count_ones();
                }
                o.copy_from_slice(&[tp, fp, fn_, compared - tp - fp - fn_]);
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_shd(
        p: &[u8],
        t: &[u8],
        rows: usize,
        cols: usize,
        reversal: Reversal,
        diagonal: Diagonal,
    ) -> u32 {
        let at = |g: &[u8], i: usize, j: usize| g[i * cols + j] != 0;
        let mut cost = 0;
        for i in 0..rows {
            for j in 0..cols {
                let differs = at(p, i, j) != at(t, i, j);
                if i == j {
                    cost += u32::from(differs && diagonal == Diagonal::Count);
                } else if j >= rows || reversal == Reversal::Double {
                    cost += u32::from(differs);
                } else if j > i {
                    cost += u32::from(differs || at(p, j, i) != at(t, j, i));
                }
            }
        }
        cost
    }

    /// Deterministic pseudo-random bytes (splitmix64), sparse-ish 0/1/2 values.
    fn graphs(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                [0u8, 0, 1, 2][(z % 4) as usize]
            })
            .collect()
    }

    #[test]
    fn shd_matches_naive_on_many_shapes() {
        for &(rows, cols) in &[
            (1, 1),
            (3, 3),
            (4, 5),
            (8, 8),
            (5, 9),
            (16, 16),
            (13, 20),
            (64, 64),
            (8, 10),
        ] {
            let shape = GraphShape {
                batch: 37,
                rows,
                cols,
            };
            let p = graphs(rows as u64 * 100 + cols as u64, shape.batch * shape.cells());
            let t = graphs(
                rows as u64 * 1000 + cols as u64 + 7,
                shape.batch * shape.cells(),
            );
            for reversal in [Reversal::Double, Reversal::Single] {
                for diagonal in [Diagonal::Ignore, Diagonal::Count] {
                    let mut out = vec![0u32; shape.batch];
                    shd(&p, &t, shape, reversal, diagonal, &mut out).unwrap();
                    for (b, &value) in out.iter().enumerate() {
                        let g = b * shape.cells()..(b + 1) * shape.cells();
                        assert_eq!(
                            value,
                            naive_shd(&p[g.clone()], &t[g], rows, cols, reversal, diagonal),
                            "{rows}x{cols} {reversal:?} {diagonal:?} graph {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn reversed_edge_costs_two_or_one() {
        let shape = GraphShape {
            batch: 1,
            rows: 2,
            cols: 2,
        };
        let (p, t) = ([0u8, 1, 0, 0], [0u8, 0, 1, 0]);
        let mut out = [0u32];
        shd(&p, &t, shape, Reversal::Double, Diagonal::Ignore, &mut out).unwrap();
        assert_eq!(out[0], 2);
        shd(&p, &t, shape, Reversal::Single, Diagonal::Ignore, &mut out).unwrap();
        assert_eq!(out[0], 1);
    }

    #[test]
    fn edge_counts_add_up() {
        let shape = GraphShape {
            batch: 5,
            rows: 4,
            cols: 5,
        };
        let p = graphs(1, shape.batch * shape.cells());
        let t = graphs(2, shape.batch * shape.cells());
        let mut out = vec![0u32; 4 * shape.batch];
        edge_counts(&p, &t, shape, Diagonal::Ignore, &mut out).unwrap();
        for counts in out.chunks_exact(4) {
            assert_eq!(counts.iter().sum::<u32>(), 16);
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let mut out = [0u32; 1];
        let bad = [
            GraphShape {
                batch: 0,
                rows: 2,
                cols: 2,
            },
            GraphShape {
                batch: 1,
                rows: 3,
                cols: 2,
            },
            GraphShape {
                batch: 1,
                rows: 65,
                cols: 65,
            },
            GraphShape {
                batch: 1,
                rows: 2,
                cols: 3,
            },
        ];
        for shape in bad {
            assert!(shd(
                &[0; 4],
                &[0; 4],
                shape,
                Reversal::Double,
                Diagonal::Ignore,
                &mut out
            )
            .is_err());
        }
    }
}
