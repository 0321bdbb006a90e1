"""onnxruntime sessions for exported encoders (DESIGN "Export and inference").

The only module that imports ``onnxruntime`` (lazily, inside functions). Provider choice:
``auto`` runs CUDA when this onnxruntime has the CUDA provider *and* a GPU is visible,
else CPU; ``tensorrt`` only on request, with its engine cache on; ``cuda`` / ``tensorrt``
that cannot run are an :class:`~cstp_cli.errors.ExportError`, never a silent CPU run. The
provider that actually ran (``session.get_providers()[0]``) is reported as
:attr:`OnnxEncoder.provider`.

Inputs already on a GPU (torch tensors) go through IO binding, so they are not copied to the
host; the same path runs for CPU tensors.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cstp_cli.errors import ExportError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
PROVIDER_NAMES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
REQUESTS = ("auto", "cpu", "cuda", "tensorrt")

#: Metadata keys every cstp ONNX encoder carries (written by :mod:`cstp_cli.deploy.export`).
REQUIRED_METADATA = (
    "format",
    "backbone",
    "width",
    "clip_shape",
    "cache_frame_wh",
    "normalisation",
    "feature_dim",
    "dynamic_time",
    "min_frames",
    "cstp_version",
    "checkpoint_sha256",
)
METADATA_FORMAT = "cstp-onnx-encoder-1"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a dependency of cstp
        raise ExportError(
            f"onnxruntime is not importable ({exc}); pip install onnxruntime-gpu (Linux x86-64) or onnxruntime"
        ) from exc
    return onnxruntime


def installation_conflict() -> str | None:
    """One line explaining a broken install when both ``onnxruntime`` and ``onnxruntime-gpu`` are installed."""
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    if len(found) < 2:
        return None
    return (
        f"both {found[0]} and {found[1]} are installed; they share one 'onnxruntime' folder, so the "
        "CUDA provider may be missing: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
    )


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (not proof that a GPU is present)."""
    return list(_ort().get_available_providers())


def _gpu_visible() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch is a dependency
        return False


def trt_cache_path() -> Path:
    """Folder of the TensorRT engine cache: ``<cache folder>/tensorrt``."""
    from cstp_cli.core.paths import cache_dir

    return cache_dir() / "tensorrt"


def choose_providers(
    requested: str = "auto",
    available: Sequence[str] | None = None,
    *,
    gpu: bool | None = None,
    trt_cache: str | os.PathLike | None = None,
    precise: bool = False,
) -> list[Any]:
    """The ``providers`` list for an ``InferenceSession``, best first.

    ``requested``: ``auto`` (CUDA when offered and ``gpu``, else CPU), ``cpu``, ``cuda`` or
    ``tensorrt`` (TensorRT → CUDA → CPU, engine cache enabled at ``trt_cache``).
    ``available``: the offered providers (default: this onnxruntime's); ``gpu``: whether a
    GPU is visible (default: ``torch.cuda.is_available()``); ``precise``: CUDA without TF32
    (for parity checks). Entries are provider names or ``(name, options)`` pairs. An explicit
    request that cannot be met raises ExportError.
    """
    if requested not in REQUESTS:
        raise ExportError(f"unknown provider {requested!r}; choose one of {', '.join(REQUESTS)}")
    offered = list(available) if available is not None else available_providers()
    cuda = (CUDA, {"device_id": 0, "use_tf32": "0"} if precise else {"device_id": 0})
    if requested == "cpu":
        return [CPU]
    if requested == "auto":
        has_gpu = _gpu_visible() if gpu is None else gpu
        return [cuda, CPU] if CUDA in offered and has_gpu else [CPU]
    name = PROVIDER_NAMES[requested]
    if name not in offered:
        hint = installation_conflict() or "install onnxruntime-gpu with its CUDA/TensorRT libraries"
        raise ExportError(f"{requested} provider requested but this onnxruntime offers only {', '.join(offered)}; {hint}")
    if requested == "cuda":
        return [cuda, CPU]
    cache = Path(trt_cache) if trt_cache is not None else trt_cache_path()
    trt = (TENSORRT, {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(cache), "device_id": 0})
    return [trt, cuda, CPU]


def preflight(provider: str, available: Sequence[str] | None = None, what: str = "the model", precise: bool = False) -> list[Any]:
    """:func:`choose_providers`, plus: ``cuda`` / ``tensorrt`` need a visible GPU (checked
    when ``available`` is not faked). Call it before slow work to fail early."""
    providers = choose_providers(provider, available, precise=precise)
    if provider in ("cuda", "tensorrt") and available is None and not _gpu_visible():
        raise ExportError(f"{provider} provider requested for {what} but no GPU is visible here; use --provider auto or cpu")
    return providers


def _provider_name(entry: Any) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


def create_session(
    path: str | os.PathLike,
    provider: str = "auto",
    *,
    available: Sequence[str] | None = None,
    precise: bool = False,
    threads: int | None = None,
) -> Any:
    """An ``InferenceSession`` on ``path`` with :func:`choose_providers`; refuses a silent fallback.

    ``threads``: CPU intra-op threads (default: onnxruntime's, one per physical core).
    Raises ExportError when the file is not a loadable ONNX model, or when ``cuda`` /
    ``tensorrt`` was requested but onnxruntime fell back to another provider.
    """
    ort = _ort()
    ort.set_default_logger_severity(3)  # errors only; cstp reports what matters in one line
    providers = preflight(provider, available, what=str(path), precise=precise)
    if TENSORRT in [_provider_name(p) for p in providers]:
        Path(providers[0][1]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    names = [_provider_name(p) for p in providers]
    opts = [p[1] if isinstance(p, tuple) else {} for p in providers]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=names, provider_options=opts)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"onnxruntime cannot load {path}: {first}; re-export it with cstp export") from exc
    ran = session.get_providers()[0]
    if provider in ("cuda", "tensorrt") and ran != PROVIDER_NAMES[provider]:
        hint = installation_conflict() or "check the GPU, CUDA and cuDNN libraries onnxruntime needs"
        raise ExportError(f"{provider} provider requested for {path} but onnxruntime ran {ran}; {hint}")
    conflict = installation_conflict()
    if conflict and provider == "auto" and ran == CPU and _gpu_visible():
        print(f"warning: {conflict}", file=sys.stderr)
    return session


def read_metadata(path: str | os.PathLike, props: dict[str, str] | None = None) -> dict[str, Any]:
    """The cstp metadata of an ONNX encoder, parsed (JSON values decoded).

    ``props`` are the raw ``metadata_props`` (default: read from the file with ``onnx``).
    Raises ExportError naming the missing or malformed key.
    """
    if props is None:
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ExportError(f"{path} is not a readable ONNX file ({type(exc).__name__}); pass a file written by cstp export") from exc
        props = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in REQUIRED_METADATA if k not in props]
    if missing:
        raise ExportError(
            f"{path} has no cstp metadata {', '.join(repr(k) for k in missing)}; re-export it with cstp export"
        )
    if props["format"] != METADATA_FORMAT:
        raise ExportError(f"{path} has metadata format {props['format']!r}, this cstp reads {METADATA_FORMAT!r}; re-export it")
    meta: dict[str, Any] = dict(props)
    try:
        for key in ("clip_shape", "cache_frame_wh", "normalisation", "feature_dim", "dynamic_time", "min_frames"):
            meta[key] = json.loads(props[key])
        shape = meta["clip_shape"]
        ok = (
            isinstance(shape, list) and len(shape) == 4 and shape[0] == 3 and all(isinstance(v, int) and v > 0 for v in shape)
            and isinstance(meta["feature_dim"], int) and meta["feature_dim"] > 0
            and isinstance(meta["dynamic_time"], bool) and isinstance(meta["min_frames"], int)
            and {"scale", "offset"} <= set(meta["normalisation"])
        )
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ExportError(f"{path} has malformed cstp metadata (clip_shape {props.get('clip_shape')!r}, feature_dim {props.get('feature_dim')!r}); re-export it")
    return meta


class OnnxEncoder:
    """An exported encoder on onnxruntime: ``enc(x float32[B, 3, T, S, S]) -> np.ndarray float32[B, D]``.

    Attributes: ``provider`` (the one that ran), ``metadata`` (parsed cstp metadata),
    ``session``, ``input_name``, ``output_name``, ``feature_dim``. ``precise=True`` turns
    TF32 off on CUDA (parity checks); inference keeps onnxruntime's default.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        provider: str = "auto",
        *,
        available: Sequence[str] | None = None,
        precise: bool = False,
        threads: int | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"ONNX model {self.path} does not exist; create it with cstp export CKPT -o {self.path}")
        self.session = create_session(self.path, provider, available=available, precise=precise, threads=threads)
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = read_metadata(self.path, props)
        self.provider: str = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.feature_dim = int(self.metadata["feature_dim"])
        self._check_graph()

    # ------------------------------------------------------------------ validation
    def _check_graph(self) -> None:
        """Metadata must agree with the graph's input and output shapes."""
        dims = self.session.get_inputs()[0].shape
        out = self.session.get_outputs()[0].shape
        c, t, s1, s2 = self.metadata["clip_shape"]
        bad = (
            len(dims) != 5
            or dims[1] != c
            or any(d != s for d, s in zip(dims[3:], (s1, s2)) if isinstance(d, int))
            or (isinstance(dims[2], int) and dims[2] != t)
            or len(out) != 2
            or (isinstance(out[1], int) and out[1] != self.feature_dim)
        )
        if bad:
            raise ExportError(
                f"{self.path}: metadata (clip {c}×{t}×{s1}×{s2}, feature_dim {self.feature_dim}) "
                f"does not match the graph (input {dims}, output {out}); re-export it with cstp export"
            )

    def expected_shape(self) -> str:
        """Human-readable expected input, e.g. ``float32[B, 3, 16, 112, 112]`` (``T>=1`` when dynamic)."""
        c, t, s1, s2 = self.metadata["clip_shape"]
        tt = f"T>={self.metadata['min_frames']}" if self.metadata["dynamic_time"] else str(t)
        return f"float32[B, {c}, {tt}, {s1}, {s2}]"

    def check_input(self, shape: Sequence[int], dtype: Any) -> None:
        """Raise ExportError unless ``shape`` / ``dtype`` fit the model (from its metadata)."""
        c, t, s1, s2 = self.metadata["clip_shape"]
        shape = tuple(int(v) for v in shape)
        time_ok = (shape[2] >= self.metadata["min_frames"]) if self.metadata["dynamic_time"] else shape[2] == t
        ok = len(shape) == 5 and shape[0] >= 1 and shape[1] == c and shape[3:] == (s1, s2) and time_ok
        if not ok or str(dtype).replace("torch.", "") != "float32":
            raise ExportError(
                f"input {str(dtype).replace('torch.', '')}{list(shape)} does not fit {self.path.name}: "
                f"expected {self.expected_shape()} (normalised x/255·2−1)"
            )

    def _run_error(self, exc: BaseException, shape: Sequence[int]) -> ExportError:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = (lines[0] if lines else type(exc).__name__)[:300]
        return ExportError(
            f"onnxruntime ({self.provider}) failed running {self.path.name} on input {list(shape)}: {reason}; "
            "re-export with --exporter legacy or report it"
        )

    # ------------------------------------------------------------------ inference
    def __call__(self, x: Any) -> np.ndarray:
        """Features ``float32[B, D]`` of clips ``x`` (NumPy array or torch tensor, any device)."""
        if isinstance(x, np.ndarray):
            self.check_input(x.shape, x.dtype)
            try:
                return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x)})[0]
            except Exception as exc:
                raise self._run_error(exc, x.shape) from exc
        if hasattr(x, "data_ptr"):
            return self.run_bound(x)
        raise ExportError(f"input of type {type(x).__name__} is not a NumPy array or torch tensor; pass clips {self.expected_shape()}")

    def run_bound(self, x: Any) -> np.ndarray:
        """Run a torch tensor through IO binding: the input is read in place on its device.

        A CUDA tensor is bound on the GPU when the session runs CUDA/TensorRT (else copied
        to the host first); the output is allocated by onnxruntime on the same device and
        copied to a NumPy array.
        """
        self.check_input(tuple(x.shape), x.dtype)
        on_gpu = x.device.type == "cuda" and self.provider in (CUDA, TENSORRT)
        x = (x if on_gpu else x.detach().cpu()).detach().contiguous()
        if on_gpu:  # onnxruntime runs on its own stream: let torch's pending work finish first
            import torch

            torch.cuda.current_stream(x.device).synchronize()
        device = "cuda" if on_gpu else "cpu"
        index = (x.device.index or 0) if on_gpu else 0
        binding = self.session.io_binding()
        binding.bind_input(
            name=self.input_name,
            device_type=device,
            device_id=index,
            element_type=np.float32,
            shape=tuple(x.shape),
            buffer_ptr=x.data_ptr(),
        )
        binding.bind_output(self.output_name, device_type=device, device_id=index)
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:
            raise self._run_error(exc, x.shape) from exc
        out = binding.copy_outputs_to_cpu()[0]
        del x  # keep the bound tensor alive until here
        return out
