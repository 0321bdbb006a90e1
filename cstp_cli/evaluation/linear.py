"""The linear probe (METHOD §6) as a library call: the fine-tune folds with the backbone frozen.

The backbone stays in eval mode under ``no_grad`` and comes out bit-identical; only the
classifier head trains, with the fine-tune recipe. A random-init probe (``--init random``)
first re-estimates the BatchNorm statistics on the training clips (issue 4's fair baseline).
``cstp linear`` is a thin layer on :func:`run_linear`.
"""

from __future__ import annotations

from typing import Callable

from cstp_cli.evaluation.finetune import SupervisedResult, run_supervised_folds
from cstp_cli.evaluation.settings import LinearSettings
from cstp_cli.evaluation.sources import EncoderSource

__all__ = ["run_linear"]


def run_linear(
    settings: LinearSettings,
    encoder: EncoderSource,
    data: str | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SupervisedResult:
    """Probe the frozen encoder on every fold of ``settings.split``; see
    :func:`~cstp_cli.evaluation.finetune.run_supervised_folds` for the arguments."""
    return run_supervised_folds("linear", settings, encoder, data, resume=resume, progress=progress, log=log)
