"""Built-in backbones: r21d (default), c3d, r3d18, r2plus1d18, s3d (METHOD §5), and cnn4, a plain
four-layer 3D CNN for CPU demonstrations and small-scale studies, and cnn4t, the same keeping
the time axis (neither from the paper).

Each ``build(width="full"|"tiny")`` returns an ``nn.Module`` with ``forward(x) -> float[B, D]``
(global average), ``features(x) -> float[B, C, t, h, w]`` (the last conv map) and
``feature_dim``. No pretrained weights are ever loaded.
"""

from __future__ import annotations

from cstp_cli.api import BackboneSpec
from cstp_cli.hookspecs import hookimpl

from . import c3d, cnn4, r21d, tv

SPECS = (
    BackboneSpec(
        name="r21d",
        build=r21d.build,
        feature_dim=512,
        description="R(2+1)D-10 (VCOP/PacePred/CSTP), 14.37 M params; the default",
        dynamic_time=True,
        min_frames=1,
    ),
    BackboneSpec(
        name="c3d",
        build=c3d.build,
        feature_dim=512,
        description="C3D with BN, no fc6/fc7, 27.66 M params",
        dynamic_time=True,
        min_frames=c3d.MIN_FRAMES,
    ),
    BackboneSpec(
        name="r3d18",
        build=tv.build_r3d18,
        feature_dim=512,
        description="torchvision R3D-18 without fc, 33.17 M params",
        dynamic_time=True,
        min_frames=1,
    ),
    BackboneSpec(
        name="r2plus1d18",
        build=tv.build_r2plus1d18,
        feature_dim=512,
        description="torchvision R(2+1)D-18 without fc, 31.30 M params",
        dynamic_time=True,
        min_frames=1,
    ),
    BackboneSpec(
        name="s3d",
        build=tv.build_s3d,
        feature_dim=1024,
        description="torchvision S3D without classifier, adaptive pool, 7.91 M params",
        dynamic_time=True,
        min_frames=tv.S3D_MIN_FRAMES,
    ),
    BackboneSpec(
        name="cnn4",
        build=cnn4.build,
        feature_dim=512,
        description="plain 4-layer 3D CNN, 4.65 M params (tiny 0.29 M); for CPU demos, not from the paper",
        dynamic_time=True,
        min_frames=cnn4.MIN_FRAMES,
    ),
    BackboneSpec(
        name="cnn4t",
        build=cnn4.build_time_kept,
        feature_dim=512,
        description="cnn4 keeping the time axis (maps T×H/8×W/8), for stor.fusion=profile; not from the paper",
        dynamic_time=True,
        min_frames=1,
    ),
)


@hookimpl
def register_backbones(register):
    """Register the seven built-in backbones."""
    for spec in SPECS:
        register(spec)
