"""Training: VAE pre-training, then the slot dynamics with the path-count penalty.

Steps ``0 .. vae.pretrain_steps - 1`` train the object VAE alone on masked object images; the
remaining ``optim.steps`` train the dynamics on next-slot prediction (the VAE frozen, or
fine-tuned with ``vae.freeze = false``). Everything that decides a step (its batch, its noise,
λ, the learning rate) is a function of the step number and of state saved in the checkpoint, so
``resume=True`` continues exactly where a run stopped. Runs under ``torchrun`` with
DistributedDataParallel (gloo on the CPU, nccl on CUDA); rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from s2ssm.config import Config, config_to_dict
from s2ssm.errors import InvalidInputError, S2ssmError
from s2ssm.files import atomic_write_text, write_json
from s2ssm.models import S2SSM, LambdaSchedule, dynamics_loss, edge_benefits
from s2ssm.progress import Progress
from s2ssm.training.checkpoint import (
    CorruptCheckpointError,
    checkpoints_newest_first,
    find_checkpoint,
    load_trainer_state,
    read_checkpoint,
    save_checkpoint,
)
from s2ssm.training.data import (
    SequenceSet,
    batch_indices,
    env_id,
    generate_sequences,
    load_dataset,
    shard_range,
)

__all__ = [
    "TrainResult",
    "TrainingDivergedError",
    "converged_error",
    "seed_everything",
    "select_device",
    "train",
]

log = logging.getLogger(__name__)


class TrainingDivergedError(S2ssmError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank)."""

    out_dir: Path
    step: int  # steps done in total (VAE + dynamics)
    history: list[dict[str, Any]]  # the metrics of every step this call ran
    checkpoint: Path | None
    model: S2SSM  # the trained model (this rank's replica)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch (all devices); optionally deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy global state, for third-party code)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidInputError(
            f"device: expected 'auto', 'cpu', 'cuda', 'cuda:1', ..., got {name!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"run.device is {name!r} but CUDA is not available")
    return device


def _dist_env() -> tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _maybe_init_distributed() -> bool:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def _lr_factor(step: int, config: Config) -> float:
    """Learning-rate multiplier of dynamics step ``step`` (0-based): linear warm-up, cosine decay
    to ``min_lr_ratio``."""
    opt = config.optim
    if step < opt.warmup_steps:
        return (step + 1) / opt.warmup_steps
    span = max(1, opt.steps - opt.warmup_steps)
    progress = min(1.0, (step - opt.warmup_steps) / span)
    return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def converged_error(run_dir: str | Path, window: int) -> float:
    """Mean next-slot MSE of the last ``window`` dynamics steps of a finished run, from the
    steps its ``metrics.jsonl`` logged in that window (``sparsity.target_run``)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise InvalidInputError(f"sparsity.target_run: {str(path)!r} does not exist")
    steps: list[tuple[int, float]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise InvalidInputError(
                f"sparsity.target_run: line {number} of {str(path)!r} is not JSON"
            ) from None
        if record.get("phase") == "dynamics" and isinstance(record.get("mse"), (int, float)):
            steps.append((int(record["step"]), float(record["mse"])))
    if not steps:
        raise InvalidInputError(f"sparsity.target_run: {str(path)!r} logs no dynamics step")
    last = steps[-1][0]
    errors = [mse for step, mse in steps if step > last - window]
    mean = sum(errors) / len(errors)
    if not (math.isfinite(mean) and mean > 0):
        raise InvalidInputError(f"sparsity.target_run: the error of {str(path)!r} is {mean}")
    return mean


#: Fields a resumed run may change: where and how it runs and logs, not what it computes;
#: and ``optim.steps``, to extend a run (never below the checkpoint's step).
RESUMABLE_CHANGES = frozenset(
    {"run.out_dir", "run.progress", "run.log_every", "run.checkpoint_every", "run.num_threads",
     "run.device", "run.tensorboard", "optim.steps"}
)  # fmt: skip


def _flat(config: Config) -> dict[str, Any]:
    return {
        f"{section}.{name}": value
        for section, fields in config_to_dict(config).items()
        for name, value in fields.items()
    }


def _check_resumable(saved: Config, config: Config, step: int, found: Path) -> None:
    """Refuse to resume the checkpoint ``found`` (made with ``saved``, at ``step``) under a
    config that would compute another run (a field outside :data:`RESUMABLE_CHANGES`
    differs) or that ends before the checkpoint. A longer ``optim.steps`` extends the run; its
    learning-rate schedule follows the new length from the resumed step on."""
    old, new = _flat(saved), _flat(config)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    changed = [k for k in changed if k not in RESUMABLE_CHANGES]
    if changed:
        listed = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise InvalidInputError(
            f"cannot resume {found}: its run was made with other settings ({listed}); resume "
            "with the run's own settings or start a new run.out_dir"
        )
    total = config.vae.pretrain_steps + config.optim.steps
    if step > total:
        raise InvalidInputError(
            f"cannot resume {found}: it is at step {step}, past the {total} steps of this "
            f"config (optim.steps = {config.optim.steps})"
        )


class _Trainer:
    """The state of one training run on one rank."""

    def __init__(self, config: Config, out_dir: Path, resume: bool, data: SequenceSet | None):
        self.config = config
        self.out_dir = out_dir
        self.rank, self.world, local_rank = _dist_env()
        self.device = select_device(config.run.device, local_rank)
        if config.run.num_threads > 0:
            torch.set_num_threads(config.run.num_threads)
        seed_everything(config.run.seed, config.run.deterministic)
        self.model = S2SSM(config).to(self.device)
        vae_params = list(self.model.vae.parameters())
        dyn_params = list(self.model.dynamics.parameters())
        self.optimizer = torch.optim.AdamW(
            [
                {"params": vae_params, "lr": config.vae.lr, "name": "vae"},
                {"params": dyn_params, "lr": config.optim.lr, "name": "dynamics"},
            ],
            lr=config.optim.lr,
            betas=(config.optim.beta1, config.optim.beta2),
            weight_decay=config.optim.weight_decay,
        )
        reference = None
        if config.sparsity.target_run and config.sparsity.enabled:
            reference = converged_error(config.sparsity.target_run, config.sparsity.target_window)
        self.schedule = LambdaSchedule(config.sparsity, reference)
        self.total_steps = config.vae.pretrain_steps + config.optim.steps
        self.step = 0
        self.checkpoint: Path | None = None
        candidates = checkpoints_newest_first(out_dir) if resume and out_dir.exists() else []
        if candidates:
            self._restore_newest_readable(candidates)
        else:
            if config.vae.init_from:
                self._load_vae(config.vae.init_from)
            # every rank draws different Gumbel / reparameterisation noise
            torch.manual_seed(config.run.seed * 1_000_003 + self.rank + 1)
        self.ddp_dynamics: nn.Module = self.model.dynamics
        if self.world > 1:
            self.ddp_dynamics = nn.parallel.DistributedDataParallel(
                self.model.dynamics,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        self.data = data if data is not None else self._make_data()
        self.slot_cache: torch.Tensor | None = None
        self.amp = config.run.amp and self.device.type == "cuda"

    # -- state ---------------------------------------------------------------------------------

    def _load_vae(self, path: str) -> None:
        _info, tensors = read_checkpoint(path)
        vae = {k.removeprefix("vae."): v for k, v in tensors.items() if k.startswith("vae.")}
        try:
            self.model.vae.load_state_dict(vae)
        except RuntimeError as error:
            raise InvalidInputError(
                f"vae.init_from: the VAE of {path!r} does not fit this config: {error}"
            ) from None
        log.info("VAE initialised from %s", path)

    def _restore_newest_readable(self, candidates: list[Path]) -> None:
        """Resume from the newest checkpoint that reads back whole; a damaged one (a kill
        during a copy, a full disk) is skipped with a warning."""
        problems = []
        for found in candidates:
            try:
                self._restore(found)
                return
            except CorruptCheckpointError as error:
                log.warning("skipping a damaged checkpoint: %s", error)
                problems.append(str(error))
        raise CorruptCheckpointError(
            "no checkpoint of this run can be read back: " + "; ".join(problems)
        )

    def _restore(self, found: Path) -> None:
        info, tensors = read_checkpoint(found)
        _check_resumable(info.config, self.config, info.step, found)
        self.model.load_state_dict(tensors)
        state = load_trainer_state(found)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["lambda"])
        self.step = int(state["step"])
        rngs = state["torch_rng"]
        torch.set_rng_state(rngs[min(self.rank, len(rngs) - 1)])
        if self.device.type == "cuda" and state.get("cuda_rng"):
            cuda = state["cuda_rng"]
            torch.cuda.set_rng_state(cuda[min(self.rank, len(cuda) - 1)], self.device)
        self.checkpoint = found
        log.info("resumed from %s at step %d", found, self.step)

    def _trainer_state(self) -> dict[str, Any]:
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        cpu_all, cuda_all = [cpu_rng], [cuda_rng] if cuda_rng is not None else []
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, (cpu_rng, cuda_rng))
            cpu_all = [g[0] for g in gathered]
            cuda_all = [g[1] for g in gathered] if cuda_rng is not None else []
        return {
            "optimizer": self.optimizer.state_dict(),
            "lambda": self.schedule.state_dict(),
            "torch_rng": cpu_all,
            "cuda_rng": cuda_all,
        }

    def save(self) -> None:
        state = self._trainer_state()  # collective: every rank takes part
        if self.rank == 0:
            self.checkpoint = save_checkpoint(
                self.out_dir, self.step, self.model, self.config, state
            )
        if self.world > 1:
            dist.barrier()

    # -- data ----------------------------------------------------------------------------------

    def _make_data(self) -> SequenceSet | None:
        cfg = self.config.data
        if cfg.shards:
            return SequenceSet.concat(
                [load_dataset(p, rank=self.rank, world=self.world) for p in cfg.shards]
            )
        if cfg.mode == "stream":
            return None
        start, stop = shard_range(cfg.train_sequences, self.rank, self.world)
        return generate_sequences(
            cfg.envs,
            stop - start,
            cfg.seq_len,
            seed=cfg.seed,
            start_index=start,
            resolution=cfg.resolution,
            intervention_prob=cfg.intervention_prob,
            num_threads=self.config.run.num_threads or None,
            velocity=cfg.velocity,
        )

    def _batch(self, step: int, size: int) -> SequenceSet:
        cfg = self.config.data
        if self.data is not None:
            idx = batch_indices(len(self.data), size, seed=cfg.seed, step=step, rank=self.rank)
            return self.data.take(idx)
        # stream: fresh sequences, environment and indices decided by (step, rank)
        slot = step * self.world + self.rank
        name = cfg.envs[slot % len(cfg.envs)]
        return generate_sequences(
            (name,),
            size,
            cfg.seq_len,
            seed=cfg.seed,
            start_index=slot * size,
            resolution=cfg.resolution,
            intervention_prob=cfg.intervention_prob,
            num_threads=self.config.run.num_threads or None,
            velocity=cfg.velocity,
        )

    def _frozen(self) -> bool:
        return self.config.vae.freeze and self.step >= self.config.vae.pretrain_steps

    @torch.no_grad()
    def _cached_slots(self) -> torch.Tensor | None:
        """Slots of the whole fixed dataset, computed once when the VAE is frozen."""
        if self.data is None or not self._frozen():
            return None
        if self.slot_cache is None:
            self.model.vae.eval()
            chunks = []
            for i in range(0, len(self.data), 64):
                part = self.data.take(np.arange(i, min(i + 64, len(self.data)))).torch(self.device)
                chunks.append(self.model.encode_slots(part["frames"], part["masks"]).float())
            self.slot_cache = torch.cat(chunks)
        return self.slot_cache

    # -- steps ---------------------------------------------------------------------------------

    def _vae_step(self) -> tuple[torch.Tensor, dict[str, float]]:
        k = self.config.model.num_objects
        frames_needed = max(1, self.config.vae.batch_size // k)
        batch = self._batch(self.step, frames_needed)
        rng = np.random.default_rng([self.config.data.seed, self.step, self.rank, 0xFAE])
        t = rng.integers(0, batch.frames.shape[1], size=len(batch))
        rows = np.arange(len(batch))
        frames = torch.from_numpy(np.ascontiguousarray(batch.frames[rows, t])).to(self.device)
        masks = torch.from_numpy(np.ascontiguousarray(batch.masks[rows, t])).to(self.device)
        images = self.model.object_images(frames, masks).flatten(0, 1)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss, metrics = self.model.vae.loss(images)
        return loss, {"loss": float(loss.detach()), **metrics}

    def _dynamics_step(self) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        dstep = self.step - cfg.vae.pretrain_steps
        size = cfg.optim.batch_size
        cache = self._cached_slots()
        idx = None
        if self.data is not None:
            idx = batch_indices(
                len(self.data), size, seed=cfg.data.seed, step=self.step, rank=self.rank
            )
            batch = self.data.take(idx)
        else:
            batch = self._batch(self.step, size)
        tensors = batch.torch(self.device)
        recon_loss = None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            if cache is not None and idx is not None:
                slots = cache[torch.from_numpy(idx).to(self.device)]
            elif cfg.vae.freeze:
                with torch.no_grad():
                    slots = self.model.encode_slots(tensors["frames"], tensors["masks"]).float()
            else:
                images = self.model.object_images(tensors["frames"], tensors["masks"])
                slots = self.model.vae.encode(images)[0].float()
                if cfg.vae.recon_weight > 0:
                    recon_loss = F.mse_loss(self.model.vae.decode(slots).float(), images)
            inter = tensors["interventions"] if cfg.model.use_interventions else None
            out = self.ddp_dynamics(slots, tensors["env_ids"], inter)
            lam = self.schedule.value
            benefit = None
            if cfg.model.gate == "bernoulli" and lam > 0:
                n = cfg.model.counterfactual_sequences or slots.shape[0]
                env_ids = tensors["env_ids"]
                benefit = edge_benefits(
                    self.model.dynamics,
                    slots[:n],
                    None if env_ids is None else env_ids[:n],
                    None if inter is None else inter[:n],
                    out.edges[:n],
                )
            loss, metrics = dynamics_loss(out, slots, lam, benefit)
            if recon_loss is not None:
                loss = loss + cfg.vae.recon_weight * recon_loss
                metrics["recon"] = float(recon_loss.detach())
                metrics["loss"] = float(loss.detach())
        metrics["lambda"] = lam
        metrics["lr"] = cfg.optim.lr * _lr_factor(dstep, cfg)
        return loss, metrics

    def _set_lr(self) -> None:
        cfg = self.config
        pre = cfg.vae.pretrain_steps
        for group in self.optimizer.param_groups:
            if group["name"] == "vae":
                factor = 1.0 if self.step < pre else _lr_factor(self.step - pre, cfg)
                group["lr"] = cfg.vae.lr * factor
            else:
                group["lr"] = cfg.optim.lr * _lr_factor(max(0, self.step - pre), cfg)

    def _average_vae_grads(self) -> None:
        if self.world <= 1:
            return
        for p in self.model.vae.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world)

    def run_step(self) -> dict[str, Any]:
        cfg = self.config
        pretraining = self.step < cfg.vae.pretrain_steps
        for p in self.model.vae.parameters():
            p.requires_grad_(not self._frozen())
        self.model.vae.train(not self._frozen())
        self.model.dynamics.train(True)
        self._set_lr()
        loss, metrics = self._vae_step() if pretraining else self._dynamics_step()
        if self.world > 1:
            flag = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=self.device)
            dist.all_reduce(flag)
            finite = bool(flag.item() == 0)
        else:
            finite = bool(torch.isfinite(loss))
        if not finite:
            where = f"; the last good checkpoint is {self.checkpoint}" if self.checkpoint else ""
            raise TrainingDivergedError(
                f"the loss became {loss.item()} at step {self.step} "
                f"({'VAE pre-training' if pretraining else 'dynamics'}){where}. Lower the "
                "learning rate (optim.lr / vae.lr) or the gradient clip and resume."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._average_vae_grads()
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 and not pretraining else math.inf
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = float(nn.utils.clip_grad_norm_(params, clip))
        if not math.isfinite(norm):  # the same on every rank: gradients are averaged
            where = f"; the last good checkpoint is {self.checkpoint}" if self.checkpoint else ""
            raise TrainingDivergedError(
                f"the gradient norm became {norm} at step {self.step}{where}. Lower the "
                "learning rate (optim.lr / vae.lr) or the gradient clip and resume."
            )
        metrics["grad_norm"] = norm
        self.optimizer.step()
        if not pretraining:
            mse, density = metrics["mse"], metrics["edge_density"]
            if self.world > 1:  # every rank feeds the schedule the same means
                t = torch.tensor([mse, density], device=self.device, dtype=torch.float64)
                dist.all_reduce(t)
                mse, density = (float(v) / self.world for v in t.tolist())
            self.schedule.update(mse, density)
        record: dict[str, Any] = {"step": self.step, "phase": "vae" if pretraining else "dynamics"}
        record.update(metrics)
        self.step += 1
        return record


def _tensorboard(log_dir: str) -> Any:
    """A TensorBoard writer (needs the ``tensorboard`` package: ``s2ssm[tensorboard]``)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=log_dir)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop logged lines of steps >= ``step`` (they are about to be redone after a resume)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:  # a line cut short by a kill: it is redone
            log.warning("dropping a partial line of %s", path)
            continue
        if isinstance(record, dict) and record.get("step", -1) < step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def train(
    config: Config,
    *,
    resume: bool = False,
    data: SequenceSet | None = None,
    max_steps: int | None = None,
) -> TrainResult:
    """Train ``config`` into ``config.run.out_dir``.

    ``resume``: continue from the run directory's latest checkpoint (a fresh start if there is
    none). ``data``: use these sequences instead of generating them (tests). ``max_steps``: stop
    (with a checkpoint) after this many steps in total, as if interrupted. Raises
    :class:`TrainingDivergedError` on a NaN/inf loss, keeping the last good checkpoint.
    """
    started_dist = _maybe_init_distributed()
    try:
        return _train(config, resume=resume, data=data, max_steps=max_steps)
    finally:
        if started_dist:
            dist.destroy_process_group()


def _train(
    config: Config, *, resume: bool, data: SequenceSet | None, max_steps: int | None
) -> TrainResult:
    out_dir = Path(config.run.out_dir)
    if data is None and not config.data.shards:
        for name in config.data.envs:
            env_id(name)  # a clear error for an unknown environment before any work
    if not resume and out_dir.is_dir() and find_checkpoint(out_dir) is not None:
        raise InvalidInputError(
            f"{out_dir} already holds a run with checkpoints: pass resume=True (--resume) to "
            "continue it, or choose another run.out_dir"
        )
    trainer = _Trainer(config, out_dir, resume, data)
    rank0 = trainer.rank == 0
    metrics_path = out_dir / "metrics.jsonl"
    if rank0:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", config_to_dict(config))
        if trainer.step == 0:
            metrics_path.unlink(missing_ok=True)
        else:
            _truncate_metrics(metrics_path, trainer.step)
    stop = trainer.total_steps if max_steps is None else min(trainer.total_steps, max_steps)
    history: list[dict[str, Any]] = []
    progress = Progress(
        stop, "train", initial=trainer.step, unit="step", enabled=rank0 and config.run.progress
    )
    t0 = time.perf_counter()
    board = _tensorboard(config.run.tensorboard) if rank0 and config.run.tensorboard else None
    handle = metrics_path.open("a", encoding="utf-8") if rank0 else None
    try:
        while trainer.step < stop and not trainer.schedule.converged:
            metrics = trainer.run_step()
            if trainer.schedule.converged:
                metrics["converged"] = True  # sparsity.plateau_window: the density plateaued
            metrics["time_s"] = round(time.perf_counter() - t0, 3)
            history.append(metrics)
            done = trainer.step
            last = done == stop or trainer.schedule.converged
            if handle is not None and (metrics["step"] % config.run.log_every == 0 or last):
                handle.write(json.dumps(metrics) + "\n")
                handle.flush()
                if board is not None:
                    for key, value in metrics.items():
                        if isinstance(value, int | float) and not isinstance(value, bool):
                            board.add_scalar(f"train/{key}", value, metrics["step"])
            shown = ("loss", "mse", "lambda")
            progress.set_postfix(", ".join(f"{k}={metrics[k]:.3g}" for k in shown if k in metrics))
            progress.update(1)
            if done % config.run.checkpoint_every == 0 or last:
                trainer.save()
    finally:
        if handle is not None:
            handle.close()
        progress.close()
        if board is not None:
            board.close()
    return TrainResult(out_dir, trainer.step, history, trainer.checkpoint, trainer.model)
