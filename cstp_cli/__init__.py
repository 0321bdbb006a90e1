"""cstp: self-supervised video representation learning with CSTP (Zhang et al., AAAI 2022).

Contrastive learning joined with spatio-temporal pretext tasks (STOR overlap rates,
playback pace, rotation), the field's evaluation protocols, and ONNX deployment.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_encoder"]


def load_encoder(checkpoint: Any, map_location: str = "cpu") -> Any:
    """Load the trained encoder of a cstp checkpoint as an ``nn.Module`` in eval mode.

    The module carries its preprocessing as ``module.preprocess`` (cache frame size,
    clip frames and size, normalisation ``x/255·2 − 1``). See README "Python API".
    """
    from cstp_cli.core.checkpoint import load_encoder as _load

    return _load(checkpoint, map_location=map_location)
