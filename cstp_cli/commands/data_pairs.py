"""``cstp data pairs``: write clip-pair plans (``pairs.jsonl``, schema 1) and the shortcut report.

METHOD §2: plans of the chosen pretext set on a dataset or cache, the label histograms, the
mutual information of (pace, k_t) and how well box area alone predicts k_s; ``--png`` draws
a few pairs (both boxes over the frame with the overlap shaded, and the two clips).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional, Sequence

import numpy as np
import typer

from cstp_cli.errors import UsageError

DEFAULT_PRETEXT = "stor,rot,pace"
DEFAULT_AUGMENT = "pace,rot"
PNG_PAIRS = 4
PNG_FRAMES = 3


# --------------------------------------------------------------------------- tasks


def build_tasks(
    pretext: str, augment: str, sets: Sequence[str], pretext_options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Any]:
    """The active tasks, built as ``cstp pretrain`` builds them (:func:`cstp_cli.engine.objective.build_tasks`):
    ``--pretext`` ones, then ``--augment``-only ones (``augment_only``); ``pretext_options``
    (a preset's ``[pretext.*]`` tables) < ``--set``."""
    from cstp_cli.core.options import parse_sets
    from cstp_cli.engine.objective import build_tasks as engine_build_tasks
    from cstp_cli.engine.objective import parse_selection

    selection = parse_selection("none", pretext, augment)
    entries = engine_build_tasks(selection, pretext_options=pretext_options, sets=parse_sets(list(sets)))
    return [entry.task for entry in entries]


# --------------------------------------------------------------------------- cache access


def _write_lines(path: Path, lines: list[str]) -> None:
    from cstp_cli.core.fsutil import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.writelines(line + "\n" for line in lines)


# --------------------------------------------------------------------------- PNG


def rotate_full_frame(frame: np.ndarray, r: int) -> np.ndarray:
    """``frame`` uint8[H, W, 3] rotated r quarter turns CCW about its centre onto the same
    H×W canvas, zeros where nothing lands (App. A's rotation before cropping)."""
    rotated = np.rot90(frame, r)
    H, W = frame.shape[:2]
    rh, rw = rotated.shape[:2]
    out = np.zeros_like(frame)
    sy, dy = max(0, (rh - H) // 2), max(0, (H - rh) // 2)
    sx, dx = max(0, (rw - W) // 2), max(0, (W - rw) // 2)
    h, w = min(H, rh), min(W, rw)
    out[dy : dy + h, dx : dx + w] = rotated[sy : sy + h, sx : sx + w]
    return out


def cut_clip_frame(frame: np.ndarray, box: Sequence[int], flip: bool, r: int, rot_first: bool) -> np.ndarray:
    """One clip frame for the picture: crop ``box`` (x, y, w, h), flip, rotate (np.rot90)."""
    if rot_first:
        frame = rotate_full_frame(frame, r)
    x, y, w, h = (int(v) for v in box)
    crop = frame[y : y + h, x : x + w]
    if flip:
        crop = crop[:, ::-1]
    return crop if rot_first else np.rot90(crop, r)


def draw_pairs_png(path: Path, records: list[dict], plans: list[Any], reader: Any) -> None:
    """Draw up to :data:`PNG_PAIRS` pairs: frame with both boxes and the shaded overlap, then
    :data:`PNG_FRAMES` frames of each clip."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from cstp_cli.plans.geometry import intersection_area

    rows = plans[:PNG_PAIRS]
    cols = 1 + 2 * PNG_FRAMES
    fig = Figure(figsize=(2.2 * cols, 2.2 * len(rows)))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for row, plan in enumerate(rows):
        picks = np.linspace(0, plan.T - 1, PNG_FRAMES).round().astype(int)
        clips = [np.asarray(reader.read(plan.video, np.asarray(plan.idx[c])[picks])) for c in range(2)]
        ax = axes[row, 0]
        ax.imshow(clips[0][0])
        for c, colour in enumerate(("tab:red", "tab:blue")):
            x, y, w, h = (int(v) for v in plan.boxes[c])
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=colour, linewidth=1.5))
        (x1, y1, w1, h1), (x2, y2, w2, h2) = (tuple(int(v) for v in b) for b in plan.boxes)
        ix, iy = max(x1, x2), max(y1, y2)
        if intersection_area(plan.boxes[0], plan.boxes[1]) > 0:
            iw, ih = min(x1 + w1, x2 + w2) - ix, min(y1 + h1, y2 + h2) - iy
            ax.add_patch(Rectangle((ix - 0.5, iy - 0.5), iw, ih, color="yellow", alpha=0.35))
        labels = " ".join(f"{k.split('.')[-1]}={v}" for k, v in records[row]["labels"].items())
        ax.set_title(f"s={plan.pace} {labels}", fontsize=6)
        rot_first = np.asarray(plan.extras.get("sampling.rot_first", np.zeros(2, bool)))
        for c in range(2):
            for j in range(PNG_FRAMES):
                img = cut_clip_frame(clips[c][j], plan.boxes[c], bool(plan.flip[c]), int(plan.rot90[c]), bool(rot_first[c]))
                ax = axes[row, 1 + c * PNG_FRAMES + j]
                ax.imshow(img)
                ax.set_title(f"clip {c + 1} frame {int(plan.idx[c][picks[j]])}", fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.94, wspace=0.08, hspace=0.35)
    from cstp_cli.core.fsutil import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


# --------------------------------------------------------------------------- command


def pairs(
    data: Annotated[Optional[str], typer.Argument(help="Dataset root or cache file (default: the built-in dataset).")] = None,
    num: Annotated[int, typer.Option("-n", "--num", help="Number of plans.", min=1)] = 1000,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Write the plans here (pairs.jsonl, schema 1).")] = None,
    png: Annotated[Optional[Path], typer.Option("--png", help="Draw a few pairs into this PNG.")] = None,
    pretext: Annotated[str, typer.Option("--pretext", help="Pretext tasks with heads, comma-separated (or none).")] = DEFAULT_PRETEXT,
    augment: Annotated[str, typer.Option("--augment", help="Tasks used as augmentations, comma-separated (or none).")] = DEFAULT_AUGMENT,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="A task option, task.option=value (repeatable).")] = None,
    sampling: Annotated[str, typer.Option("--sampling", help="clean (METHOD §2) or reference (the authors', App. A).")] = "clean",
    frames: Annotated[Optional[int], typer.Option("--frames", help="Frames per clip T (default 16; with no DATA, the cpu-synthetic preset's T and pace rates, as `cstp pretrain` uses them).", min=2)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the per-sample generators.")] = 0,
) -> None:
    """Write clip-pair plans and print the shortcut report (METHOD §2)."""
    from cstp_cli.core.fsutil import check_output_file
    from cstp_cli.data.cache import CacheReader
    from cstp_cli.data.resolve import resolve_data
    from cstp_cli.plans.report import format_report, shortcut_report
    from cstp_cli.plans.sampling import epoch_order, make_sampler, plan_rng, plan_to_json

    if out is not None:
        check_output_file(out, "-o")
    if png is not None:
        check_output_file(png, "--png")
    preset_options = None
    if data is None and frames is None:
        frames, preset_options = _builtin_defaults()
    tasks = build_tasks(pretext, augment, list(set_ or []), preset_options)
    sampler = make_sampler(tasks, T=frames or 16, mode=sampling)
    reader = CacheReader(resolve_data(data, size=None))
    lengths = np.asarray(reader.num_frames, dtype=np.int64)
    frame_wh = tuple(int(v) for v in reader.frame_wh)
    paths = [str(p) for p in reader.paths]
    if lengths.size == 0:
        raise UsageError("the cache holds no videos; build it from a dataset with decodable videos")
    info = sampler.plan_info()
    plans, records = [], []
    order = epoch_order(seed, 0, lengths.size)
    for j in range(num):
        epoch, pos = divmod(j, lengths.size)
        if pos == 0:
            order = epoch_order(seed, epoch, lengths.size)
        video = int(order[pos])
        plan = sampler.plan(video, int(lengths[video]), frame_wh, plan_rng(seed, epoch, video))
        plans.append(plan)
        records.append(plan_to_json(plan, sampler.mode_label, paths, info))
    if out is not None:
        _write_lines(out, [json.dumps(r) for r in records])
    typer.echo(format_report(shortcut_report(records, sampler.label_classes()), sampler.candidates))
    if out is not None:
        typer.echo(f"plans: {out}")
    if png is not None:
        draw_pairs_png(png, records, plans, reader)
        typer.echo(f"picture: {png}")


def _builtin_defaults() -> tuple[int, dict[str, Any]]:
    """T and the ``[pretext.*]`` tables of the ``cpu-synthetic`` preset, which a bare ``cstp
    pretrain`` uses on the built-in dataset (its 64-frame videos are too short for T = 16 at
    paces up to 8); ``--set`` goes over the tables, as in ``cstp pretrain``."""
    from cstp_cli.engine.config import load_preset

    preset = load_preset("cpu-synthetic")
    return int(preset.get("frames", 16)), dict(preset.get("pretext", {}))


def register(data_app: typer.Typer) -> None:
    """Add ``pairs`` to the ``cstp data`` sub-app."""
    data_app.command("pairs")(pairs)
