//! Path counting over stacks of per-layer adjacency matrices `A_1 .. A_L` (each `N x N`).
//!
//! In the child x parent layout (attention matrices: row = query = child) the path-count matrix
//! is `(A_L + I) @ ... @ (A_1 + I)`; in the parent x child layout it is the same graph,
//! `(A_1 + I) @ ... @ (A_L + I)`. Entry `(i, j)` counts the paths through the layers, a step of
//! each either an edge of that layer or staying at the same node.

use super::bits::{bool_matmul_8x8, pack_8x8, pack_row, unpack_row, DIAGONAL_8X8};
use super::MAX_NODES;
use crate::error::{CoreError, CoreResult};
use rayon::prelude::*;

/// Orientation of an adjacency matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `A[i, j] != 0` is an edge `i -> j`.
    ParentChild,
    /// `A[i, j] != 0` is an edge `j -> i` (rows are children, as attention weights come).
    ChildParent,
}

/// Stacks handled per rayon task.
const STACKS_PER_TASK: usize = 1 << 10;

fn check_stack(
    len: usize,
    batch: usize,
    n_layers: usize,
    n: usize,
    out_len: usize,
    per: usize,
) -> CoreResult<()> {
    if batch == 0 {
        return Err(CoreError::invalid(
            "layers",
            "expected at least one layer stack, got an empty batch",
        ));
    }
    if n_layers == 0 {
        return Err(CoreError::invalid(
            "layers",
            "expected at least one layer, got 0",
        ));
    }
    if n == 0 || n > MAX_NODES {
        return Err(CoreError::invalid(
            "layers",
            format!("expected 1 to {MAX_NODES} nodes, got {n}"),
        ));
    }
    if batch.checked_mul(n_layers * n * n) != Some(len) {
        return Err(CoreError::invalid(
            "layers",
            format!("buffer of {len} values does not match ({batch}, {n_layers}, {n}, {n})"),
        ));
    }
    if out_len != batch * per {
        return Err(CoreError::invalid(
            "out",
            format!("expected {} values, got {out_len}", batch * per),
        ));
    }
    Ok(())
}

/// Numbers the path product works over.
trait Count: Copy + Send + Sync + PartialEq {
    const ZERO: Self;
    const ONE: Self;
    /// `acc + a * b`.
    fn mul_add(acc: Self, a: Self, b: Self) -> Self;
    /// `acc + a * b` where `b` is 0 or 1 (no multiplication for integers).
    fn mul_add_binary(acc: Self, a: Self, b: Self) -> Self;
    /// `acc + b`.
    fn add(acc: Self, b: Self) -> Self;
}

macro_rules! impl_count_for_unsigned {
    ($($t:ty),*) => {$(
        impl Count for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            #[inline(always)]
            fn mul_add(acc: Self, a: Self, b: Self) -> Self {
                acc.wrapping_add(a.wrapping_mul(b))
            }
            #[inline(always)]
            fn mul_add_binary(acc: Self, a: Self, b: Self) -> Self {
                acc.wrapping_add(a & b.wrapping_neg())
            }
            #[inline(always)]
            fn add(acc: Self, b: Self) -> Self {
                acc.wrapping_add(b)
            }
        }
    )*};
}

impl_count_for_unsigned!(u16, u32, u64);

impl Count for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn mul_add(acc: Self, a: Self, b: Self) -> Self {
        acc + a * b
    }
    #[inline(always)]
    fn mul_add_binary(acc: Self, a: Self, b: Self) -> Self {
        acc + a * b
    }
    #[inline(always)]
    fn add(acc: Self, b: Self) -> Self {
        acc + b
    }
}

/// Which factor of a product holds only zeros and ones (cheaper arithmetic).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Binary {
    None,
    Left,
    Right,
}

/// `out += left @ right` for row-major `n x n` matrices.
#[inline(always)]
fn add_product<T: Count>(left: &[T], right: &[T], n: usize, binary: Binary, out: &mut [T]) {
    for (out_row, left_row) in out.chunks_exact_mut(n).zip(left.chunks_exact(n)) {
        for (&a, right_row) in left_row.iter().zip(right.chunks_exact(n)) {
            if a == T::ZERO {
                continue;
            }
            let pairs = out_row.iter_mut().zip(right_row);
            match binary {
                Binary::Left => pairs.for_each(|(o, &b)| *o = T::add(*o, b)),
                Binary::Right => pairs.for_each(|(o, &b)| *o = T::mul_add_binary(*o, a, b)),
                Binary::None => pairs.for_each(|(o, &b)| *o = T::mul_add(*o, a, b)),
            }
        }
    }
}

/// `out += left @ right` for 8 x 8 matrices: fixed sizes and no data-dependent branches, so
/// the compiler unrolls the loops and keeps each output row in one SIMD register.
#[inline(always)]
fn add_product_8x8<T: Count>(left: &[T; 64], right: &[T; 64], binary: Binary, out: &mut [T; 64]) {
    for i in 0..8 {
        let mut row = [T::ZERO; 8];
        row.copy_from_slice(&out[8 * i..8 * i + 8]);
        for k in 0..8 {
            let a = left[8 * i + k];
            let right_row = &right[8 * k..8 * k + 8];
            for j in 0..8 {
                row[j] = match binary {
                    Binary::Left => T::mul_add_binary(row[j], right_row[j], a),
                    Binary::Right => T::mul_add_binary(row[j], a, right_row[j]),
                    Binary::None => T::mul_add(row[j], a, right_row[j]),
                };
            }
        }
        out[8 * i..8 * i + 8].copy_from_slice(&row);
    }
}

/// [`add_product`], through [`add_product_8x8`] for the common 8-node graphs.
fn add_product_sized<T: Count>(left: &[T], right: &[T], n: usize, binary: Binary, out: &mut [T]) {
    let fixed = (<&[T; 64]>::try_from(left), <&[T; 64]>::try_from(right));
    if let ((Ok(left), Ok(right)), Ok(out)) = (fixed, <&mut [T; 64]>::try_from(&mut *out)) {
        match binary {
            Binary::Left => add_product_8x8(left, right, Binary::Left, out),
            Binary::Right => add_product_8x8(left, right, Binary::Right, out),
            Binary::None => add_product_8x8(left, right, Binary::None, out),
        }
    } else {
        add_product(left, right, n, binary, out);
    }
}

/// Path-count product of one stack of `n_layers` matrices into `out` (`n x n`).
/// `binary[l]` says whether layer `l` holds only zeros and ones.
fn stack_product<T: Count>(
    stack: &[T],
    n: usize,
    layout: Layout,
    binary: &[bool],
    out: &mut [T],
    scratch: &mut [T],
) {
    let cells = n * n;
    out.copy_from_slice(&stack[..cells]);
    for i in 0..n {
        out[i * n + i] = T::add(out[i * n + i], T::ONE);
    }
    for (layer, &layer_binary) in stack.chunks_exact(cells).zip(binary).skip(1) {
        scratch.copy_from_slice(out);
        // ParentChild: P <- P (A + I) = P + P A; ChildParent: P <- (A + I) P = P + A P.
        let (left, right, binary) = match (layout, layer_binary) {
            (Layout::ParentChild, true) => (&*scratch, layer, Binary::Right),
            (Layout::ParentChild, false) => (&*scratch, layer, Binary::None),
            (Layout::ChildParent, true) => (layer, &*scratch, Binary::Left),
            (Layout::ChildParent, false) => (layer, &*scratch, Binary::None),
        };
        add_product_sized(left, right, n, binary, out);
    }
}

/// Upper bound of every entry of the product from the bitwise OR of each layer's entries
/// (an upper bound of its largest entry): `prod_l (n * or_l + 1)`, or `None` past `u64::MAX`.
fn count_bound(layer_ors: &[u64], n: usize) -> Option<u64> {
    layer_ors.iter().try_fold(1u64, |bound, &or| {
        let factor = (n as u64).checked_mul(or)?.checked_add(1)?;
        bound.checked_mul(factor)
    })
}

/// Exact checked product of one stack, for stacks whose bound does not fit in 64 bits.
fn checked_stack_product(
    stack: &[u64],
    n_layers: usize,
    n: usize,
    layout: Layout,
    out: &mut [u64],
) -> Option<()> {
    let cells = n * n;
    let mut current: Vec<u128> = stack[..cells].iter().map(|&v| u128::from(v)).collect();
    for i in 0..n {
        current[i * n + i] += 1;
    }
    let mut next = vec![0u128; cells];
    for layer in stack.chunks_exact(cells).skip(1).take(n_layers - 1) {
        for i in 0..n {
            for j in 0..n {
                let mut acc = current[i * n + j];
                for k in 0..n {
                    let (a, b) = match layout {
                        Layout::ParentChild => (current[i * n + k], u128::from(layer[k * n + j])),
                        Layout::ChildParent => (u128::from(layer[i * n + k]), current[k * n + j]),
                    };
                    acc = acc.checked_add(a.checked_mul(b)?)?;
                }
                next[i * n + j] = acc;
                if acc > u128::from(u64::MAX) {
                    return None;
                }
            }
        }
        std::mem::swap(&mut current, &mut next);
    }
    for (o, &c) in out.iter_mut().zip(&current) {
        *o = u64::try_from(c).ok()?;
    }
    Some(())
}

/// Integer entry types of layer stacks.
pub trait Entry: Copy + Into<u64> + Sync {}
impl Entry for u8 {}
impl Entry for u64 {}

/// Unsigned types the exact product runs in (narrow lanes make the SIMD loops wider).
trait Lane: Count {
    /// `value` truncated to this type (callers check it fits).
    fn from_u64(value: u64) -> Self;
    fn to_u64(self) -> u64;
}

macro_rules! impl_lane {
    ($($t:ty),*) => {$(
        impl Lane for $t {
            #[inline(always)]
            fn from_u64(value: u64) -> Self {
                value as $t
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                u64::from(self)
            }
        }
    )*};
}

impl_lane!(u16, u32, u64);

/// Input, product and scratch buffers of one lane type.
struct Buffers<T> {
    stack: Vec<T>,
    product: Vec<T>,
    scratch: Vec<T>,
}

impl<T: Lane> Buffers<T> {
    fn new(stack_len: usize, cells: usize) -> Self {
        Buffers {
            stack: vec![T::ZERO; stack_len],
            product: vec![T::ZERO; cells],
            scratch: vec![T::ZERO; cells],
        }
    }

    /// Exact product of `input` in lane type `T` (the caller checked the bound), into `out`.
    fn product<I: Entry>(
        &mut self,
        input: &[I],
        n: usize,
        layout: Layout,
        binary: &[bool],
        out: &mut [u64],
    ) {
        for (s, &v) in self.stack.iter_mut().zip(input) {
            *s = T::from_u64(v.into());
        }
        stack_product(
            &self.stack,
            n,
            layout,
            binary,
            &mut self.product,
            &mut self.scratch,
        );
        for (o, &v) in out.iter_mut().zip(&self.product) {
            *o = v.to_u64();
        }
    }
}

/// Per-task buffers of the exact path counts, in u16, u32 and u64 lanes.
struct ExactWorkspace {
    narrow16: Buffers<u16>,
    narrow32: Buffers<u32>,
    wide: Buffers<u64>,
    layer_ors: Vec<u64>,
    binary: Vec<bool>,
}

impl ExactWorkspace {
    fn new(n_layers: usize, n: usize) -> Self {
        let (cells, stack_len) = (n * n, n_layers * n * n);
        ExactWorkspace {
            narrow16: Buffers::new(stack_len, cells),
            narrow32: Buffers::new(stack_len, cells),
            wide: Buffers::new(stack_len, cells),
            layer_ors: vec![0; n_layers],
            binary: vec![false; n_layers],
        }
    }

    /// Exact product of one stack into `out`; `None` when a count exceeds `u64::MAX`.
    fn product<I: Entry>(
        &mut self,
        input: &[I],
        n: usize,
        layout: Layout,
        out: &mut [u64],
    ) -> Option<()> {
        let n_layers = self.layer_ors.len();
        for ((or, binary), layer) in self
            .layer_ors
            .iter_mut()
            .zip(&mut self.binary)
            .zip(input.chunks_exact(n * n))
        {
            *or = layer.iter().fold(0u64, |acc, &v| acc | v.into());
            *binary = *or <= 1;
        }
        match count_bound(&self.layer_ors, n) {
            Some(bound) if bound <= u64::from(u16::MAX) => {
                self.narrow16.product(input, n, layout, &self.binary, out)
            }
            Some(bound) if bound <= u64::from(u32::MAX) => {
                self.narrow32.product(input, n, layout, &self.binary, out)
            }
            Some(_) => self.wide.product(input, n, layout, &self.binary, out),
            None => {
                for (s, &v) in self.wide.stack.iter_mut().zip(input) {
                    *s = v.into();
                }
                checked_stack_product(&self.wide.stack, n_layers, n, layout, out)?;
            }
        }
        Some(())
    }
}

/// Exact path counts of `batch` stacks of `n_layers` non-negative integer `n x n` layers
/// (`u8` for binary or small counts, `u64` otherwise).
/// `out` receives `batch * n * n` counts; a count above `u64::MAX` is an overflow error.
pub fn path_counts_u64<I>(
    layers: &[I],
    batch: usize,
    n_layers: usize,
    n: usize,
    layout: Layout,
    out: &mut [u64],
) -> CoreResult<()>
where
    I: Entry,
{
    check_stack(layers.len(), batch, n_layers, n, out.len(), n * n)?;
    let (cells, stack_len) = (n * n, n_layers * n * n);
    let overflowed = out
        .par_chunks_mut(STACKS_PER_TASK * cells)
        .zip(layers.par_chunks(STACKS_PER_TASK * stack_len))
        .enumerate()
        .map(|(task, (out, layers))| {
            let mut work = ExactWorkspace::new(n_layers, n);
            for (index, (o, input)) in out
                .chunks_exact_mut(cells)
                .zip(layers.chunks_exact(stack_len))
                .enumerate()
            {
                if work.product(input, n, layout, o).is_none() {
                    return Some(task * STACKS_PER_TASK + index);
                }
            }
            None
        })
        .filter_map(|x| x)
        .min();
    match overflowed {
        Some(index) => Err(CoreError::Overflow(format!(
            "path counts of stack {index} exceed the uint64 range; pass float layers for float64 counts"
        ))),
        None => Ok(()),
    }
}

/// Float path counts (`float64`) of `batch` stacks of `n_layers` `n x n` layers.
pub fn path_counts_f64(
    layers: &[f64],
    batch: usize,
    n_layers: usize,
    n: usize,
    layout: Layout,
    out: &mut [f64],
) -> CoreResult<()> {
    check_stack(layers.len(), batch, n_layers, n, out.len(), n * n)?;
    let (cells, stack_len) = (n * n, n_layers * n * n);
    out.par_chunks_mut(STACKS_PER_TASK * cells)
        .zip(layers.par_chunks(STACKS_PER_TASK * stack_len))
        .for_each(|(out, layers)| {
            let mut scratch = vec![0f64; cells];
            let mut binary = vec![false; n_layers];
            for (o, stack) in out
                .chunks_exact_mut(cells)
                .zip(layers.chunks_exact(stack_len))
            {
                for (flag, layer) in binary.iter_mut().zip(stack.chunks_exact(cells)) {
                    *flag = layer.iter().all(|&v| v == 0.0 || v == 1.0);
                }
                stack_product(stack, n, layout, &binary, o, &mut scratch);
            }
        });
    Ok(())
}

/// Reachability (path product over the boolean semiring) of `batch` stacks of `n_layers`
/// `n x n` byte layers (non-zero = edge). `out` receives `n` packed row words per stack:
/// bit `j` of row `i` is entry `(i, j)` of the result, in the input's layout.
pub fn reachability(
    layers: &[u8],
    batch: usize,
    n_layers: usize,
    n: usize,
    layout: Layout,
    out: &mut [u64],
) -> CoreResult<()> {
    check_stack(layers.len(), batch, n_layers, n, out.len(), n)?;
    let stack_len = n_layers * n * n;
    out.par_chunks_mut(STACKS_PER_TASK * n)
        .zip(layers.par_chunks(STACKS_PER_TASK * stack_len))
        .for_each(|(out, layers)| reachability_rows(layers, n_layers, n, layout, out));
    Ok(())
}

/// [`reachability`] written as dense 0/1 bytes: `out` receives `n * n` bytes per stack.
pub fn reachability_dense(
    layers: &[u8],
    batch: usize,
    n_layers: usize,
    n: usize,
    layout: Layout,
    out: &mut [u8],
) -> CoreResult<()> {
    check_stack(layers.len(), batch, n_layers, n, out.len(), n * n)?;
    let stack_len = n_layers * n * n;
    out.par_chunks_mut(STACKS_PER_TASK * n * n)
        .zip(layers.par_chunks(STACKS_PER_TASK * stack_len))
        .for_each(|(out, layers)| {
            let mut rows = vec![0u64; out.len() / n];
            reachability_rows(layers, n_layers, n, layout, &mut rows);
            for (dense, &row) in out.chunks_exact_mut(n).zip(&rows) {
                unpack_row(row, dense);
            }
        });
    Ok(())
}

/// Packed reachability rows of consecutive stacks (one task's share, sequential).
fn reachability_rows(layers: &[u8], n_layers: usize, n: usize, layout: Layout, out: &mut [u64]) {
    let stack_len = n_layers * n * n;
    if n == 8 {
        for (reach, stack) in out.chunks_exact_mut(8).zip(layers.chunks_exact(stack_len)) {
            let mut product = pack_8x8(stack) | DIAGONAL_8X8;
            for layer in stack.chunks_exact(64).skip(1) {
                let factor = pack_8x8(layer) | DIAGONAL_8X8;
                product = match layout {
                    Layout::ParentChild => bool_matmul_8x8(product, factor),
                    Layout::ChildParent => bool_matmul_8x8(factor, product),
                };
            }
            for (i, word) in reach.iter_mut().enumerate() {
                *word = (product >> (8 * i)) & 0xFF;
            }
        }
        return;
    }
    let mut layer_rows = [0u64; MAX_NODES];
    let mut previous = [0u64; MAX_NODES];
    for (reach, stack) in out.chunks_exact_mut(n).zip(layers.chunks_exact(stack_len)) {
        for (layer_index, layer) in stack.chunks_exact(n * n).enumerate() {
            for (i, (word, row)) in layer_rows[..n]
                .iter_mut()
                .zip(layer.chunks_exact(n))
                .enumerate()
            {
                *word = pack_row(row) | (1u64 << i);
            }
            if layer_index == 0 {
                reach.copy_from_slice(&layer_rows[..n]);
                continue;
            }
            previous[..n].copy_from_slice(reach);
            // ParentChild: R <- R (A + I); ChildParent: R <- (A + I) R.
            let (left, right) = match layout {
                Layout::ParentChild => (&previous[..n], &layer_rows[..n]),
                Layout::ChildParent => (&layer_rows[..n], &previous[..n]),
            };
            for (word, &left_row) in reach.iter_mut().zip(left) {
                let mut acc = 0u64;
                let mut ks = left_row;
                while ks != 0 {
                    acc |= right[ks.trailing_zeros() as usize];
                    ks &= ks - 1;
                }
                *word = acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_product(stack: &[u64], n: usize, layout: Layout) -> Vec<u128> {
        let mut m: Vec<u128> = (0..n * n).map(|c| u128::from(c % (n + 1) == 0)).collect();
        for layer in stack.chunks_exact(n * n) {
            let a: Vec<u128> = (0..n * n)
                .map(|c| u128::from(layer[c]) + u128::from(c % (n + 1) == 0))
                .collect();
            let (l, r) = match layout {
                Layout::ParentChild => (m.clone(), a),
                Layout::ChildParent => (a, m.clone()),
            };
            for i in 0..n {
                for j in 0..n {
                    m[i * n + j] = (0..n).map(|k| l[i * n + k] * r[k * n + j]).sum();
                }
            }
        }
        m
    }

    #[test]
    fn counts_match_naive_products() {
        for n in [1usize, 3, 8, 11] {
            for layout in [Layout::ParentChild, Layout::ChildParent] {
                let (batch, n_layers) = (9, 4);
                let layers: Vec<u64> = (0..batch * n_layers * n * n)
                    .map(|c| ((c * 31 + 7) % 5 == 0) as u64 * (c % 3) as u64)
                    .collect();
                let mut out = vec![0u64; batch * n * n];
                path_counts_u64(&layers, batch, n_layers, n, layout, &mut out).unwrap();
                let mut reach = vec![0u64; batch * n];
                let bytes: Vec<u8> = layers.iter().map(|&v| v as u8).collect();
                reachability(&bytes, batch, n_layers, n, layout, &mut reach).unwrap();
                let mut dense = vec![0u8; batch * n * n];
                reachability_dense(&bytes, batch, n_layers, n, layout, &mut dense).unwrap();
                for (c, &d) in dense.iter().enumerate() {
                    let (b, cell) = (c / (n * n), c % (n * n));
                    assert_eq!(u64::from(d), (reach[b * n + cell / n] >> (cell % n)) & 1);
                }
                for b in 0..batch {
                    let expected = naive_product(
                        &layers[b * n_layers * n * n..(b + 1) * n_layers * n * n],
                        n,
                        layout,
                    );
                    for c in 0..n * n {
                        assert_eq!(u128::from(out[b * n * n + c]), expected[c]);
                        assert_eq!((reach[b * n + c / n] >> (c % n)) & 1 == 1, expected[c] > 0);
                    }
                }
            }
        }
    }

    #[test]
    fn every_integer_width_gives_exact_counts() {
        // Max entries 1 (u16 products), 300 (u32) and 2^20 (u64), n = 8, 3 layers.
        let n = 8;
        for (max, layout) in [
            (1u64, Layout::ParentChild),
            (300, Layout::ChildParent),
            (1 << 20, Layout::ParentChild),
        ] {
            let layers: Vec<u64> = (0..3 * n * n)
                .map(|c| (c as u64 * 2_654_435_761) % (max + 1))
                .collect();
            let mut out = vec![0u64; n * n];
            path_counts_u64(&layers, 1, 3, n, layout, &mut out).unwrap();
            let expected = naive_product(&layers, n, layout);
            let got: Vec<u128> = out.iter().map(|&v| u128::from(v)).collect();
            assert_eq!(got, expected, "max {max}");
        }
    }

    #[test]
    fn overflow_is_reported_and_large_exact_counts_are_kept() {
        let n = 2;
        let big = vec![1u64 << 40; 2 * n * n];
        let mut out = vec![0u64; n * n];
        let err = path_counts_u64(&big, 1, 2, n, Layout::ParentChild, &mut out).unwrap_err();
        assert!(matches!(err, CoreError::Overflow(_)));
        // Bound overflows (4 * 2^31 squared) but the exact values fit: checked path.
        let fits = vec![1u64 << 31, 0, 0, 1u64 << 31, 1u64 << 31, 0, 0, 1u64 << 31];
        path_counts_u64(&fits, 1, 2, n, Layout::ParentChild, &mut out).unwrap();
        let v = (1u64 << 31) + 1;
        assert_eq!(out, vec![v * v, 0, 0, v * v]);
    }
}
