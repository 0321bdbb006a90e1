"""STOR probes (issue 12 items 1 and 5): the one-off runs behind the "also tried" notes of
``bench/results/stor_diagnosis.md``, so that each figure there can be rerun.

Bench-local variants of the model (nothing here changes the package), each a context manager:

* ``profile`` — the diagnosis' rows Y-Z: cnn4 with its time axis kept, temporal STOR read by
  :class:`stor_diagnosis.ProfileHead`;
* ``fine`` — cnn4 with no pool after conv3 (tiny conv4 maps 128×8×8×8 for 8×32² clips) and a
  profile head whose best spatial match is taken only over shifts that overlap at least
  :data:`MIN_OVERLAP` of the map (``ProfileHead(min_overlap=...)``);
* ``conv3`` — the shipped cnn4, but both STOR heads read conv3's map before its pool (tiny:
  64×4×8×8) and temporal is read by the profile head;
* ``centred`` — the corr head's cost volume on maps standardised per clip and channel over
  (t, h, w) (a per-clip offset and scale of each feature removed).

Subcommands::

    python bench/stor_probes.py full [--variant V] [pretrain args]   # a bare `cstp pretrain`
    python bench/stor_probes.py row Z --variant fine --part temporal  # one diagnosis row, one seed
    python bench/stor_probes.py oracle --clips full --share flip --features gradients
    python bench/stor_probes.py static-synth OUT                      # the built-in set, static background
    python bench/stor_probes.py mottle-synth OUT --change 8 --contrast 0.6   # ... another changing mottle

``full`` prints the means of the last 50 steps of every loss term; ``row`` the loss, the
oracle and the loss split by the other part's label; ``oracle`` the accuracy of the
diagnosis' shifted temporal matcher on raw pixels or on luma gradients (which a per-clip hue
and saturation change leaves mostly intact) of exactly the clips the encoder sees.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stor_diagnosis as sd

#: ``fine``: least overlap (fraction of the h×w map) of a spatial shift the profile head may pick.
MIN_OVERLAP = 0.15
#: ``fine``: cnn4 pools with none after conv3.
FINE_POOLS = {0: (1, 2, 2), 1: (1, 2, 2)}
#: ``conv3``: index in cnn4's body of conv3's conv-BN-ReLU block (before its pool).
CONV3_BLOCK = 4
#: The diagnosis' own variants (rows Y-Z), kept before :func:`cmd_row` puts :func:`variant` in its place.
DIAGNOSIS_VARIANT = sd.variant


def standardised_cost_volume(volume: Callable) -> Callable:
    """``volume`` (the corr head's :func:`cost_volume`) on maps standardised per sample and
    channel over (t, h, w): ``(m − mean) / std``."""

    def centred(m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
        def z(m: torch.Tensor) -> torch.Tensor:
            m = m.float()
            return (m - m.mean((2, 3, 4), keepdim=True)) / (m.std((2, 3, 4), keepdim=True) + 1e-5)

        return volume(z(m1), z(m2))

    return centred


@contextlib.contextmanager
def _patched(obj: Any, **attrs: Any) -> Iterator[None]:
    old = {k: getattr(obj, k) for k in attrs}
    for k, v in attrs.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(obj, k, v)


def _with_temporal_head(head: Callable, make: Callable[[int, int], nn.Module], dim_of: Callable[[int], int] = int) -> Callable:
    """``StorTask.head`` with its temporal head replaced by ``make(dim, n)``; the heads are built
    for ``dim = dim_of(feature_dim)`` channels."""

    def build(task: Any, feature_dim: int) -> nn.Module:
        dim = dim_of(feature_dim)
        heads = head(task, dim)
        if "temporal" in heads:
            heads["temporal"] = make(dim, task.n)
        return heads

    return build


@contextlib.contextmanager
def variant(name: str | None) -> Iterator[None]:
    """Within the block, build the model of variant ``name`` (module docstring); ``None`` and
    ``"none"`` change nothing. Everything is restored on exit."""
    if name in (None, "none"):
        yield
        return
    if name == "profile":
        with DIAGNOSIS_VARIANT("profile"):
            yield
        return
    from cstp_plugins.backbones.cnn4 import CNN4
    from cstp_plugins.pretext import stor_heads
    from cstp_plugins.pretext.stor import StorTask

    if name == "fine":
        fine_head = _with_temporal_head(StorTask.head, functools.partial(sd.ProfileHead, min_overlap=MIN_OVERLAP))
        with _patched(CNN4, pools=FINE_POOLS), _patched(StorTask, head=fine_head):
            yield
    elif name == "centred":
        with _patched(stor_heads, cost_volume=standardised_cost_volume(stor_heads.cost_volume)):
            yield
    elif name == "conv3":
        with _conv3_maps(CNN4, StorTask):
            yield
    else:
        raise ValueError(f"unknown probe variant {name!r}; one of none, profile, fine, conv3, centred")


@contextlib.contextmanager
def _conv3_maps(cnn4: type, stor: type) -> Iterator[None]:
    """STOR heads read the online pass's conv3 maps (kept while gradients are on: the target
    network of BYOL runs without them) instead of the conv4 maps the engine passes."""
    kept: list[torch.Tensor] = []
    loss = stor.loss

    def features(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i == CONV3_BLOCK and torch.is_grad_enabled():
                kept.append(h)
        return h

    def conv3_loss(self: Any, y1, y2, labels, heads, maps=None):
        m = (kept[-2], kept[-1])
        kept.clear()
        return loss(self, y1, y2, labels, heads, maps=m)

    # cnn4 doubles its channels at every conv: conv3 has half of conv4's (= the feature dim)
    head = _with_temporal_head(stor.head, sd.ProfileHead, lambda d: d // 2)
    with _patched(cnn4, features=features), _patched(stor, loss=conv3_loss, head=head):
        yield


def luma_gradients(x: torch.Tensor) -> torch.Tensor:
    """Magnitude of the luma gradient of clips ``float[B, 3, T, S, S]``, repeated on 3
    channels (``float[B, 3, T, S, S]``); forward differences, zero at the last row/column."""
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    gx = F.pad(luma[..., :, 1:] - luma[..., :, :-1], (0, 1))
    gy = F.pad(luma[..., 1:, :] - luma[..., :-1, :], (0, 0, 0, 1))
    return (gx**2 + gy**2).sqrt()[:, None].expand(-1, 3, -1, -1, -1).contiguous()


def tail_means(metrics: Path, last: int = 50) -> dict[str, float]:
    """Mean of each loss term over the last ``last`` steps of a run's ``metrics.jsonl``."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    tail = rows[-last:]
    return {k: float(np.mean([r["terms"][k] for r in tail])) for k in tail[0]["terms"]}


def full_objective_row(share: str) -> sd.Row:
    """The clips of the full default objective (cpu-synthetic: pace and rot augmentation, one
    turn per pair, both STOR parts) with ``stor.share=share``, as a diagnosis row."""
    return sd.Row("full objective's clips", tie=False, flags={"augment": "pace,rot", "sets": {
        "pace.rates": "1,2,4", "rot.pair": "same", "stor.parts": "spatial,temporal", "stor.share": share}})


def _row(letter: str) -> sd.Row:
    for row in sd.ROWS:
        if row.name.split(".")[0] == letter.upper():
            return row
    raise SystemExit(f"no diagnosis row {letter!r}; rows are {', '.join(r.name.split('.')[0] for r in sd.ROWS)}")


def cmd_full(args: argparse.Namespace, rest: list[str]) -> int:
    from cstp_cli.cli import main as cstp

    out = Path(args.out or tempfile.mkdtemp(prefix="cstp-stor-probe-"))
    with variant(args.variant):
        try:
            cstp(["pretrain", "--out", str(out), *rest])
        except SystemExit as exc:
            if exc.code:
                return int(exc.code)
    means = tail_means(out / "metrics.jsonl")
    print(json.dumps({"variant": args.variant, "args": rest, "last_50": {k: round(v, 3) for k, v in means.items()}}))
    return 0


def cmd_row(args: argparse.Namespace) -> int:
    row = _row(args.letter)
    row = dataclasses.replace(row, data=args.data or row.data, variant=row.variant if args.variant is None else args.variant)
    work = Path(tempfile.mkdtemp(prefix="cstp-stor-probe-"))
    with _patched(sd, variant=variant):
        r = sd.run_one(row, args.part, args.seed, args.steps, work, args.oracle_batches)
    split = [None if v is None else round(v, 3) for v in r["by_other_label"]]
    print(json.dumps({"row": row.name, "variant": args.variant, "part": args.part, "loss": round(r["loss"], 3),
                      "oracle": round(r["oracle"], 3), "by_other_label": split, "steps_per_s": round(r["steps"] / r["seconds"], 2)}))
    return 0


def cmd_oracle(args: argparse.Namespace) -> int:
    row = full_objective_row(args.share) if args.clips == "full" else _row(args.clips)
    row = dataclasses.replace(row, data=args.data or row.data)
    feats = luma_gradients if args.features == "gradients" else (lambda x: x)
    work = Path(tempfile.mkdtemp(prefix="cstp-stor-probe-"))
    with _patched(sd, oracle_temporal_shifted=_on(feats, sd.oracle_temporal_shifted), oracle_temporal=_on(feats, sd.oracle_temporal)):
        r = sd.run_one(row, "temporal", args.seed, args.batches, work, args.batches)
    print(json.dumps({"clips": row.name, "share": args.share if args.clips == "full" else None,
                      "features": args.features, "temporal_oracle": round(r["oracle"], 3)}))
    return 0


def _on(feats: Callable, oracle: Callable) -> Callable:
    """``oracle`` (a matcher ``(x1, x2, n, ...) -> labels``) run on ``feats`` of the clips."""
    return lambda a, b, n, *rest: oracle(feats(a), feats(b), n, *rest)


def cmd_static_synth(args: argparse.Namespace) -> int:
    from cstp_cli.data import synth

    with _patched(synth, BACKGROUND_DRIFT=0.0):
        out = synth.generate(args.out, **synth.DEFAULT_SYNTH, workers=args.workers)
    print(out)
    return 0


def cmd_mottle_synth(args: argparse.Namespace) -> int:
    from cstp_cli.data import synth

    with _patched(synth, MOTTLE_CHANGE=args.change, GRAIN=args.contrast):
        out = synth.generate(args.out, **synth.DEFAULT_SYNTH, workers=args.workers)
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    full = sub.add_parser("full", help="a bare `cstp pretrain` under a variant; unknown args go to pretrain")
    full.add_argument("--variant", default="none")
    full.add_argument("--out", default=None)
    row = sub.add_parser("row", help="one diagnosis row under a variant, one seed")
    row.add_argument("letter")
    row.add_argument("--variant", default=None, help="default: the row's own (profile for Y and Z)")
    row.add_argument("--part", default="temporal", choices=("spatial", "temporal"))
    row.add_argument("--steps", type=int, default=120)
    row.add_argument("--seed", type=int, default=sd.SEEDS[0])
    row.add_argument("--oracle-batches", type=int, default=2)
    row.add_argument("--data", default=None)
    ora = sub.add_parser("oracle", help="the shifted temporal matcher on raw pixels or luma gradients")
    ora.add_argument("--clips", default="full", help="'full' (the full objective's clips) or a diagnosis row letter")
    ora.add_argument("--share", default="flip", help="stor.share for --clips full")
    ora.add_argument("--features", default="raw", choices=("raw", "gradients"))
    ora.add_argument("--batches", type=int, default=4)
    ora.add_argument("--seed", type=int, default=sd.SEEDS[0])
    ora.add_argument("--data", default=None)
    syn = sub.add_parser("static-synth", help="the default synthetic set with a static background")
    syn.add_argument("out")
    syn.add_argument("--workers", type=int, default=2)
    mot = sub.add_parser("mottle-synth", help="the default synthetic set with another background mottle")
    mot.add_argument("out")
    mot.add_argument("--change", type=float, default=8.0, help="frames between independent mottle patterns")
    mot.add_argument("--contrast", type=float, default=0.6, help="mottle contrast (synth.GRAIN)")
    mot.add_argument("--workers", type=int, default=2)
    args, rest = p.parse_known_args(argv)
    torch.set_num_threads(2)
    if args.cmd != "full" and rest:
        p.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.cmd == "full":
        return cmd_full(args, rest)
    return {"row": cmd_row, "oracle": cmd_oracle, "static-synth": cmd_static_synth, "mottle-synth": cmd_mottle_synth}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
