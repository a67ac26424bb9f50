"""Triton kernels of :mod:`s2ssm.triton_kernels.selective_scan` (imported lazily, on first launch).

Kept apart so that ``TRITON_INTERPRET`` is read when a kernel is first needed, not when
``s2ssm`` is imported.
"""

import triton
import triton.language as tl

from s2ssm.triton_kernels._dispatch import triton_interpret

INTERPRETED = triton_interpret()  # what triton.jit saw when this module was imported


@triton.jit
def _linrec_combine(a1, b1, a2, b2):
    # compose h -> a1*h + b1 (earlier) with h -> a2*h + b2 (later)
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _load_dt(ptrs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    raw = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dt = raw
    if SOFTPLUS:
        dt = tl.where(raw <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(raw, 20.0))), raw)
    dt = tl.where(mask, dt, 0.0)
    return raw, dt


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, z_ptr, bias_ptr,
    y_ptr, last_ptr, chunk_ptr,
    DIM, L, N, DPG, N_DBLK, N_CHUNKS, GROUPS,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, STORE_CHUNKS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    pid_gd = tl.program_id(1)
    grp = pid_gd // N_DBLK
    offs_dg = (pid_gd % N_DBLK) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = offs_dg < DPG
    offs_d = grp * DPG + offs_dg
    offs_n = tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    dn_mask = d_mask[:, None] & n_mask[None, :]
    a_tile = tl.load(a_ptr + offs_d[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0)
    a_tile = a_tile.to(tl.float32)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    dskip = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        dskip = tl.load(dskip_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    row = (pid_b * DIM + offs_d).to(tl.int64)
    bc_row = ((pid_b * GROUPS + grp) * N + offs_n).to(tl.int64)
    last_col = tl.arange(0, BLOCK_L) == BLOCK_L - 1
    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for chunk in range(0, N_CHUNKS):
        if STORE_CHUNKS:
            cptr = chunk_ptr + ((row[:, None] * N_CHUNKS + chunk) * N + offs_n[None, :])
            tl.store(cptr, h, mask=dn_mask)
        offs_l = chunk * BLOCK_L + tl.arange(0, BLOCK_L)
        l_mask = offs_l < L
        m2 = d_mask[:, None] & l_mask[None, :]
        dl = row[:, None] * L + offs_l[None, :]
        u = tl.load(u_ptr + dl, mask=m2, other=0.0).to(tl.float32)
        _, dt = _load_dt(delta_ptr + dl, m2, bias, HAS_BIAS, SOFTPLUS)
        nl = bc_row[:, None] * L + offs_l[None, :]
        nl_mask = n_mask[:, None] & l_mask[None, :]
        bt = tl.load(b_ptr + nl, mask=nl_mask, other=0.0).to(tl.float32)
        ct = tl.load(c_ptr + nl, mask=nl_mask, other=0.0).to(tl.float32)
        decay = tl.exp(dt[:, None, :] * a_tile[:, :, None])
        inp = (dt * u)[:, None, :] * bt[None, :, :]
        prod, acc = tl.associative_scan((decay, inp), 2, _linrec_combine)
        hs = prod * h[:, :, None] + acc
        y = tl.sum(hs * ct[None, :, :], axis=1)
        if HAS_D:
            y += u * dskip[:, None]
        if HAS_Z:
            zt = tl.load(z_ptr + dl, mask=m2, other=0.0).to(tl.float32)
            y = y * zt * tl.sigmoid(zt)
        tl.store(y_ptr + dl, y.to(y_ptr.dtype.element_ty), mask=m2)
        h = tl.sum(tl.where(last_col[None, None, :], hs, 0.0), axis=2)
    tl.store(last_ptr + row[:, None] * N + offs_n[None, :], h, mask=dn_mask)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, z_ptr, bias_ptr,
    chunk_ptr, dout_ptr, dlast_ptr,
    du_ptr, ddelta_ptr, dz_ptr, db_ptr, dc_ptr, da_ptr, dd_ptr,
    DIM, L, N, DPG, N_DBLK, N_CHUNKS, GROUPS,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    pid_gd = tl.program_id(1)
    grp = pid_gd // N_DBLK
    dblk = pid_gd % N_DBLK
    offs_dg = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = offs_dg < DPG
    offs_d = grp * DPG + offs_dg
    offs_n = tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    dn_mask = d_mask[:, None] & n_mask[None, :]
    a_tile = tl.load(a_ptr + offs_d[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0)
    a_tile = a_tile.to(tl.float32)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    dskip = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        dskip = tl.load(dskip_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    row = (pid_b * DIM + offs_d).to(tl.int64)
    bc_row = ((pid_b * GROUPS + grp) * N + offs_n).to(tl.int64)
    # partial sums over this block of channels: (batch, groups, N_DBLK, N, L)
    part_row = (((pid_b * GROUPS + grp) * N_DBLK + dblk) * N + offs_n).to(tl.int64)
    first_col = tl.arange(0, BLOCK_L) == 0
    g = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    if HAS_DLAST:
        g = tl.load(dlast_ptr + row[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0)
        g = g.to(tl.float32)
    da_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dd_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for rev in range(0, N_CHUNKS):
        chunk = N_CHUNKS - 1 - rev
        offs_l = chunk * BLOCK_L + tl.arange(0, BLOCK_L)
        l_mask = offs_l < L
        m2 = d_mask[:, None] & l_mask[None, :]
        dl = row[:, None] * L + offs_l[None, :]
        u = tl.load(u_ptr + dl, mask=m2, other=0.0).to(tl.float32)
        raw, dt = _load_dt(delta_ptr + dl, m2, bias, HAS_BIAS, SOFTPLUS)
        nl = bc_row[:, None] * L + offs_l[None, :]
        nl_mask = n_mask[:, None] & l_mask[None, :]
        bt = tl.load(b_ptr + nl, mask=nl_mask, other=0.0).to(tl.float32)
        ct = tl.load(c_ptr + nl, mask=nl_mask, other=0.0).to(tl.float32)
        cptr = chunk_ptr + ((row[:, None] * N_CHUNKS + chunk) * N + offs_n[None, :])
        h0 = tl.load(cptr, mask=dn_mask, other=0.0)
        # recompute the states of this chunk
        decay = tl.exp(dt[:, None, :] * a_tile[:, :, None])
        inp = (dt * u)[:, None, :] * bt[None, :, :]
        prod, acc = tl.associative_scan((decay, inp), 2, _linrec_combine)
        hs = prod * h0[:, :, None] + acc
        dout = tl.load(dout_ptr + dl, mask=m2, other=0.0).to(tl.float32)
        dy = dout
        if HAS_Z:
            y0 = tl.sum(hs * ct[None, :, :], axis=1)
            if HAS_D:
                y0 += u * dskip[:, None]
            zt = tl.load(z_ptr + dl, mask=m2, other=0.0).to(tl.float32)
            sig = tl.sigmoid(zt)
            dz = dout * y0 * sig * (1.0 + zt * (1.0 - sig))
            tl.store(dz_ptr + dl, dz, mask=m2)
            dy = dout * zt * sig
        dy = tl.where(m2, dy, 0.0)
        du = dy * dskip[:, None]
        if HAS_D:
            dd_acc += tl.sum(dy * u, axis=1)
        # adjoint g[t] = exp(dt[t+1]*A) * g[t+1] + dy[t]*C[t]; exp(0) = 1 past the end
        m2n = d_mask[:, None] & (offs_l + 1 < L)[None, :]
        _, dt_next = _load_dt(delta_ptr + dl + 1, m2n, bias, HAS_BIAS, SOFTPLUS)
        alpha = tl.exp(dt_next[:, None, :] * a_tile[:, :, None])
        cin = dy[:, None, :] * ct[None, :, :]
        gprod, gacc = tl.associative_scan((alpha, cin), 2, _linrec_combine, reverse=True)
        gs = gprod * g[:, :, None] + gacc
        # gradients of this chunk (hs - inp = exp(dt*A) * h[t-1], no division needed)
        prev = hs - inp
        dbu = gs * (dt * u)[:, None, :]
        tl.store(db_ptr + part_row[:, None] * L + offs_l[None, :], tl.sum(dbu, axis=0),
                 mask=nl_mask)  # fmt: skip
        dct = tl.sum(hs * dy[:, None, :], axis=0)
        tl.store(dc_ptr + part_row[:, None] * L + offs_l[None, :], dct, mask=nl_mask)
        du += tl.sum(gs * bt[None, :, :], axis=1) * dt
        ddt = tl.sum(gs * (a_tile[:, :, None] * prev + bt[None, :, :] * u[:, None, :]), axis=1)
        da_acc += tl.sum(gs * prev * dt[:, None, :], axis=2)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        tl.store(du_ptr + dl, du, mask=m2)
        tl.store(ddelta_ptr + dl, ddt, mask=m2)
        g = tl.sum(tl.where(first_col[None, None, :], gs, 0.0), axis=2)
    tl.store(da_ptr + row[:, None] * N + offs_n[None, :], da_acc, mask=dn_mask)
    if HAS_D:
        tl.store(dd_ptr + row, dd_acc, mask=d_mask)


@triton.jit
def _state_update_kernel(
    state_ptr, x_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, z_ptr, bias_ptr, out_ptr,
    DIM, N, DPG, N_DBLK, GROUPS,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """One recurrent step for a block of channels; the state is updated in place."""
    pid_b = tl.program_id(0)
    pid_gd = tl.program_id(1)
    grp = pid_gd // N_DBLK
    offs_dg = (pid_gd % N_DBLK) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = offs_dg < DPG
    offs_d = grp * DPG + offs_dg
    offs_n = tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    dn_mask = d_mask[:, None] & n_mask[None, :]
    row = (pid_b * DIM + offs_d).to(tl.int64)
    sptr = state_ptr + row[:, None] * N + offs_n[None, :]
    state = tl.load(sptr, mask=dn_mask, other=0.0).to(tl.float32)
    a_tile = tl.load(a_ptr + offs_d[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0)
    x = tl.load(x_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(dt, 20.0))), dt)
    bc_off = ((pid_b * GROUPS + grp) * N + offs_n).to(tl.int64)
    bv = tl.load(b_ptr + bc_off, mask=n_mask, other=0.0).to(tl.float32)
    cv = tl.load(c_ptr + bc_off, mask=n_mask, other=0.0).to(tl.float32)
    decay = tl.exp(dt[:, None] * a_tile.to(tl.float32))
    state = decay * state + (dt * x)[:, None] * bv[None, :]
    tl.store(sptr, state.to(state_ptr.dtype.element_ty), mask=dn_mask)
    out = tl.sum(state * cv[None, :], axis=1)
    if HAS_D:
        out += x * tl.load(dskip_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
        out = out * z * tl.sigmoid(z)
    tl.store(out_ptr + row, out.to(out_ptr.dtype.element_ty), mask=d_mask)
