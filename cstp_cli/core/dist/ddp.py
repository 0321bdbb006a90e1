"""Models under DistributedDataParallel: the whole objective as one module, target networks kept out of DDP."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
import torch.nn as nn

from cstp_cli.core.dist.collectives import (
    _comm_device,
)
from cstp_cli.core.dist.context import (
    DistContext,
    rank_and_world,
)
from cstp_cli.core.dist.failures import (
    _collective,
    guard,
)
from cstp_cli.errors import UsageError

# --------------------------------------------------------------------------- model


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        else:
            return module


class TrainModule(nn.Module):
    """Encoder + objective as one module whose ``forward`` is the whole pretraining objective.

    ``forward(x1, x2, labels)``: clips ``x1, x2 float[B, 3, T, S, S]`` → one online pass per
    clip (BN statistics per view, METHOD §1) ``y = encode(x) float[B, D]`` →
    ``objective(y1, y2, x1, x2, labels)`` → ``(loss float32 scalar, logs)``. Wrapping this
    module in DDP makes its gradient averaging cover the encoder, the scheme's trainable
    parts and the pretext heads. ``encode`` is an optional replacement of ``encoder`` for the
    online pass (e.g. ``torch.compile(encoder)``); it is not registered as a submodule.
    When the objective's ``wants_feature_maps`` is true (a task reads conv maps, API
    ``PretextTask.uses_feature_maps``), the pass is ``m = encoder.features(x)``, ``y`` its
    global average, and ``maps=(m1, m2)`` goes to the objective (``encode`` is not used).
    """

    def __init__(
        self,
        encoder: nn.Module,
        objective: nn.Module,
        encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.objective = objective
        self.__dict__["_encode"] = encode

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, labels: Mapping[str, torch.Tensor]
    ) -> Any:
        encode = self.__dict__["_encode"]
        if (
            encode is None
        ):  # never `or`: a compiled module has no truth value (len() raises)
            encode = self.encoder
        if getattr(self.objective, "wants_feature_maps", False):
            m1, m2 = self.encoder.features(x1), self.encoder.features(x2)
            y1, y2 = (torch.flatten(nn.functional.adaptive_avg_pool3d(m, 1), 1) for m in (m1, m2))
            return self.objective(y1, y2, x1, x2, labels, maps=(m1, m2))
        y1 = encode(x1)
        y2 = encode(x2)
        return self.objective(y1, y2, x1, x2, labels)


class CallModule(nn.Module):
    """An ``nn.Module`` whose ``forward`` is ``fn``, computed with the registered ``modules``.

    For models that are not one ``nn.Module`` (e.g. the fine-tuning ``Classifier``: backbone +
    head behind a plain ``__call__``): ``wrap_for_ddp(CallModule(model.modules, model), ctx)``
    lets DDP see the parameters and hook their gradients while ``fn`` does the computation.
    ``fn`` is not registered as a submodule.
    """

    def __init__(self, modules: nn.Module, fn: Callable[..., Any]):
        super().__init__()
        self.inner = modules
        self.__dict__["_fn"] = fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.__dict__["_fn"](*args, **kwargs)


def frozen_submodules(module: nn.Module) -> list[str]:
    """Qualified names of the outermost submodules whose parameters all have ``requires_grad=False``.

    These are the target / key networks of BYOL and MoCo (``make_target`` copies).
    """
    out: list[str] = []
    for name, sub in module.named_modules():
        if not name or any(name == f or name.startswith(f + ".") for f in out):
            continue
        params = list(sub.parameters())
        if params and not any(p.requires_grad for p in params):
            out.append(name)
    return out


def ddp_ignored_names(module: nn.Module) -> list[str]:
    """Parameter and buffer names DDP must leave alone: frozen parameters, all of a target network."""
    names = {n for n, p in module.named_parameters() if not p.requires_grad}
    for prefix in frozen_submodules(module):
        sub = module.get_submodule(prefix)
        names.update(f"{prefix}.{n}" for n, _ in sub.named_parameters())
        names.update(f"{prefix}.{n}" for n, _ in sub.named_buffers())
    return sorted(names)


@torch.no_grad()
@_collective("copying rank 0's weights to every rank")
def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers (targets and queues included) to every rank."""
    _, world = rank_and_world()
    if world == 1:
        return
    dev = _comm_device()
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.device == dev:
            dist.broadcast(tensor.data, src=src)
        else:
            buf = tensor.data.to(dev)
            dist.broadcast(buf, src=src)
            tensor.data.copy_(buf)


def wrap_for_ddp(
    module: nn.Module,
    ctx: DistContext,
    sync_bn: bool = False,
    find_unused: bool = False,
) -> nn.Module:
    """``module`` (a :class:`TrainModule`) ready for training on ``ctx``'s world.

    * ``sync_bn``: convert every BatchNorm to ``nn.SyncBatchNorm`` (in place in the children,
      same Parameter objects, so optimisers built before stay valid); CUDA only — a
      :class:`UsageError` on CPU.
    * One process: ``module`` itself (no wrapper; identical maths).
    * Several: rank 0's whole state (targets, queues included) is broadcast once, target
      networks and frozen parameters are excluded from DDP, and the rest is wrapped in
      ``DistributedDataParallel`` (``find_unused_parameters=find_unused``: set it when some
      trainable parameter may get no gradient in a step).
    """
    if sync_bn and ctx.device.type != "cuda":
        raise UsageError(
            f"--sync-bn: torch's SyncBatchNorm needs CUDA devices, this run is on {ctx.device.type}; "
            "drop --sync-bn (MoCo keeps shuffle-BN) or run on GPUs"
        )
    if not ctx.distributed:
        return module
    if sync_bn:
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if (
            converted is not module
        ):  # pragma: no cover - only when module itself is a BatchNorm
            raise UsageError(
                "--sync-bn: wrap a module that contains the BatchNorm layers, not a BatchNorm"
            )
    broadcast_state(module)
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        module, ddp_ignored_names(module)
    )
    devices = (
        {"device_ids": [ctx.device.index], "output_device": ctx.device.index}
        if ctx.device.type == "cuda"
        else {}
    )
    with guard("setting up DistributedDataParallel"):
        return nn.parallel.DistributedDataParallel(
            module, find_unused_parameters=find_unused, **devices
        )
