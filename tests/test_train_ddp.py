"""DistributedDataParallel training under torchrun: 2 gloo processes on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from s2ssm.training.checkpoint import load_model

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from s2ssm.config import load_config
    from s2ssm.training.trainer import train

    out, resume, overrides = sys.argv[1], sys.argv[2] == "resume", sys.argv[3:]
    torch.set_num_threads(1)
    config = load_config(None, [f"run.out_dir={json.dumps(out)}", *overrides])
    result = train(config, resume=resume)
    params = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    with open(f"{out}/rank{os.environ['RANK']}.json", "w") as handle:
        json.dump({"losses": [h["loss"] for h in result.history], "step": result.step,
                   "params": params.tolist()}, handle)
    """
)

OVERRIDES = [
    "run.device='cpu'",
    "run.progress=false",
    "run.log_every=1",
    "run.checkpoint_every=100",
    "data.train_sequences=4",
    "data.seq_len=5",
    "data.resolution=16",
    "vae.latent_dim=4",
    "vae.channels=[4]",
    "vae.decoder_channels=4",
    "vae.pretrain_steps=2",
    "vae.batch_size=8",
    "model.d_model=8",
    "model.d_state=4",
    "model.num_layers=1",
    "optim.batch_size=2",
    "optim.warmup_steps=1",
    "sparsity.warmup_steps=1",
]


def torchrun(out: Path, mode: str, *extra: str) -> list[dict[str, object]]:
    script = out / "ddp_train.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(script), str(out), mode, *OVERRIDES, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_ddp_two_gloo_processes_train_resume_and_agree(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    first = torchrun(out, "fresh", "optim.steps=1")  # 3 steps, checkpoint at the end
    assert [f["step"] for f in first] == [3, 3]
    assert first[0]["losses"] != first[1]["losses"]  # each rank trains on its own data shard
    assert first[0]["params"] == first[1]["params"]  # ... with the same averaged gradients
    second = torchrun(out, "resume", "optim.steps=3")  # 2 more steps
    assert [s["step"] for s in second] == [5, 5]
    assert len(second[0]["losses"]) == 2  # type: ignore[arg-type]
    assert second[0]["params"] == second[1]["params"]
    model, info = load_model(out)
    assert info.step == 5
    saved = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
    assert saved == second[0]["params"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 1, 2, 3, 4]
