"""onnxruntime sessions: provider choice and report, IO binding, input and metadata checks."""

import importlib.metadata as md
import json

import numpy as np
import onnx
import pytest
import torch

from cstp_cli.deploy import ort as cort
from cstp_cli.core.checkpoint import atomic_save, encoder_checkpoint
from cstp_cli.errors import ExportError
from cstp_cli.deploy.export import export_onnx
from cstp_cli.plugins import get_registry

CPU, CUDA, TRT = cort.CPU, cort.CUDA, cort.TENSORRT


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """(onnx path, torch encoder) of a tiny r21d at 8×32², exported with the legacy exporter."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("ort")
    torch.manual_seed(0)
    model = get_registry().backbone("r21d").build(width="tiny").eval()
    ckpt = encoder_checkpoint(kind="pretrain", backbone="r21d", width="tiny", feature_dim=64,
                              encoder_state=model.state_dict(), frames=8, size=32, frame_wh=(43, 32))
    atomic_save(ckpt, folder / "r21d.pt")
    export_onnx(folder / "r21d.pt", folder / "r21d.onnx", exporter="legacy", provider="cpu")
    return folder / "r21d.onnx", model


def _rewrite(src, dst, **changes):
    """Copy an ONNX file with metadata keys changed (value None deletes the key)."""
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        props.pop(key, None) if value is None else props.__setitem__(key, value)
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(dst))
    return dst


# ----------------------------------------------------------------------------- provider choice


def test_auto_prefers_cuda_when_offered_and_a_gpu_is_visible():
    providers = cort.choose_providers("auto", [TRT, CUDA, CPU], gpu=True)
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == [CUDA, CPU]


def test_auto_reads_this_onnxruntime_and_the_gpu_when_not_given(monkeypatch):
    monkeypatch.setattr(cort, "available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(cort, "_gpu_visible", lambda: True)
    assert cort.choose_providers("auto")[0][0] == CUDA
    monkeypatch.setattr(cort, "_gpu_visible", lambda: False)
    assert cort.choose_providers("auto") == [CPU]


def test_auto_runs_cpu_without_a_gpu_even_if_cuda_is_offered():
    assert cort.choose_providers("auto", [TRT, CUDA, CPU], gpu=False) == [CPU]


def test_auto_runs_cpu_when_cuda_is_not_offered():
    assert cort.choose_providers("auto", [CPU], gpu=True) == [CPU]


def test_auto_never_picks_tensorrt():
    providers = cort.choose_providers("auto", [TRT, CUDA, CPU], gpu=True)
    assert TRT not in [p[0] if isinstance(p, tuple) else p for p in providers]


def test_tensorrt_on_request_has_its_engine_cache_on(tmp_path):
    providers = cort.choose_providers("tensorrt", [TRT, CUDA, CPU], trt_cache=tmp_path)
    name, options = providers[0]
    assert name == TRT and options["trt_engine_cache_enable"] == "1"
    assert options["trt_engine_cache_path"] == str(tmp_path)
    assert [p[0] if isinstance(p, tuple) else p for p in providers[1:]] == [CUDA, CPU]


def test_precise_cuda_turns_tf32_off():
    (name, options), _ = cort.choose_providers("cuda", [CUDA, CPU], precise=True)
    assert name == CUDA and options["use_tf32"] == "0"


def test_requested_cuda_missing_from_this_build_is_an_error():
    with pytest.raises(ExportError, match="cuda provider requested but this onnxruntime offers only CPUExecutionProvider"):
        cort.choose_providers("cuda", [CPU])


def test_unknown_provider_is_an_error():
    with pytest.raises(ExportError, match="unknown provider 'rocm'"):
        cort.choose_providers("rocm", [CPU])


def test_encoder_reports_the_provider_that_ran(model_file):
    enc = cort.OnnxEncoder(model_file[0], provider="auto", available=[CPU])
    assert enc.provider == CPU == enc.session.get_providers()[0]


def test_silent_fallback_from_a_requested_provider_is_refused(model_file, monkeypatch):
    # onnxruntime offered CUDA but the session ended up on CPU (as when CUDA libraries are missing)
    monkeypatch.setattr(cort, "choose_providers", lambda *a, **k: [CPU])
    with pytest.raises(ExportError, match="cuda provider requested .* but onnxruntime ran CPUExecutionProvider"):
        cort.OnnxEncoder(model_file[0], provider="cuda", available=[CUDA, CPU])


def test_both_onnxruntime_packages_installed_is_explained(monkeypatch):
    monkeypatch.setattr(md, "version", lambda dist: {"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.20.0"}[dist])
    line = cort.installation_conflict()
    assert "onnxruntime 1.20.0 and onnxruntime-gpu 1.20.0" in line and "\n" not in line


def test_one_onnxruntime_package_is_no_conflict(monkeypatch):
    def version(dist):
        if dist == "onnxruntime":
            raise md.PackageNotFoundError(dist)
        return "1.20.0"

    monkeypatch.setattr(md, "version", version)
    assert cort.installation_conflict() is None


# ----------------------------------------------------------------------------- inference


def test_numpy_input_matches_pytorch(model_file):
    path, model = model_file
    x = torch.rand(3, 3, 8, 32, 32) * 2 - 1
    out = cort.OnnxEncoder(path, provider="cpu")(x.numpy())
    with torch.no_grad():
        assert out.dtype == np.float32 and np.allclose(out, model(x).numpy(), atol=1e-5)


def test_io_binding_path_runs_on_cpu_tensors(model_file):
    path, model = model_file
    enc = cort.OnnxEncoder(path, provider="cpu")
    x = torch.rand(2, 3, 12, 32, 32) * 2 - 1
    bound = enc.run_bound(x)
    with torch.no_grad():
        assert bound.shape == (2, 64) and np.allclose(bound, model(x).numpy(), atol=1e-5)
    assert np.array_equal(enc(x), bound)


def test_io_binding_reads_non_contiguous_tensors(model_file):
    path, _ = model_file
    enc = cort.OnnxEncoder(path, provider="cpu")
    x = (torch.rand(2, 3, 16, 32, 32) * 2 - 1)[:, :, ::2]
    assert not x.is_contiguous()
    assert np.allclose(enc.run_bound(x), enc(x.contiguous().numpy()), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 8, 64, 64), (2, 1, 8, 32, 32), (3, 8, 32, 32)])
def test_wrong_input_shape_names_the_expected_shape(model_file, shape):
    enc = cort.OnnxEncoder(model_file[0], provider="cpu")
    with pytest.raises(ExportError, match=r"expected float32\[B, 3, T>=1, 32, 32\]"):
        enc(np.zeros(shape, dtype=np.float32))


def test_wrong_dtype_is_refused(model_file):
    enc = cort.OnnxEncoder(model_file[0], provider="cpu")
    with pytest.raises(ExportError, match="float64"):
        enc(torch.zeros(1, 3, 8, 32, 32, dtype=torch.float64))


# ----------------------------------------------------------------------------- metadata


def test_missing_metadata_is_a_clear_error(model_file, tmp_path):
    path = _rewrite(model_file[0], tmp_path / "m.onnx", clip_shape=None, feature_dim=None)
    with pytest.raises(ExportError, match="no cstp metadata 'clip_shape', 'feature_dim'.*re-export"):
        cort.OnnxEncoder(path, provider="cpu")


def test_metadata_disagreeing_with_the_graph_is_refused(model_file, tmp_path):
    path = _rewrite(model_file[0], tmp_path / "m.onnx", clip_shape=json.dumps([3, 8, 112, 112]))
    with pytest.raises(ExportError, match="does not match the graph"):
        cort.OnnxEncoder(path, provider="cpu")


def test_malformed_metadata_is_refused(model_file, tmp_path):
    path = _rewrite(model_file[0], tmp_path / "m.onnx", feature_dim="sixty-four")
    with pytest.raises(ExportError, match="malformed cstp metadata"):
        cort.OnnxEncoder(path, provider="cpu")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_foreign_onnx_file_is_refused(tmp_path):
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.rand(1, 4),), str(tmp_path / "lin.onnx"), dynamo=False)
    with pytest.raises(ExportError, match="no cstp metadata"):
        cort.OnnxEncoder(tmp_path / "lin.onnx", provider="cpu")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="does not exist; create it with cstp export"):
        cort.OnnxEncoder(tmp_path / "nope.onnx")


def test_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="cannot load"):
        cort.OnnxEncoder(tmp_path / "bad.onnx", provider="cpu")
