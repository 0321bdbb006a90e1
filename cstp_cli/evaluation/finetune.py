"""Fine-tuning (METHOD §6) as a library call: every requested fold, then the mean.

:func:`run_finetune` (and :func:`cstp_cli.evaluation.linear.run_linear`, the same folds with
the backbone frozen) loads the encoder once, opens the data, runs
:func:`~cstp_cli.evaluation.supervised.run_supervised` on each fold from the same initial
weights, and writes ``results.json`` (settings, resolved run config, one row per fold and
their mean). Under ``torchrun`` each fold is data-parallel; rank 0 alone writes and reports.
Callable from Python and ``bench/``; ``cstp finetune``/``cstp linear`` are a thin layer on it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cstp_cli.core.rundir import check_run_folder
from cstp_cli.evaluation.settings import FinetuneSettings
from cstp_cli.evaluation.sources import EncoderSource, default_out, load_encoder_source, open_data

__all__ = ["SupervisedResult", "run_finetune", "run_supervised_folds", "METRICS"]

#: The test metrics of a fold, in percent (METHOD §6 test).
METRICS = ("video_top1", "video_top5", "clip_top1")
#: Files a finetune/linear run leaves in its ``--out`` folder; any of them means it holds a run.
SUPERVISED_RUN_FILES = ("results.json", "split*/checkpoint.pt")


@dataclass
class SupervisedResult:
    """What a fine-tune or linear-probe run produced.

    Attributes:
        mode: ``"finetune"`` or ``"linear"``.
        rows: one ``{"split": "k", video_top1, video_top5, clip_top1}`` per fold, and a
            ``"mean"`` row when there are several folds (empty on ranks other than 0).
        out: the output folder (``split<k>/checkpoint.pt`` per fold).
        results: ``out/results.json``, or None on ranks other than 0.
        is_main: whether this process is rank 0 (the one that reports).
    """

    mode: str
    rows: list[dict] = field(default_factory=list)
    out: Path = Path(".")
    results: Path | None = None
    is_main: bool = True

    def table(self) -> str:
        """The rows as a plain-text table."""
        from cstp_cli.evaluation.reports import format_table

        return format_table(self.rows, ("split", *METRICS))


def run_supervised_folds(
    mode: str,
    settings: FinetuneSettings,
    encoder: EncoderSource,
    data: str | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SupervisedResult:
    """Run ``mode`` (``"finetune"``/``"linear"``) on every fold of ``settings.split``.

    Args:
        settings: layered settings (:class:`FinetuneSettings` or its ``LinearSettings``).
        encoder: ``--checkpoint`` or ``--init random`` (no ONNX: training needs PyTorch).
        data: dataset folder or cache file; None: the built-in synthetic set.
        resume: continue each fold's ``checkpoint.pt`` in the output folder at its next epoch.
        progress: progress bars (rank 0 only).
        log: receives per-epoch lines (rank 0 only); None: silent.
    """
    import numpy as np

    from cstp_cli.core import dist as ddp
    from cstp_cli.core.progress import progress_factory
    from cstp_cli.evaluation.reports import write_json
    from cstp_cli.evaluation.supervised import SupervisedConfig, run_supervised

    settings.validate()  # settings built in Python are checked like layered ones
    encoder.check(allow_onnx=False)
    folds = settings.folds
    out = Path(settings.out) if settings.out else default_out(mode, encoder)
    check_run_folder(out, SUPERVISED_RUN_FILES, flag="--out", resume=resume, continue_hint="--resume")  # before any data work
    module, info = load_encoder_source(encoder.checkpoint, encoder.init, settings.backbone, settings.width, int(settings.seed))
    augment = settings.augment_list
    cfg = SupervisedConfig(
        mode=mode, epochs=int(settings.epochs), batch_size=int(settings.batch_size), lr=float(settings.lr),
        weight_decay=float(settings.weight_decay), plateau_patience=int(settings.plateau_patience),
        frames=int(settings.frames or info["frames"]), clip_size=int(settings.clip_size or info["size"]),
        clip_pace=int(settings.clip_pace), test_clips=int(settings.test_clips), head=str(settings.head),
        augment=augment, seed=int(settings.seed), workers=int(settings.workers), device=str(settings.device),
        bn_reestimate=(mode == "linear" and info["init"] == "random"),
    )
    cfg.validate()
    ctx = ddp.init_distributed(cfg.device or "auto")  # torchrun: one rank per GPU; else one process
    with ddp.main_first():
        reader = open_data(data, settings.frame_size, cfg.workers)
    show = ctx.is_main
    say = log if (log is not None and show) else (lambda m: None)
    info = {**info, "frame_wh": tuple(int(v) for v in reader.frame_wh), "data": str(data) if data else "synthetic"}
    initial = copy.deepcopy(module.state_dict())
    rows = []
    for fold in folds:
        module.load_state_dict(initial)  # every fold starts from the same encoder
        result = run_supervised(cfg, reader, fold, module, info, out / f"split{fold}", resume=resume,
                                progress_factory=progress_factory(progress and show), log=say)
        rows.append({"split": str(fold), **result.metrics})
    if not show:
        return SupervisedResult(mode=mode, out=out, is_main=False)
    if len(rows) > 1:
        rows.append({"split": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in METRICS}})
    write_json(out / "results.json", {"command": mode, "init": info["init"],
                                      "settings": {**settings.to_dict(), "augment": augment},
                                      "config": dict(vars(cfg)), "results": rows})
    return SupervisedResult(mode=mode, rows=rows, out=out, results=out / "results.json", is_main=True)


def run_finetune(settings: FinetuneSettings, encoder: EncoderSource, data: str | None = None, **options: Any) -> SupervisedResult:
    """Fine-tune all layers on every fold of ``settings.split`` (METHOD §6); ``options``
    (``resume``, ``progress``, ``log``) as for :func:`run_supervised_folds`."""
    return run_supervised_folds("finetune", settings, encoder, data, **options)
