"""Triton kernels of :mod:`s2ssm.triton_kernels.slot_attention` (imported lazily, on first launch).

Kept apart so that ``TRITON_INTERPRET`` is read when a kernel is first needed, not when
``s2ssm`` is imported.
"""

import triton
import triton.language as tl

from s2ssm.triton_kernels._dispatch import triton_interpret

INTERPRETED = triton_interpret()  # what triton.jit saw when this module was imported


@triton.jit
def _load_pairs(ptr, bh, H, sb, sh, sq, sk, oq, ok, valid):
    """One (query x key) tile of a tensor broadcast to (B*, H, S_q, S_k) by its strides."""
    b = bh // H
    h = bh % H
    return tl.load(ptr + b * sb + h * sh + oq[:, None] * sq + ok[None, :] * sk, mask=valid, other=0)


@triton.jit
def _attn_probs(
    q_ptr, k_ptr, mask_ptr, bh, H, SQ, SK, DQK, scale,
    msb, msh, msq, msk,
    MASK_MODE: tl.constexpr,
    BLOCK_SQ: tl.constexpr, BLOCK_SK: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """Load q, k and return (q, k, weights) for one (batch, head)."""
    oq = tl.arange(0, BLOCK_SQ)
    ok = tl.arange(0, BLOCK_SK)
    od = tl.arange(0, BLOCK_D)
    d_mask = od < DQK
    q = tl.load(
        q_ptr + (bh * SQ + oq[:, None]) * DQK + od[None, :],
        mask=(oq < SQ)[:, None] & d_mask[None, :],
        other=0.0,
    ).to(tl.float32)
    k = tl.load(
        k_ptr + (bh * SK + ok[:, None]) * DQK + od[None, :],
        mask=(ok < SK)[:, None] & d_mask[None, :],
        other=0.0,
    ).to(tl.float32)
    s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
    attend = (oq < SQ)[:, None] & (ok < SK)[None, :]
    if MASK_MODE != 0:
        mval = _load_pairs(mask_ptr, bh, H, msb, msh, msq, msk, oq, ok, attend)
        if MASK_MODE == 1:
            attend = attend & (mval != 0)
        else:
            s = s + mval.to(tl.float32)
    s = tl.where(attend, s, float("-inf"))
    m = tl.max(s, axis=1)
    m = tl.where(m == float("-inf"), 0.0, m)
    p = tl.exp(s - m[:, None])
    denom = tl.sum(p, axis=1)
    w = p / tl.where(denom > 0.0, denom, 1.0)[:, None]
    return q, k, w


@triton.jit
def _attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr, mask_ptr, gate_ptr, out_ptr, w_ptr,
    H, SQ, SK, DQK, DV, scale,
    msb, msh, msq, msk,
    gsb, gsh, gsq, gsk,
    MASK_MODE: tl.constexpr, HAS_GATE: tl.constexpr, STORE_W: tl.constexpr,
    BLOCK_SQ: tl.constexpr, BLOCK_SK: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0).to(tl.int64)
    _, _, w = _attn_probs(
        q_ptr, k_ptr, mask_ptr, bh, H, SQ, SK, DQK, scale, msb, msh, msq, msk,
        MASK_MODE, BLOCK_SQ, BLOCK_SK, BLOCK_D,
    )  # fmt: skip
    oq = tl.arange(0, BLOCK_SQ)
    ok = tl.arange(0, BLOCK_SK)
    odv = tl.arange(0, BLOCK_DV)
    v = tl.load(
        v_ptr + (bh * SK + ok[:, None]) * DV + odv[None, :],
        mask=(ok < SK)[:, None] & (odv < DV)[None, :],
        other=0.0,
    ).to(tl.float32)
    pw = w
    if HAS_GATE:
        valid = (oq < SQ)[:, None] & (ok < SK)[None, :]
        pw = w * _load_pairs(gate_ptr, bh, H, gsb, gsh, gsq, gsk, oq, ok, valid).to(tl.float32)
    out = tl.dot(pw, v, input_precision="ieee")
    o_mask = (oq < SQ)[:, None] & (odv < DV)[None, :]
    tl.store(
        out_ptr + (bh * SQ + oq[:, None]) * DV + odv[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=o_mask,
    )
    if STORE_W:
        w_mask = (oq < SQ)[:, None] & (ok < SK)[None, :]
        tl.store(
            w_ptr + (bh * SQ + oq[:, None]) * SK + ok[None, :],
            w.to(w_ptr.dtype.element_ty),
            mask=w_mask,
        )


@triton.jit
def _attn_bwd_kernel(
    q_ptr, k_ptr, v_ptr, mask_ptr, gate_ptr, dout_ptr, dw_ptr,
    dq_ptr, dk_ptr, dv_ptr, ds_ptr, dg_ptr,
    H, SQ, SK, DQK, DV, scale,
    msb, msh, msq, msk,
    gsb, gsh, gsq, gsk,
    MASK_MODE: tl.constexpr, HAS_GATE: tl.constexpr, HAS_DW: tl.constexpr,
    STORE_DS: tl.constexpr, STORE_DG: tl.constexpr,
    BLOCK_SQ: tl.constexpr, BLOCK_SK: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0).to(tl.int64)
    q, k, w = _attn_probs(
        q_ptr, k_ptr, mask_ptr, bh, H, SQ, SK, DQK, scale, msb, msh, msq, msk,
        MASK_MODE, BLOCK_SQ, BLOCK_SK, BLOCK_D,
    )  # fmt: skip
    oq = tl.arange(0, BLOCK_SQ)
    ok = tl.arange(0, BLOCK_SK)
    od = tl.arange(0, BLOCK_D)
    odv = tl.arange(0, BLOCK_DV)
    v = tl.load(
        v_ptr + (bh * SK + ok[:, None]) * DV + odv[None, :],
        mask=(ok < SK)[:, None] & (odv < DV)[None, :],
        other=0.0,
    ).to(tl.float32)
    dout = tl.load(
        dout_ptr + (bh * SQ + oq[:, None]) * DV + odv[None, :],
        mask=(oq < SQ)[:, None] & (odv < DV)[None, :],
        other=0.0,
    ).to(tl.float32)
    qk_mask = (oq < SQ)[:, None] & (ok < SK)[None, :]
    # out = (w x g) @ v: d(w x g) = dout @ v^T; dg = w x d(w x g); dw = g x d(w x g)
    dp = tl.dot(dout, tl.trans(v), input_precision="ieee")
    if HAS_GATE:
        g = _load_pairs(gate_ptr, bh, H, gsb, gsh, gsq, gsk, oq, ok, qk_mask).to(tl.float32)
        dv = tl.dot(tl.trans(w * g), dout, input_precision="ieee")
        if STORE_DG:
            tl.store(dg_ptr + (bh * SQ + oq[:, None]) * SK + ok[None, :], w * dp, mask=qk_mask)
        dp = dp * g
    else:
        dv = tl.dot(tl.trans(w), dout, input_precision="ieee")
    if HAS_DW:
        dp += tl.load(
            dw_ptr + (bh * SQ + oq[:, None]) * SK + ok[None, :], mask=qk_mask, other=0.0
        ).to(tl.float32)
    ds = w * (dp - tl.sum(w * dp, axis=1)[:, None])
    if STORE_DS:
        tl.store(ds_ptr + (bh * SQ + oq[:, None]) * SK + ok[None, :], ds, mask=qk_mask)
    dq = tl.dot(ds, k, input_precision="ieee") * scale
    dk = tl.dot(tl.trans(ds), q, input_precision="ieee") * scale
    tl.store(
        dq_ptr + (bh * SQ + oq[:, None]) * DQK + od[None, :],
        dq.to(dq_ptr.dtype.element_ty),
        mask=(oq < SQ)[:, None] & (od < DQK)[None, :],
    )
    tl.store(
        dk_ptr + (bh * SK + ok[:, None]) * DQK + od[None, :],
        dk.to(dk_ptr.dtype.element_ty),
        mask=(ok < SK)[:, None] & (od < DQK)[None, :],
    )
    tl.store(
        dv_ptr + (bh * SK + ok[:, None]) * DV + odv[None, :],
        dv.to(dv_ptr.dtype.element_ty),
        mask=(ok < SK)[:, None] & (odv < DV)[None, :],
    )
