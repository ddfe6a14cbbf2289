"""Run by tests/test_slurm_cluster.py through the launcher's sbatch script (srun, one task per device):
a short shared.engine.fit on a fixed global batch, resumable from its checkpoint; rank 0 then writes
the weights, the world it saw and every rank's node and address (the address each rank reaches the
rendezvous from, gathered over the process group).

python -m tests.workers.slurm_fit --scale smoke --set engine.devices=2 [--set engine.num_nodes=1] \
    --out DIR [--steps 40] [--sleep 0.05]
(plain python, without SLURM's variables, for the one-process reference.)
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from pathlib import Path

import torch

from shared.engine import EngineConfig, LoopConfig, fit, make_fabric
from shared.io import atomic_write_json
from shared.progress import setup_logging

GLOBAL_BATCH, DIM, ACCUM = 8, 6, 2


def engine_config(overrides: list[str]) -> EngineConfig:
    """EngineConfig from the launcher's `--set engine.X=V` flags (others are the paper's, ignored here)."""
    values: dict[str, object] = {"accelerator": "cpu"}
    for item in overrides:
        key, _, value = item.partition("=")
        if key.startswith("engine."):
            name = key.removeprefix("engine.")
            values[name] = int(value) if name in ("devices", "num_nodes") else value
    world = int(values.get("devices", 1)) * int(values.get("num_nodes", 1))
    return EngineConfig(**values, strategy="ddp" if world > 1 else "auto")  # type: ignore[arg-type]


def own_address() -> str:
    """The address this process reaches MASTER_ADDR from (its node's own address on that network)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((os.environ.get("MASTER_ADDR", "127.0.0.1"), 9))
        return s.getsockname()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    setup_logging()  # the engine's resume and preemption lines reach the job's log
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fabric = make_fabric(engine_config(args.overrides))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(DIM, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    g = torch.Generator().manual_seed(1)
    xs, ys = (
        torch.randn(args.steps, GLOBAL_BATCH, DIM, generator=g),
        torch.randn(args.steps, GLOBAL_BATCH, 1, generator=g),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    per = GLOBAL_BATCH // (fabric.world_size * ACCUM)

    def batch_fn(step: int, micro: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
        if micro == 0 and args.sleep:
            time.sleep(args.sleep)  # a run long enough to be signalled in the middle
            if rank == 0:
                (out / "step").write_text(str(step))
        chunk = micro * world + rank
        return xs[step, chunk * per : (chunk + 1) * per], ys[step, chunk * per : (chunk + 1) * per]

    def loss_fn(m: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.mse_loss(m(batch[0]), batch[1])

    ckpt = out / "ckpt"
    resumed = ckpt.exists()
    loop = LoopConfig(steps=args.steps, grad_accum=ACCUM, clip=1.0, checkpoint_every=5, log_every=0)
    history = fit(fabric, model, optimizer, loss_fn, batch_fn, loop, checkpoint=ckpt)
    ip = torch.tensor([int(part) for part in own_address().split(".")])
    node = torch.tensor([int(os.environ.get("SLURM_NODEID", "0"))])
    ips, nodes = fabric.all_gather(ip), fabric.all_gather(node)
    if fabric.global_rank == 0:
        ips, nodes = ips.reshape(-1, 4), nodes.reshape(-1)
        torch.save([p.detach().clone() for p in model.parameters()], out / "weights.pt")
        atomic_write_json(
            out / "result.json",
            {
                "world": fabric.world_size,
                "resumed": resumed,
                "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
                "steps_logged": len(history.steps),
                "master": [os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")],
                "ranks": [
                    {"node": int(n), "address": ".".join(map(str, a.tolist()))} for n, a in zip(nodes, ips, strict=True)
                ],
            },
        )


if __name__ == "__main__":
    main()
