"""ONNX export with parity, --check-only, state-dict export, load_encoder (DESIGN "Export and inference").

Tiny widths, 16×32² clips. Every backbone goes through the fast legacy exporter; the default
(dynamo) exporter runs once, end to end through the CLI, on c3d (the cheapest graph to
trace; the dynamo export of every full-width backbone is checked by bench/export_throughput.py).
"""

import json

import numpy as np
import onnx
import pytest
import torch

import cstp_cli
from cstp_cli.deploy import export as ex
from cstp_cli.core.checkpoint import atomic_save, encoder_checkpoint, file_hash
from cstp_cli.errors import ExportError
from cstp_cli.deploy.ort import OnnxEncoder
from cstp_cli.plugins import get_registry

BACKBONES = ["r21d", "c3d", "r3d18", "r2plus1d18", "s3d"]
FRAMES, SIZE, FRAME_WH = 16, 32, (43, 32)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_checkpoint(path, name="r21d", seed=0):
    """A real pretrain checkpoint of a tiny ``name`` encoder with weights from ``seed``."""
    torch.manual_seed(seed)
    model = get_registry().backbone(name).build(width="tiny")
    ckpt = encoder_checkpoint(
        kind="pretrain", backbone=name, width="tiny", feature_dim=model.feature_dim,
        encoder_state=model.state_dict(), frames=FRAMES, size=SIZE, frame_wh=FRAME_WH,
    )
    return atomic_save(ckpt, path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, onnx path, ExportResult) of a tiny r21d through the legacy exporter."""
    folder = tmp_path_factory.mktemp("export")
    torch.set_num_threads(1)
    ckpt = make_checkpoint(folder / "r21d.pt")
    result = ex.export_onnx(ckpt, folder / "r21d.onnx", exporter="legacy")
    return ckpt, folder / "r21d.onnx", result


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_exports_and_matches_at_batch_1_3_7(tmp_path, name):
    ckpt = make_checkpoint(tmp_path / f"{name}.pt", name)
    result = ex.export_onnx(ckpt, tmp_path / f"{name}.onnx", exporter="legacy")
    assert [p.batch for p in result.parity][:3] == [1, 3, 7]
    assert all(p.ok and p.frames >= 1 for p in result.parity)
    encoder, model = OnnxEncoder(tmp_path / f"{name}.onnx", provider="cpu"), cstp_cli.load_encoder(ckpt)
    x = torch.rand(5, 3, FRAMES, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(encoder(x.numpy()) - ref).max() <= ex.tolerance(np.abs(ref).max())


def test_default_exporter_via_cli_writes_a_verified_file(tmp_path, capsys):
    from cstp_cli.cli import main

    ckpt = make_checkpoint(tmp_path / "c3d.pt", "c3d")  # the cheapest graph to trace
    with pytest.raises(SystemExit) as done:
        main(["export", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--provider", "cpu"])
    printed = capsys.readouterr().out
    assert done.value.code == 0
    assert "exporter dynamo" in printed and "CPUExecutionProvider" in printed
    assert "batch 7, T=16" in printed and "ok" in printed
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.opset_import[0].version >= 18
    assert OnnxEncoder(tmp_path / "m.onnx", provider="cpu").metadata["exporter"] == "dynamo"


def test_batch_and_time_axes_are_dynamic(exported):
    _, path, result = exported
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[2].dim_param and dims[3].dim_value == SIZE
    assert result.dynamic_time and any(p.frames != FRAMES for p in result.parity)


def test_export_is_one_file_without_external_data(exported):
    _, path, _ = exported
    model = onnx.load(str(path), load_external_data=False)
    assert all(not t.external_data for t in model.graph.initializer)
    assert sorted(p.name for p in path.parent.iterdir()) == ["r21d.onnx", "r21d.pt"]


def test_metadata_round_trip(exported):
    ckpt, path, _ = exported
    meta = OnnxEncoder(path, provider="cpu").metadata
    assert meta["backbone"] == "r21d" and meta["width"] == "tiny"
    assert meta["clip_shape"] == [3, FRAMES, SIZE, SIZE]
    assert meta["cache_frame_wh"] == list(FRAME_WH)
    assert meta["normalisation"] == {"scale": 2 / 255, "offset": -1.0}
    assert meta["feature_dim"] == 64 and meta["cstp_version"] == cstp_cli.__version__
    assert meta["checkpoint_sha256"] == file_hash(ckpt)


def test_parity_failure_keeps_the_previous_file(exported, tmp_path, monkeypatch):
    ckpt, good, _ = exported
    out = tmp_path / "m.onnx"
    out.write_bytes(good.read_bytes())
    real_call = OnnxEncoder.__call__
    monkeypatch.setattr(OnnxEncoder, "__call__", lambda self, x: real_call(self, x) + 0.01)
    with pytest.raises(ExportError, match="does not match PyTorch"):
        ex.export_onnx(ckpt, out, exporter="legacy")
    assert out.read_bytes() == good.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_parity_failure_leaves_no_file(exported, tmp_path, monkeypatch):
    ckpt, _, _ = exported
    monkeypatch.setattr(ex, "tolerance", lambda max_ref: -1.0)
    with pytest.raises(ExportError):
        ex.export_onnx(ckpt, tmp_path / "m.onnx", exporter="legacy")
    assert list(tmp_path.iterdir()) == []


def test_tolerance_is_relative_to_output_scale():
    assert ex.tolerance(1000.0) == pytest.approx(0.1, rel=1e-6)
    assert ex.tolerance(1e-6) == pytest.approx(1e-10 + 1e-8)


def test_unsupported_construct_is_one_clear_error():
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3, 4)) if x.sum() > 0 else -x.mean((2, 3, 4))

    with pytest.raises(ExportError, match="cannot export this encoder.*--exporter legacy"):
        ex.trace_onnx(DataDependent().eval(), torch.rand(2, 3, 8, 32, 32), exporter="dynamo", opset=18,
                      dynamic_time=True, min_frames=1)


@pytest.mark.parametrize("kwargs,match", [({"exporter": "jit"}, "unknown exporter"), ({"opset": 13}, "opset 13"),
                                          ({"batch": 1}, "batch axis")])
def test_bad_export_options_are_refused(exported, tmp_path, kwargs, match):
    with pytest.raises(ExportError, match=match):
        ex.export_onnx(exported[0], tmp_path / "m.onnx", **kwargs)


def test_check_only_accepts_the_matching_checkpoint(exported):
    ckpt, path, _ = exported
    result = ex.check_onnx(path, ckpt, provider="cpu")
    assert all(p.ok for p in result.parity) and not result.notes


def test_check_only_detects_a_mismatching_checkpoint(exported, tmp_path):
    _, path, _ = exported
    other = make_checkpoint(tmp_path / "other.pt", seed=1)
    with pytest.raises(ExportError, match="does not match PyTorch"):
        ex.check_onnx(path, other, provider="cpu")


def test_check_only_cli_exits_1_on_another_backbone(exported, tmp_path, capsys):
    from cstp_cli.cli import main

    other = make_checkpoint(tmp_path / "c3d.pt", "c3d")
    with pytest.raises(SystemExit) as done:
        main(["export", str(other), "-o", str(exported[1]), "--check-only"])
    assert done.value.code == 1
    assert "holds backbone 'r21d'" in capsys.readouterr().err


def test_state_dict_format_loads_weights_only_and_rebuilds(exported, tmp_path):
    ckpt, _, _ = exported
    result = ex.export_state_dict(ckpt, tmp_path / "enc.pt")
    obj = torch.load(result.path, weights_only=True)
    assert obj["preprocess"] == {"frame_wh": list(FRAME_WH), "frames": FRAMES, "size": SIZE,
                                 "normalisation": {"scale": 2 / 255, "offset": -1.0}}
    model = get_registry().backbone(obj["backbone"]["name"]).build(width=obj["backbone"]["width"]).eval()
    model.load_state_dict(obj["state_dict"])
    x = torch.rand(2, 3, 8, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), cstp_cli.load_encoder(ckpt)(x))


def test_load_encoder_returns_module_with_preprocess(exported):
    model = cstp_cli.load_encoder(exported[0])
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.preprocess["frame_wh"] == FRAME_WH and model.preprocess["size"] == SIZE
    assert model.preprocess["normalisation"]["offset"] == -1.0


def test_result_lines_report_parity_and_provider(exported):
    text = "\n".join(exported[2].lines())
    assert "parity batch 3" in text and "provider: CPUExecutionProvider" in text
    assert json.loads(exported[2].metadata["clip_shape"]) == [3, FRAMES, SIZE, SIZE]


def test_full_disk_while_saving_onnx_is_one_line_and_keeps_the_previous_file(exported, tmp_path, monkeypatch):
    import errno

    ckpt, good, _ = exported
    out = tmp_path / "m.onnx"
    out.write_bytes(good.read_bytes())

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full_disk)
    with pytest.raises(ExportError, match="cannot write .*m.onnx: no space left on the device; the previous file is kept"):
        ex.export_onnx(ckpt, out, exporter="legacy", verify=False)
    assert out.read_bytes() == good.read_bytes() and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_full_disk_while_saving_a_state_dict_is_one_line(exported, tmp_path, monkeypatch):
    ckpt, _, _ = exported

    def full_disk(*a, **k):  # what torch.save raises on ENOSPC
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(ExportError, match="cannot write .*enc.pt: the write failed"):
        ex.export_state_dict(ckpt, tmp_path / "enc.pt")
    assert list(tmp_path.iterdir()) == []


def test_export_to_a_folder_is_one_usage_line_before_loading(tmp_path, capsys, monkeypatch):
    from cstp_cli.cli import main

    monkeypatch.setattr(ex, "_load", lambda *a: pytest.fail("loaded the checkpoint before checking -o"))
    with pytest.raises(SystemExit) as done:
        main(["export", str(tmp_path / "any.pt"), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and "is a folder; -o expects a file name" in err
