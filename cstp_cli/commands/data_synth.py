"""``cstp data synth OUT``: render the built-in synthetic action dataset (UCF-101 layout)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cstp_cli.core.options import parse_size




def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (must not exist, or be empty).")],
    classes: Annotated[int, typer.Option(help="Number of motion classes (2-10).")] = 10,
    train_per_class: Annotated[int, typer.Option(help="Training videos per class (per fold).")] = 40,
    test_per_class: Annotated[int, typer.Option(help="Test videos per class (per fold).")] = 15,
    frames: Annotated[int, typer.Option(help="Frames per video.")] = 64,
    size: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT.")] = "64x48",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same videos.")] = 0,
    workers: Annotated[int, typer.Option(help="Parallel rendering processes.")] = 1,
) -> None:
    """Render a seeded synthetic action dataset (H.264 MP4, UCF-101 layout with 3 folds)."""
    from cstp_cli.data import synth as synth_mod  # noqa: PLC0415 - keep CLI start-up light

    t0 = time.perf_counter()
    root = synth_mod.generate(
        out,
        classes=classes,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        frames=frames,
        size=parse_size(size),
        seed=seed,
        workers=workers,
    )
    n = sum(1 for _ in root.glob("*/*.mp4"))
    mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
    typer.echo(
        f"wrote {n} videos ({classes} classes, {train_per_class} train + {test_per_class} test per class, "
        f"{frames} frames at {size}) and ucfTrainTestlist/ (folds 1-3) to {root} "
        f"[{mb:.1f} MB, {time.perf_counter() - t0:.1f} s]"
    )


def register(data_app: typer.Typer) -> None:
    """Add ``synth`` to the ``cstp data`` sub-app."""
    data_app.command("synth")(synth)
