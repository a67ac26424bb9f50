"""Triton kernels of :mod:`s2ssm.triton_kernels.selective_scan` (imported lazily, on first launch).

Kept apart so that ``TRITON_INTERPRET`` is read when a kernel is first needed, not when
``s2ssm`` is imported.

Design (issue #18): a program owns ``BLOCK_D`` channels x ``BLOCK_N`` states of one (batch,
group) and walks time one step at a time, the state in registers. A step costs an ``exp``, two
multiply-adds and the sum over the states per element: no scan tree, no shuffles along time.
Time is cut into chunks of ``CHUNK_L`` steps only so that the forward can save the state at the
start of every chunk for the backward.
"""

import triton
import triton.language as tl

from s2ssm.triton_kernels._dispatch import triton_interpret

INTERPRETED = triton_interpret()  # what triton.jit saw when this module was imported


LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)
_FTZ_EXP2: tl.constexpr = tl.constexpr(not INTERPRETED)


@triton.jit
def _exp2(x):
    """2^x; compiled, the one-instruction ``ex2.approx.ftz`` (a result below 2^-126 flushes to 0,
    a decay nothing can tell from 0), without the range checks of ``tl.exp2``."""
    if _FTZ_EXP2:
        return tl.inline_asm_elementwise(
            "ex2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    return tl.exp2(x)


@triton.jit
def _load_dt(ptrs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """dt of one step for a block of channels: (raw = delta + bias, softplus(raw)), 0 masked."""
    raw = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias
    dt = raw
    if SOFTPLUS:
        dt = tl.where(raw <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(raw, 20.0))), raw)
    dt = tl.where(mask, dt, 0.0)
    return raw, dt


@triton.jit
def _load_step(
    u_ptr, delta_ptr, b_ptr, c_ptr, row, bc_base, t, m, offs_n, bias,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Step t's inputs in float32: u and (raw, dt) per channel, B and C per state."""
    u = tl.load(u_ptr + row + t, mask=m, other=0.0).to(tl.float32)
    raw, dt = _load_dt(delta_ptr + row + t, m, bias, HAS_BIAS, SOFTPLUS)
    bt = tl.load(b_ptr + bc_base + t * BLOCK_N + offs_n).to(tl.float32)
    ct = tl.load(c_ptr + bc_base + t * BLOCK_N + offs_n).to(tl.float32)
    return u, raw, dt, bt, ct


@triton.jit
def _step_mask(offs_dg, DPG, t, L):
    """The channel mask of step t: all False past the end of the sequence (a vector-scalar
    comparison: the interpreter's ``&`` of a mask and a scalar bool is no mask)."""
    return offs_dg < tl.where(t < L, DPG, 0)


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, z_ptr, bias_ptr,
    y_ptr, last_ptr, chunk_ptr,
    DIM, L, N, DPG, N_CHUNKS, GROUPS,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, STORE_CHUNKS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK_L: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    pid_gd = tl.program_id(1)
    N_DBLK = tl.cdiv(DPG, BLOCK_D)
    grp = pid_gd // N_DBLK
    offs_dg = (pid_gd % N_DBLK) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = offs_dg < DPG
    offs_d = grp * DPG + offs_dg
    offs_n = tl.arange(0, BLOCK_N)
    # the states of a channel are contiguous in A and the saved states, yet each thread must
    # own all of them (the sums over states in registers): no vector loads along them
    rows_n = tl.max_contiguous(offs_n, 1)[:, None]
    n_mask = offs_n < N
    dn_mask = n_mask[:, None] & d_mask[None, :]
    a_tile = tl.load(a_ptr + offs_d[None, :] * N + rows_n, mask=dn_mask, other=0.0)
    a_tile = a_tile.to(tl.float32)
    a_log2 = a_tile * LOG2E  # exp(dt A) = 2^(dt A log2 e)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    dskip = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        dskip = tl.load(dskip_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    row = (pid_b * DIM + offs_d).to(tl.int64) * L  # start of each channel's sequence
    # B and C as (batch, group, N_CHUNKS x CHUNK_L, BLOCK_N), zero-padded: a step's states are
    # contiguous and need no mask (vector loads); past the end dt = 0 masks their effect
    bc_base = ((pid_b * GROUPS + grp) * N_CHUNKS * CHUNK_L).to(tl.int64) * BLOCK_N
    chunk_row = (pid_b * DIM + offs_d).to(tl.int64) * N_CHUNKS
    h = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for chunk in range(0, N_CHUNKS):
        if STORE_CHUNKS:
            cptr = chunk_ptr + (chunk_row[None, :] + chunk) * N + rows_n
            tl.store(cptr, h, mask=dn_mask)
        for i in range(0, CHUNK_L):
            t = chunk * CHUNK_L + i
            m = _step_mask(offs_dg, DPG, t, L)
            u, _, dt, bt, ct = _load_step(
                u_ptr, delta_ptr, b_ptr, c_ptr, row, bc_base, t, m, offs_n, bias,
                HAS_BIAS, SOFTPLUS, BLOCK_N,
            )  # fmt: skip
            # past the end dt = 0: exp(0) = 1 and no input, the state passes unchanged
            h = _exp2(dt[None, :] * a_log2) * h + bt[:, None] * (dt * u)[None, :]
            y = tl.sum(h * ct[:, None], axis=0)
            if HAS_D:
                y += u * dskip
            if HAS_Z:
                zt = tl.load(z_ptr + row + t, mask=m, other=0.0).to(tl.float32)
                y = y * zt * tl.sigmoid(zt)
            tl.store(y_ptr + row + t, y.to(y_ptr.dtype.element_ty), mask=m)
    last_row = (pid_b * DIM + offs_d).to(tl.int64) * N
    tl.store(last_ptr + last_row[None, :] + rows_n, h, mask=dn_mask)


def _prune_fwd_configs(configs, named_args, **kwargs):  # type: ignore[no-untyped-def]
    """No block of channels wider than the group (the narrowest config stays)."""
    width = max(16, triton.next_power_of_2(named_args["DPG"]))
    return [c for c in configs if c.kwargs["BLOCK_D"] <= width]


# The forward's block of channels and warps, timed per shape on the GPU. One channel per thread
# (BLOCK_D = 32 x warps) keeps a channel's states in one thread's registers (the sum over them
# without shuffles, benchmarks/kernel_report.py); two per thread halve the programs. A program's
# channels share nothing, but the sum over the states may round differently from one layout to
# the next, so deterministic runs take DETERMINISTIC_FWD instead (selective_scan._fwd_tiles).
FWD_CONFIGS = [
    triton.Config({"BLOCK_D": bd}, num_warps=w)
    for bd, w in ((16, 1), (32, 1), (64, 1), (64, 2), (128, 2), (128, 4), (256, 4))
]
DETERMINISTIC_FWD = {"BLOCK_D": 32, "num_warps": 1}
_scan_fwd_autotuned = triton.autotune(
    configs=FWD_CONFIGS,
    key=["DIM", "L", "N", "DPG", "GROUPS", "HAS_Z", "STORE_CHUNKS"],
    prune_configs_by={"early_config_prune": _prune_fwd_configs},
)(_scan_fwd_kernel)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, z_ptr, bias_ptr,
    chunk_ptr, dout_ptr, dlast_ptr, work_ptr,
    du_ptr, ddelta_ptr, dz_ptr, db_ptr, dc_ptr, da_ptr, dd_ptr,
    DIM, L, N, DPG, N_CHUNKS, GROUPS,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK_L: tl.constexpr,
):  # fmt: skip
    """Per chunk, last chunk first: a forward walk from the saved chunk-start state writes the
    chunk's states to this program's workspace (CHUNK_L x BLOCK_D x BLOCK_N floats) and the
    gradients that need only the states (dC, dz, dD); a backward walk then runs the adjoint
    ``g[t] = exp(dt[t+1] A) g[t+1] + dy[t] C[t]`` and the rest. dB and dC are summed over this
    program's channels only, into (batch, group, N_DBLK, L, N) the caller reduces."""
    pid_b = tl.program_id(0)
    pid_gd = tl.program_id(1)
    N_DBLK = tl.cdiv(DPG, BLOCK_D)
    grp = pid_gd // N_DBLK
    dblk = pid_gd % N_DBLK
    offs_dg = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = offs_dg < DPG
    offs_d = grp * DPG + offs_dg
    offs_n = tl.arange(0, BLOCK_N)
    # the states of a channel are contiguous in A and the saved states, yet each thread must
    # own all of them (the sums over states in registers): no vector loads along them
    rows_n = tl.max_contiguous(offs_n, 1)[:, None]
    n_mask = offs_n < N
    dn_mask = n_mask[:, None] & d_mask[None, :]
    a_tile = tl.load(a_ptr + offs_d[None, :] * N + rows_n, mask=dn_mask, other=0.0)
    a_tile = a_tile.to(tl.float32)
    a_log2 = a_tile * LOG2E  # exp(dt A) = 2^(dt A log2 e)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    dskip = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        dskip = tl.load(dskip_ptr + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    row = (pid_b * DIM + offs_d).to(tl.int64) * L
    # B and C as (batch, group, N_CHUNKS x CHUNK_L, BLOCK_N), zero-padded: a step's states are
    # contiguous and need no mask (vector loads); past the end dt = 0 masks their effect
    bc_base = ((pid_b * GROUPS + grp) * N_CHUNKS * CHUNK_L).to(tl.int64) * BLOCK_N
    # laid out as B and C (padded; the padding gets zeros)
    part = (pid_b * GROUPS + grp) * N_DBLK + dblk
    part_base = (part * N_CHUNKS * CHUNK_L).to(tl.int64) * BLOCK_N
    chunk_row = (pid_b * DIM + offs_d).to(tl.int64) * N_CHUNKS
    state_row = (pid_b * DIM + offs_d).to(tl.int64) * N
    # this program's workspace: one (BLOCK_D, BLOCK_N) state per step of a chunk
    program = pid_b * tl.num_programs(1) + pid_gd
    # row n of the tile holds the states n of the block's channels: a warp's lanes write
    # consecutive floats (coalesced) without vector stores, which would split the states
    tile = rows_n * BLOCK_D + tl.max_contiguous(tl.arange(0, BLOCK_D), 1)[None, :]
    work = work_ptr + program.to(tl.int64) * (CHUNK_L * BLOCK_D * BLOCK_N) + tile
    g = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    if HAS_DLAST:
        g = tl.load(dlast_ptr + state_row[None, :] + rows_n, mask=dn_mask, other=0.0)
        g = g.to(tl.float32)
    da_acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dd_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for rev in range(0, N_CHUNKS):
        chunk = N_CHUNKS - 1 - rev
        cptr = chunk_ptr + (chunk_row[None, :] + chunk) * N + rows_n
        h = tl.load(cptr, mask=dn_mask, other=0.0)
        for i in range(0, CHUNK_L):
            t = chunk * CHUNK_L + i
            m = _step_mask(offs_dg, DPG, t, L)
            u, _, dt, bt, ct = _load_step(
                u_ptr, delta_ptr, b_ptr, c_ptr, row, bc_base, t, m, offs_n, bias,
                HAS_BIAS, SOFTPLUS, BLOCK_N,
            )  # fmt: skip
            h = _exp2(dt[None, :] * a_log2) * h + bt[:, None] * (dt * u)[None, :]
            tl.store(work + i * (BLOCK_D * BLOCK_N), h)
            dy = tl.load(dout_ptr + row + t, mask=m, other=0.0).to(tl.float32)
            if HAS_Z:
                y0 = tl.sum(h * ct[:, None], axis=0)
                if HAS_D:
                    y0 += u * dskip
                zt = tl.load(z_ptr + row + t, mask=m, other=0.0).to(tl.float32)
                sig = tl.sigmoid(zt)
                tl.store(dz_ptr + row + t, dy * y0 * sig * (1.0 + zt * (1.0 - sig)), mask=m)
                dy = dy * zt * sig
            if HAS_D:
                dd_acc += dy * u
            tl.store(dc_ptr + part_base + t * BLOCK_N + offs_n, tl.sum(h * dy[None, :], axis=1))
        tl.debug_barrier()  # the workspace's states are read back below
        for i in range(0, CHUNK_L):
            j = CHUNK_L - 1 - i
            t = chunk * CHUNK_L + j
            m = _step_mask(offs_dg, DPG, t, L)
            u, raw, dt, bt, ct = _load_step(
                u_ptr, delta_ptr, b_ptr, c_ptr, row, bc_base, t, m, offs_n, bias,
                HAS_BIAS, SOFTPLUS, BLOCK_N,
            )  # fmt: skip
            dy = tl.load(dout_ptr + row + t, mask=m, other=0.0).to(tl.float32)
            if HAS_Z:
                zt = tl.load(z_ptr + row + t, mask=m, other=0.0).to(tl.float32)
                dy = dy * zt * tl.sigmoid(zt)
            h = tl.load(work + j * (BLOCK_D * BLOCK_N))
            # g arrives as exp(dt[t+1] A) g[t+1]; adding dy[t] C[t] makes it g[t]
            g += ct[:, None] * dy[None, :]
            dtu = dt * u
            prev = h - bt[:, None] * dtu[None, :]  # exp(dt A) h[t-1], without a division
            du = tl.sum(g * bt[:, None], axis=0) * dt + dy * dskip
            ddt = tl.sum(g * (a_tile * prev + bt[:, None] * u[None, :]), axis=0)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(raw)
            da_acc += g * prev * dt[None, :]
            tl.store(db_ptr + part_base + t * BLOCK_N + offs_n, tl.sum(g * dtu[None, :], axis=1))
            tl.store(du_ptr + row + t, du, mask=m)
            tl.store(ddelta_ptr + row + t, ddt, mask=m)
            g = g * _exp2(dt[None, :] * a_log2)
        tl.debug_barrier()  # the next chunk overwrites the workspace
    tl.store(da_ptr + state_row[None, :] + rows_n, da_acc, mask=dn_mask)
    if HAS_D:
        tl.store(dd_ptr + (pid_b * DIM + offs_d), dd_acc, mask=d_mask)


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
