"""bench/stor_probes.py: the bench-local variants and helpers behind the diagnosis' notes."""

import json

import pytest
import torch


def test_luma_gradients_ignore_a_brightness_offset_and_find_an_edge(probes):
    x = torch.zeros(1, 3, 2, 8, 8)
    x[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    g = probes.luma_gradients(x)
    assert g.shape == x.shape
    assert torch.allclose(probes.luma_gradients(x + 0.3), g)
    assert g[0, 0, 0, :, 3].min() > 0.9 and g[0, 0, 0, :, :3].abs().max() == 0


@pytest.mark.parametrize("name", ["fine", "conv3", "centred", "profile"])
def test_variant_is_undone_on_exit(probes, name):
    from cstp_plugins.backbones.cnn4 import CNN4
    from cstp_plugins.pretext import stor_heads
    from cstp_plugins.pretext.stor import StorTask

    before = (CNN4.pools, CNN4.features, StorTask.head, StorTask.loss, stor_heads.cost_volume)
    with probes.variant(name):
        assert (CNN4.pools, CNN4.features, StorTask.head, StorTask.loss, stor_heads.cost_volume) != before
    assert (CNN4.pools, CNN4.features, StorTask.head, StorTask.loss, stor_heads.cost_volume) == before


def test_unknown_variant_is_refused(probes):
    with pytest.raises(ValueError, match="unknown probe variant"), probes.variant("nope"):
        pass


def test_conv3_variant_gives_stor_the_conv3_maps(probes):
    from cstp_plugins.backbones.cnn4 import CNN4
    from cstp_plugins.pretext.stor import StorTask

    with probes.variant("conv3"):
        net, task = CNN4("tiny"), StorTask(fusion="corr")
        heads = task.head(net.feature_dim)
        x1, x2 = torch.randn(2, 3, 8, 32, 32), torch.randn(2, 3, 8, 32, 32)
        m1, m2 = net.features(x1), net.features(x2)
        seen = []
        heads["spatial"].register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape))
        labels = {"stor.spatial": torch.tensor([0, 1]), "stor.temporal": torch.tensor([2, 3])}
        y = m1.mean((2, 3, 4))
        terms = task.loss(y, y, labels, heads, maps=(m1, m2))
    assert m1.shape[1:] == (128, 2, 4, 4)
    assert seen == [torch.Size([2, 64, 4, 8, 8])]
    assert set(terms) == {"stor.spatial", "stor.temporal"}


def test_static_background_variant_of_the_set_is_restored(probes, monkeypatch, tmp_path):
    from cstp_cli.data import synth

    seen = []
    monkeypatch.setattr(synth, "generate", lambda out, **kw: seen.append(synth.BACKGROUND_DRIFT) or out)
    drift = synth.BACKGROUND_DRIFT
    assert probes.main(["static-synth", str(tmp_path / "s")]) == 0
    assert seen == [0.0] and synth.BACKGROUND_DRIFT == drift > 0


def test_tail_means_average_the_last_steps(probes, tmp_path):
    rows = [{"terms": {"a": float(i), "b": 2.0 * i}} for i in range(10)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert probes.tail_means(path, last=4) == {"a": 7.5, "b": 15.0}


def test_mottle_synth_generates_with_the_asked_mottle_and_restores_it(probes, monkeypatch, tmp_path):
    from cstp_cli.data import synth

    seen = {}
    monkeypatch.setattr(synth, "generate", lambda out, **kw: seen.update(change=synth.MOTTLE_CHANGE, grain=synth.GRAIN) or out)
    before = (synth.MOTTLE_CHANGE, synth.GRAIN)
    assert probes.main(["mottle-synth", str(tmp_path / "set"), "--change", "8", "--contrast", "0.6"]) == 0
    assert seen == {"change": 8.0, "grain": 0.6} and (synth.MOTTLE_CHANGE, synth.GRAIN) == before
