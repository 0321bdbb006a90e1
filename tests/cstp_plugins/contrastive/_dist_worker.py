"""One rank of the 2-process gloo test (forked by test_distributed.py; not collected by pytest).

``run(rank, world, folder)`` reads ``folder/inputs.pt`` and writes ``folder/rank{rank}.pt``;
standalone: ``python _dist_worker.py RANK WORLD DIR``.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
import torch.nn as nn

from cstp_plugins.contrastive.common import batch_shuffle, batch_unshuffle, gather_no_grad, gather_with_grad
from cstp_plugins.contrastive.moco import MoCo
from cstp_plugins.contrastive.simclr import SimCLR

TINY = {"proj_hidden": 32, "proj_dim": 8}


def build_encoder() -> nn.Module:
    """clips float[B, 3, 2, 4, 4] → float[B, 16], with a BatchNorm (kept in eval mode)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(96, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16))


def build_simclr() -> SimCLR:
    return SimCLR(16, **TINY).eval()


def build_moco(encoder: nn.Module) -> MoCo:
    scheme = MoCo(16, queue_size=7, **TINY)
    scheme.attach(encoder)
    return scheme.eval()


def grads(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters() if p.requires_grad]


def run_simclr(inputs: dict, rows: slice) -> dict:
    scheme = build_simclr()
    scheme.load_state_dict(inputs["simclr"])
    y1 = inputs["y1"][rows].clone().requires_grad_()
    y2 = inputs["y2"][rows].clone().requires_grad_()
    loss = scheme(y1, y2).terms["simclr"]
    loss.backward()
    return {"loss": loss.detach(), "y1_grad": y1.grad, "y2_grad": y2.grad, "proj_grads": grads(scheme)}


def run_moco(inputs: dict, rows: slice) -> dict:
    encoder = build_encoder().eval()
    encoder.load_state_dict(inputs["encoder"])
    scheme = build_moco(encoder)
    scheme.load_state_dict(inputs["moco"])
    x1, x2 = inputs["x1"][rows], inputs["x2"][rows]
    loss = scheme(encoder(x1), encoder(x2), x1, x2).terms["moco"]
    loss.backward()
    return {"loss": loss.detach(), "encoder_grads": grads(encoder), "proj_grads": grads(scheme),
            "queue": scheme.queue.clone(), "queue_ptr": scheme.queue_ptr.clone()}


def run_gathers(rank: int, inputs: dict) -> dict:
    uneven = torch.arange((rank + 2) * 3, dtype=torch.float32).reshape(rank + 2, 3) + 100 * rank
    uneven.requires_grad_()
    gathered = gather_with_grad(uneven)
    (gathered * inputs["weights"][rank]).sum().backward()
    x = inputs["x1"][rank * 3 : rank * 3 + 3]
    shuffled, handle = batch_shuffle(x, seed=5)
    shuffled_rand, handle_rand = batch_shuffle(x)
    return {
        "uneven_gathered": gathered.detach(), "uneven_no_grad": gather_no_grad(uneven), "uneven_grad": uneven.grad,
        "shuffled_all": gather_no_grad(shuffled), "restored": batch_unshuffle(shuffled * 2 + 1, handle),
        "restored_rand": batch_unshuffle(shuffled_rand - 1, handle_rand),
    }


def run(rank: int, world: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        inputs = torch.load(f"{folder}/inputs.pt")
        per_rank = inputs["y1"].shape[0] // world
        rows = slice(rank * per_rank, (rank + 1) * per_rank)
        out = {"simclr": run_simclr(inputs, rows), "moco": run_moco(inputs, rows), "gathers": run_gathers(rank, inputs)}
        torch.save(out, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    run(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
