"""The linear probe (METHOD §6) as a library call: the fine-tune folds with the backbone frozen.

The backbone stays in eval mode under ``no_grad`` and comes out bit-identical; only the
classifier head trains, with the fine-tune recipe. A random-init probe (``--init random``)
first re-estimates the BatchNorm statistics on the training clips (issue 4's fair baseline).
``cstp linear`` is a thin layer on :func:`run_linear`.
"""

from __future__ import annotations

from typing import Any

from cstp_cli.evaluation.finetune import SupervisedResult, run_supervised_folds
from cstp_cli.evaluation.settings import LinearSettings
from cstp_cli.evaluation.sources import EncoderSource

__all__ = ["run_linear"]


def run_linear(settings: LinearSettings, encoder: EncoderSource, data: str | None = None, **options: Any) -> SupervisedResult:
    """Probe the frozen encoder on every fold of ``settings.split``; ``options`` (``resume``,
    ``progress``, ``log``) as for :func:`~cstp_cli.evaluation.finetune.run_supervised_folds`."""
    return run_supervised_folds("linear", settings, encoder, data, **options)
