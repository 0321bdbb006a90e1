"""Encoder checkpoints: loading, and the one-line reason when weights do not fit the backbone."""

import pytest
import torch

from cstp_cli.core.checkpoint import atomic_save, build_backbone, encoder_checkpoint, load_encoder, state_mismatch
from cstp_cli.errors import CheckpointError


def save(tmp_path, state, name="enc.pt"):
    model = build_backbone("cnn4", "tiny")
    ckpt = encoder_checkpoint(kind="pretrain", backbone="cnn4", width="tiny", feature_dim=model.feature_dim,
                              encoder_state=state if state is not None else model.state_dict(), frames=8, size=32,
                              frame_wh=(40, 32))
    return atomic_save(ckpt, tmp_path / name), model


def test_a_fitting_checkpoint_loads_the_same_weights_in_eval_mode(tmp_path):
    path, model = save(tmp_path, None)
    loaded = load_encoder(path)
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_renamed_weights_are_refused_in_one_line_naming_file_and_keys(tmp_path):
    state = {k.replace("body.", "trunk."): v for k, v in build_backbone("cnn4", "tiny").state_dict().items()}
    path, _ = save(tmp_path, state)
    with pytest.raises(CheckpointError) as err:
        load_encoder(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "missing (first: body.0.0.weight)" in msg and "unexpected (first: trunk.0.0.weight)" in msg


def test_state_mismatch_names_a_reshaped_key_and_is_empty_when_it_fits():
    own = build_backbone("cnn4", "tiny").state_dict()
    assert state_mismatch(own, own) == ""
    other = dict(own, **{"body.0.0.bias": torch.zeros(3)})
    assert state_mismatch(own, other) == "1 of another shape (first: body.0.0.bias)"


def test_cli_names_the_checkpoint_file_when_weights_do_not_fit(tmp_path, capsys):
    from cstp_cli.cli import main

    state = {k.replace("body.", "trunk."): v for k, v in build_backbone("cnn4", "tiny").state_dict().items()}
    path, _ = save(tmp_path, state)
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(path), "-o", str(tmp_path / "enc.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and len(err) == 1 and str(path) in err[0] and "do not fit backbone cnn4" in err[0]


def test_torch_write_failure_is_one_line_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = atomic_save({"a": torch.zeros(2)}, tmp_path / "c.pt")

    def full_disk(*a, **k):  # what torch.save raises on ENOSPC
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*c.pt: the write failed .*previous file is kept"):
        atomic_save({"a": torch.zeros(9)}, path)
    assert torch.load(path)["a"].shape == (2,) and [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_enospc_under_torch_save_is_named_as_a_full_disk(tmp_path, monkeypatch):
    import errno

    from cstp_cli.core import safewrite

    class FullDisk:  # a real file whose writes fail as on a full disk
        def __init__(self, path):
            self._f = open(path, "w+b")

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self._f, name)

    monkeypatch.setattr(safewrite.GuardedFile, "_open", staticmethod(FullDisk))
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*: no space left on the device"):
        atomic_save({"a": torch.zeros(1000)}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []
