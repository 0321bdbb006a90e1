"""The one Typer signature of ``cstp finetune`` and ``cstp linear`` (METHOD §6).

Both commands take the same options; only a few help lines differ. This module builds each
command from :func:`supervised_command`, so an option is declared once. It deliberately has
no ``from __future__ import annotations``: Typer reads the ``Annotated`` metadata at run time,
and the help strings below come from the factory's arguments.
"""

from typing import Annotated, Callable, Optional

import typer


def supervised_command(kind: str, init_help: str, doc: str) -> Callable[..., None]:
    """Return the Typer command function of ``kind`` (``"finetune"`` or ``"linear"``)."""

    def command(
        data: Annotated[Optional[str], typer.Argument(help="Dataset root or cache file (default: the built-in synthetic set).")] = None,
        checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="Encoder checkpoint (cstp pretrain/finetune).")] = None,
        init: Annotated[Optional[str], typer.Option("--init", help=init_help)] = None,
        backbone: Annotated[Optional[str], typer.Option("--backbone", help="Backbone for --init random (default r21d).")] = None,
        width: Annotated[Optional[str], typer.Option("--width", help="full or tiny, for --init random.")] = None,
        split: Annotated[Optional[str], typer.Option("--split", help="Fold(s), e.g. 1 or 1,2,3 (mean printed).")] = None,
        epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs (default 100).")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Clips per step (default 60).")] = None,
        lr: Annotated[Optional[float], typer.Option("--lr", help="SGD learning rate (default 0.02).")] = None,
        workers: Annotated[Optional[int], typer.Option("--workers", help="DataLoader workers (default 2).")] = None,
        device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
        frames: Annotated[Optional[int], typer.Option("--frames", help="Clip frames T (default: the checkpoint's).")] = None,
        clip_size: Annotated[Optional[int], typer.Option("--clip-size", help="Clip side S (default: the checkpoint's).")] = None,
        clip_pace: Annotated[Optional[int], typer.Option("--clip-pace", help="Frame step of train and test clips (default 4).")] = None,
        test_clips: Annotated[Optional[int], typer.Option("--test-clips", help="Uniformly spaced test clips per video (default 10).")] = None,
        head: Annotated[Optional[str], typer.Option("--head", help="code (L2→BN→Linear, default) or fc.")] = None,
        augment: Annotated[Optional[str], typer.Option("--augment", help="pace,rot: randomise pace/rotation in training.")] = None,
        seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 0).")] = None,
        size: Annotated[Optional[str], typer.Option("--size", help="Cache frame size WxH of a dataset folder (default 171x128); a cache file is read at its own size.")] = None,
        out: Annotated[Optional[str], typer.Option("--out", help=f"Output folder (default runs/{kind}-<ckpt>).")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the runs in --out (each split's checkpoint.pt) at their next epoch.")] = False,
        config: Annotated[Optional[str], typer.Option("--config", help=f"TOML file with a \\[{kind}] table.")] = None,
        preset: Annotated[Optional[str], typer.Option("--preset", help="Evaluation preset: ucf101-r21d-byol, ucf101-c3d-byol, k400-r21d-byol.")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or per-epoch lines.")] = False,
    ) -> None:
        from cstp_cli.commands.finetune_cmd import run_supervised_command

        flags = dict(backbone=backbone, width=width, split=split, epochs=epochs, batch_size=batch_size, lr=lr,
                     workers=workers, device=device, frames=frames, clip_size=clip_size, clip_pace=clip_pace,
                     head=head, augment=augment, seed=seed, size=size, out=out, test_clips=test_clips)
        run_supervised_command(kind, data, checkpoint, init, preset, config, resume, quiet, flags)

    command.__name__ = command.__qualname__ = kind
    command.__doc__ = doc
    return command
