"""ONNX export of trained encoders, verified against PyTorch (DESIGN "Export and inference").

*Why one file of ~490 lines*: export is one transaction — load, trace (two exporters),
save with metadata, check parity with onnxruntime, rename — whose steps share the
temporary file and the parity tolerance; split, each part would be a fragment of it.

``export_onnx`` loads a checkpoint's encoder (eval mode), traces it with the current
``torch.export``-based exporter (``exporter="dynamo"``, the default, opset >= 18) or the
legacy TorchScript one, with a dynamic batch axis and — where the backbone allows — a
dynamic time axis, into ONE file carrying the cstp metadata (backbone, width, clip shape
``[3, T, S, S]``, cache frame size, normalisation, feature dim, cstp version, checkpoint
SHA-256). The file is written under a temporary name beside ``out``, verified with
onnxruntime, and renamed into place only when parity holds: a failed export never replaces
a previous good file.

Parity (:func:`tolerance`): on inputs uniform in [−1, 1] at batch sizes other than the
exported one (1, 3, 7 by default) and, for a dynamic time axis, at another T, every output
must satisfy ``max|onnx − torch| <= 1e-4 · max|torch| + 1e-8`` — relative to the scale of the
outputs, with no floor at 1: freshly initialised encoders have features far from 1 (a new
torchvision S3D gives |features| ~ 1e-6, a tiny one ~ 1e2), and float32 round-off is
relative (observed diffs are 1e-7–1e-6 of max|torch| on every built-in backbone).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cstp_cli.core.fsutil import atomic_path
from cstp_cli.core.safewrite import write_failure
from cstp_cli.errors import CstpError, ExportError

EXPORTERS = ("dynamo", "legacy")
FORMATS = ("onnx", "state_dict")
MIN_OPSET = 18
RTOL = 1e-4
ATOL = 1e-8
PARITY_BATCHES = (1, 3, 7)
INPUT_NAME = "clips"
OUTPUT_NAME = "features"
STATE_FORMAT = "cstp-encoder-state"
MAX_BATCH = 4096
MAX_FRAMES = 4096


def tolerance(max_ref: float, rtol: float = RTOL, atol: float = ATOL) -> float:
    """Allowed ``max|diff|`` for outputs whose largest magnitude is ``max_ref``: ``rtol·max_ref + atol``."""
    return rtol * float(max_ref) + atol


@dataclass
class Parity:
    """One parity check: input ``[batch, 3, frames, S, S]``, largest |difference| and its bound."""

    batch: int
    frames: int
    max_abs_diff: float
    max_abs_ref: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.max_abs_diff <= self.tolerance)

    def line(self) -> str:
        mark = "ok" if self.ok else "MISMATCH"
        return (
            f"batch {self.batch}, T={self.frames}: max|diff| {self.max_abs_diff:.2e} <= {self.tolerance:.2e} "
            f"(max|ref| {self.max_abs_ref:.3g}) {mark}"
        )


@dataclass
class ExportResult:
    """What an export or a check did."""

    path: Path
    format: str
    backbone: str
    width: str
    checkpoint_sha256: str
    exporter: str | None = None
    opset: int | None = None
    provider: str | None = None
    dynamic_time: bool | None = None
    parity: list[Parity] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable report (what was written, parity figures, the provider that ran)."""
        mb = self.size_bytes / 1e6
        if self.format == "state_dict":
            return [f"wrote {self.path} ({mb:.1f} MB): {self.backbone} ({self.width}) state dict + preprocessing"]
        axes = "batch+time" if self.dynamic_time else "batch"
        out = [
            f"{self.path} ({mb:.1f} MB): {self.backbone} ({self.width}), exporter {self.exporter}, "
            f"opset {self.opset}, dynamic {axes}"
        ]
        out += [f"  parity {p.line()}" for p in self.parity]
        out.append(f"  onnxruntime provider: {self.provider}")
        out += [f"  note: {n}" for n in self.notes]
        return out


# --------------------------------------------------------------------------- helpers


def _load(checkpoint_path: str | os.PathLike) -> tuple[Any, dict[str, Any], str, Any]:
    """(encoder in eval mode, checkpoint dict, checkpoint sha256, backbone spec)."""
    from cstp_cli.core.checkpoint import file_hash, load_checkpoint, load_encoder
    from cstp_cli.plugins import get_registry

    ckpt = load_checkpoint(checkpoint_path)
    model = load_encoder(ckpt, source=checkpoint_path).eval()
    spec = get_registry().backbone(ckpt["backbone"]["name"])
    return model, ckpt, file_hash(checkpoint_path), spec


def _clip(ckpt: dict[str, Any]) -> tuple[int, int]:
    return int(ckpt["clip"]["frames"]), int(ckpt["clip"]["size"])


def _metadata(ckpt: dict[str, Any], sha: str, dynamic_time: bool, min_frames: int, exporter: str, opset: int, feature_dim: int) -> dict[str, str]:
    from cstp_cli import __version__
    from cstp_cli.core.checkpoint import NORMALISATION
    from cstp_cli.deploy.ort import METADATA_FORMAT

    frames, size = _clip(ckpt)
    return {
        "format": METADATA_FORMAT,
        "backbone": ckpt["backbone"]["name"],
        "width": ckpt["backbone"].get("width", "full"),
        "clip_shape": json.dumps([3, frames, size, size]),
        "cache_frame_wh": json.dumps([int(v) for v in ckpt["cache"]["frame_wh"]]),
        "normalisation": json.dumps(dict(ckpt.get("normalisation", NORMALISATION))),
        "feature_dim": json.dumps(int(feature_dim)),
        "dynamic_time": json.dumps(bool(dynamic_time)),
        "min_frames": json.dumps(int(min_frames)),
        "cstp_version": __version__,
        "checkpoint_sha256": sha,
        "exporter": exporter,
        "opset": str(opset),
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def _trace_dynamo(model: Any, example: Any, dynamic_time: bool, min_frames: int, opset: int) -> Any:
    """ModelProto from ``torch.export`` + the ONNX exporter; batch (and time) symbolic.

    Size-oblivious reasoning keeps size-1 intermediate maps (e.g. S3D's last pool at small
    T) from specialising the time axis. The exporter's graph optimiser stays on: without it
    (torch 2.14 / onnxscript 0.7) bias-free Conv nodes get a malformed bias.
    """
    import torch
    import torch.fx.experimental._config as fx_config
    from torch.export import Dim

    axes: dict[int, Any] = {0: Dim("batch", min=1, max=MAX_BATCH)}
    if dynamic_time:
        axes[2] = Dim("time", min=max(1, min_frames), max=MAX_FRAMES)
    with fx_config.patch(backed_size_oblivious=True):
        program = torch.export.export(model, (example,), dynamic_shapes={"x": axes}, strict=False)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(
            program,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            external_data=False,
            optimize=True,
            verbose=False,
        )
    proto = onnx_program.model_proto
    _rename_dims(proto, {0: "batch", 2: "time"})
    return proto


def _rename_dims(proto: Any, names: dict[int, str]) -> None:
    """Give the input's symbolic dims readable names (``batch``, ``time``) everywhere in the graph."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    mapping = {dims[i].dim_param: name for i, name in names.items() if i < len(dims) and dims[i].dim_param}
    if not mapping:
        return
    infos = list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info)
    for info in infos:
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param in mapping:
                dim.dim_param = mapping[dim.dim_param]


def _trace_legacy(model: Any, example: Any, dynamic_time: bool, opset: int) -> Any:
    """ModelProto from the TorchScript-based exporter with ``dynamic_axes``."""
    import onnx
    import torch

    axes = {0: "batch", 2: "time"} if dynamic_time else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def trace_onnx(
    model: Any, example: Any, *, exporter: str, opset: int, dynamic_time: bool, min_frames: int
) -> tuple[Any, bool, list[str]]:
    """Trace ``model`` on ``example float[B, 3, T, S, S]``: (ModelProto, time axis dynamic?, notes).

    A dynamic time axis that the exporter refuses falls back to a static one (noted); an
    export that fails even then raises ExportError (an unsupported construct).
    """
    import torch

    notes: list[str] = []
    attempts = [True, False] if dynamic_time else [False]
    last: BaseException | None = None
    for dyn in attempts:
        try:
            with torch.no_grad():
                if exporter == "dynamo":
                    return _trace_dynamo(model, example, dyn, min_frames, opset), dyn, notes
                return _trace_legacy(model, example, dyn, opset), dyn, notes
        except CstpError:
            raise
        except Exception as exc:  # the exporter's own errors are many and unstable
            last = exc
            if dyn:
                notes.append(f"time axis left static: the {exporter} exporter refused it ({_first_line(exc)})")
    assert last is not None
    raise ExportError(
        f"the {exporter} ONNX exporter cannot export this encoder ({type(last).__name__}: {_first_line(last)}); "
        f"try --exporter {'legacy' if exporter == 'dynamo' else 'dynamo'}"
    ) from last


def _save_onnx(proto: Any, path: Path, metadata: dict[str, str]) -> None:
    """Write ``proto`` with ``metadata`` as ONE file (no external data). A failed write
    (full disk) raises ``OSError``, also where the library reports it as RuntimeError."""
    import onnx

    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    try:
        onnx.save_model(proto, str(path), save_as_external_data=False)
    except ValueError as exc:  # > 2 GB protobuf
        raise ExportError(f"the encoder is too large for a single ONNX file ({_first_line(exc)})") from exc
    except RuntimeError as exc:
        raise OSError(write_failure(exc)) from exc


def _parity_frames(frames: int, min_frames: int) -> int:
    """Another clip length to test a dynamic time axis with (half, or double when half is too short)."""
    half = frames // 2
    return half if half >= max(1, min_frames) and half != frames else frames * 2


def verify_parity(
    model: Any,
    encoder: Any,
    *,
    frames: int,
    size: int,
    batches: Sequence[int] = PARITY_BATCHES,
    other_frames: int | None = None,
    seed: int = 0,
) -> list[Parity]:
    """Compare PyTorch ``model`` with onnxruntime ``encoder`` on seeded inputs in [−1, 1].

    One check per batch size in ``batches`` at ``frames``; one more at batch 1 with
    ``other_frames`` when given (dynamic time axis). Returns every :class:`Parity`.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    shapes = [(b, frames) for b in batches]
    if other_frames is not None:
        shapes.append((1, other_frames))
    out = []
    for batch, t in shapes:
        x = torch.rand(batch, 3, t, size, size, generator=gen) * 2 - 1
        with torch.no_grad():
            ref = model(x).float().numpy()
        got = encoder(x.numpy())
        if got.shape != ref.shape:
            raise ExportError(f"{encoder.path}: onnxruntime returned shape {got.shape}, PyTorch {ref.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
        if not np.isfinite(diff):
            diff = float("inf")
        max_ref = float(np.max(np.abs(ref))) if ref.size else 0.0
        out.append(Parity(batch, t, diff, max_ref, tolerance(max_ref)))
    return out


def _raise_on_mismatch(parity: list[Parity], what: str) -> None:
    bad = [p for p in parity if not p.ok]
    if bad:
        worst = max(bad, key=lambda p: p.max_abs_diff / p.tolerance)
        raise ExportError(
            f"{what} does not match PyTorch: {worst.line()}; the file was not accepted"
        )


# --------------------------------------------------------------------------- public API


def export_onnx(
    checkpoint_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    exporter: str = "dynamo",
    opset: int = MIN_OPSET,
    batch: int = 2,
    verify: bool = True,
    provider: str = "auto",
    batches: Sequence[int] = PARITY_BATCHES,
) -> ExportResult:
    """Export the checkpoint's encoder to ONE ONNX file at ``out``, verified with onnxruntime.

    Input ``clips float32[batch, 3, T, S, S]`` (normalised ``x/255·2−1``; T and S from the
    checkpoint; batch, and time where the backbone allows, dynamic), output
    ``features float32[batch, D]``. ``batch`` is the example batch traced (keep it >= 2 so
    the batch axis stays symbolic); parity runs at ``batches`` (sizes other than ``batch``).
    Raises ExportError on an unsupported construct or a parity mismatch; ``out`` is then
    untouched.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose {' or '.join(EXPORTERS)}")
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; cstp exports opset >= {MIN_OPSET}")
    if batch < 2:
        raise ExportError(f"export batch {batch} would fix the batch axis; use --batch 2 or more")
    import torch

    out = Path(out)
    if verify:
        from cstp_cli.deploy.ort import preflight

        preflight(provider, what=str(out))
    model, ckpt, sha, spec = _load(checkpoint_path)
    frames, size = _clip(ckpt)
    example = torch.rand(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    try:
        with atomic_path(out, suffix=".onnx") as tmp:  # fails early on an unwritable folder; renamed only on parity
            proto, dynamic_time, notes = trace_onnx(
                model, example, exporter=exporter, opset=opset,
                dynamic_time=bool(spec.dynamic_time), min_frames=int(spec.min_frames),
            )
            metadata = _metadata(ckpt, sha, dynamic_time, spec.min_frames, exporter, opset, model.feature_dim)
            _save_onnx(proto, tmp, metadata)
            result = ExportResult(
                path=out, format="onnx", backbone=metadata["backbone"], width=metadata["width"],
                checkpoint_sha256=sha, exporter=exporter, opset=opset, dynamic_time=dynamic_time,
                metadata=metadata, size_bytes=tmp.stat().st_size, notes=notes,
            )
            if verify:
                _verify_export(result, model, tmp, out, spec, frames, size, provider, batches, f"the {exporter} export of {checkpoint_path}")
    except OSError as exc:  # unwritable folder, full disk: the old file (if any) is untouched
        raise ExportError(f"cannot write {out}: {write_failure(exc)}; the previous file is kept — free space or choose another -o") from exc
    return result


def _verify_export(result: ExportResult, model: Any, tmp: Path, out: Path, spec: Any, frames: int, size: int,
                   provider: str, batches: Sequence[int], what: str) -> None:
    """Run the file at ``tmp`` with onnxruntime and record parity in ``result``; ExportError on mismatch."""
    from cstp_cli.deploy.ort import OnnxEncoder

    try:
        encoder = OnnxEncoder(tmp, provider=provider, precise=True)
    except ExportError as exc:
        raise ExportError(str(exc).replace(str(tmp), str(out))) from exc
    result.provider = encoder.provider
    other = _parity_frames(frames, spec.min_frames) if result.dynamic_time else None
    result.parity = verify_parity(model, encoder, frames=frames, size=size, batches=batches, other_frames=other)
    del encoder
    _raise_on_mismatch(result.parity, what)


def check_onnx(
    onnx_path: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    *,
    provider: str = "auto",
    batches: Sequence[int] = PARITY_BATCHES,
) -> ExportResult:
    """Verify an existing ONNX encoder against a checkpoint (``cstp export --check-only``).

    Checks the metadata (backbone, width, clip shape, feature dim must be the checkpoint's)
    and parity at ``batches``; raises ExportError on any mismatch. A differing checkpoint
    hash alone is reported as a note (the same weights may be saved twice).
    """
    from cstp_cli.deploy.ort import OnnxEncoder

    encoder = OnnxEncoder(onnx_path, provider=provider, precise=True)
    model, ckpt, sha, spec = _load(checkpoint_path)
    meta = encoder.metadata
    frames, size = _clip(ckpt)
    expected = {
        "backbone": ckpt["backbone"]["name"],
        "width": ckpt["backbone"].get("width", "full"),
        "clip_shape": [3, frames, size, size],
        "feature_dim": int(model.feature_dim),
    }
    for key, value in expected.items():
        if meta[key] != value:
            raise ExportError(
                f"{onnx_path} holds {key} {meta[key]!r} but {checkpoint_path} has {value!r}; "
                "export this checkpoint again"
            )
    notes = []
    if meta["checkpoint_sha256"] != sha:
        notes.append(f"exported from another checkpoint file (sha256 {meta['checkpoint_sha256'][:12]}…, this one {sha[:12]}…)")
    other = _parity_frames(frames, meta["min_frames"]) if meta["dynamic_time"] else None
    parity = verify_parity(model, encoder, frames=frames, size=size, batches=batches, other_frames=other)
    result = ExportResult(
        path=Path(onnx_path), format="onnx", backbone=meta["backbone"], width=meta["width"],
        checkpoint_sha256=sha, exporter=meta.get("exporter"), opset=int(meta.get("opset", 0)) or None,
        provider=encoder.provider, dynamic_time=meta["dynamic_time"], parity=parity,
        metadata={k: str(v) for k, v in meta.items()}, size_bytes=Path(onnx_path).stat().st_size, notes=notes,
    )
    _raise_on_mismatch(parity, f"{onnx_path} checked against {checkpoint_path}")
    return result


def export_state_dict(checkpoint_path: str | os.PathLike, out: str | os.PathLike) -> ExportResult:
    """Write the encoder's state dict and preprocessing as a ``weights_only``-loadable .pt file.

    Content: ``{"format": "cstp-encoder-state", "format_version": 1, "backbone": {name, width},
    "feature_dim": D, "preprocess": {frame_wh, frames, size, normalisation}, "state_dict": {...},
    "cstp_version", "checkpoint_sha256"}``. Rebuild with
    ``get_registry().backbone(name).build(width=width).load_state_dict(obj["state_dict"])``.
    """
    from cstp_cli import __version__
    from cstp_cli.core.checkpoint import atomic_save, file_hash, load_checkpoint, load_encoder
    from cstp_cli.errors import CheckpointError

    ckpt = load_checkpoint(checkpoint_path)
    model = load_encoder(ckpt, source=checkpoint_path)
    pre = model.preprocess
    obj = {
        "format": STATE_FORMAT,
        "format_version": 1,
        "backbone": dict(ckpt["backbone"]),
        "feature_dim": int(model.feature_dim),
        "preprocess": {
            "frame_wh": [int(v) for v in pre["frame_wh"]],
            "frames": int(pre["frames"]),
            "size": int(pre["size"]),
            "normalisation": {k: float(v) for k, v in pre["normalisation"].items()},
        },
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "cstp_version": __version__,
        "checkpoint_sha256": file_hash(checkpoint_path),
    }
    try:
        path = atomic_save(obj, out)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc
    return ExportResult(
        path=path, format="state_dict", backbone=obj["backbone"]["name"], width=obj["backbone"].get("width", "full"),
        checkpoint_sha256=obj["checkpoint_sha256"], size_bytes=path.stat().st_size,
    )
