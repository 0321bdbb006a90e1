"""Two gloo processes × B equal one process × 2B (issue 6 groundwork; BatchNorm in eval mode).

The two ranks (fresh interpreters: forking a process whose autograd engine already ran is
unsafe) run ``_dist_worker.py`` once for the module; each test checks one result.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORLD = 2
HERE = Path(__file__).resolve().parent


def load_worker():
    spec = importlib.util.spec_from_file_location("cstp_contrastive_dist_worker", HERE / "_dist_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def worker():
    return load_worker()


@pytest.fixture(scope="module")
def inputs(worker):
    torch.manual_seed(0)
    encoder = worker.build_encoder().eval()
    n = 3 * WORLD
    return {
        "y1": torch.randn(n, 16), "y2": torch.randn(n, 16),
        "x1": torch.randn(n, 3, 2, 4, 4), "x2": torch.randn(n, 3, 2, 4, 4),
        "simclr": worker.build_simclr().state_dict(),
        "encoder": encoder.state_dict(), "moco": worker.build_moco(encoder).state_dict(),
        "weights": [torch.randn(5, 3) for _ in range(WORLD)],  # rank 0 has 2 rows, rank 1 has 3
    }


@pytest.fixture(scope="module")
def ranks(worker, inputs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gloo")
    torch.save(inputs, folder / "inputs.pt")
    script = str(HERE / "_dist_worker.py")
    procs = [subprocess.Popen([sys.executable, script, str(r), str(WORLD), str(folder)]) for r in range(WORLD)]
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=180))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    assert codes == [0] * WORLD, "a gloo rank failed; its traceback is in the captured stderr"
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def full_simclr(worker, inputs):
    scheme = worker.build_simclr()
    scheme.load_state_dict(inputs["simclr"])
    y1, y2 = inputs["y1"].clone().requires_grad_(), inputs["y2"].clone().requires_grad_()
    loss = scheme(y1, y2).terms["simclr"]
    loss.backward()
    return {"loss": loss.detach(), "y1_grad": y1.grad, "y2_grad": y2.grad, "proj_grads": worker.grads(scheme)}


@pytest.fixture(scope="module")
def full_moco(worker, inputs):
    encoder = worker.build_encoder().eval()
    encoder.load_state_dict(inputs["encoder"])
    scheme = worker.build_moco(encoder)
    scheme.load_state_dict(inputs["moco"])
    x1, x2 = inputs["x1"], inputs["x2"]
    loss = scheme(encoder(x1), encoder(x2), x1, x2).terms["moco"]
    loss.backward()
    return {"loss": loss.detach(), "encoder_grads": worker.grads(encoder), "proj_grads": worker.grads(scheme),
            "queue": scheme.queue, "queue_ptr": scheme.queue_ptr}


def mean_over_ranks(ranks, scheme, key):
    return [torch.stack(parts).mean(0) for parts in zip(*[r[scheme][key] for r in ranks])]


def test_simclr_loss_two_ranks_equals_full_batch(ranks, full_simclr):
    mean_loss = torch.stack([r["simclr"]["loss"] for r in ranks]).mean()
    torch.testing.assert_close(mean_loss, full_simclr["loss"], rtol=1e-5, atol=1e-6)


def test_simclr_feature_gradients_two_ranks_equal_full_batch(ranks, full_simclr):
    for key in ("y1_grad", "y2_grad"):  # DDP averages over ranks: each rank's shard grad / W
        sharded = torch.cat([r["simclr"][key] for r in ranks]) / WORLD
        torch.testing.assert_close(sharded, full_simclr[key], rtol=1e-4, atol=1e-6)


def test_simclr_projector_gradients_averaged_equal_full_batch(ranks, full_simclr):
    for got, want in zip(mean_over_ranks(ranks, "simclr", "proj_grads"), full_simclr["proj_grads"]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_moco_loss_and_gradients_two_ranks_equal_full_batch(ranks, full_moco):
    mean_loss = torch.stack([r["moco"]["loss"] for r in ranks]).mean()
    torch.testing.assert_close(mean_loss, full_moco["loss"], rtol=1e-5, atol=1e-6)
    for key in ("encoder_grads", "proj_grads"):
        for got, want in zip(mean_over_ranks(ranks, "moco", key), full_moco[key]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_moco_queue_after_step_equals_full_batch(ranks, full_moco):
    for r in ranks:
        torch.testing.assert_close(r["moco"]["queue"], full_moco["queue"], rtol=1e-5, atol=1e-6)
        assert r["moco"]["queue_ptr"].item() == full_moco["queue_ptr"].item()


def test_gather_handles_uneven_batches_in_rank_order(ranks):
    expected = torch.cat([torch.arange((r + 2) * 3, dtype=torch.float32).reshape(r + 2, 3) + 100 * r for r in range(WORLD)])
    for r in ranks:
        assert torch.equal(r["gathers"]["uneven_gathered"], expected)
        assert torch.equal(r["gathers"]["uneven_no_grad"], expected)


def test_gather_with_grad_sums_gradients_of_local_rows_over_ranks(ranks, inputs):
    total = sum(inputs["weights"])  # d(Σ_r Σ G·W_r)/dG
    assert torch.equal(ranks[0]["gathers"]["uneven_grad"], total[:2])
    assert torch.equal(ranks[1]["gathers"]["uneven_grad"], total[2:])


def test_batch_shuffle_permutes_the_global_batch(ranks, inputs):
    shuffled = ranks[0]["gathers"]["shuffled_all"]
    assert torch.equal(shuffled, ranks[1]["gathers"]["shuffled_all"])
    flat = shuffled.flatten(1)
    originals = inputs["x1"].flatten(1)
    matches = [int((flat[i] == originals).all(dim=1).nonzero()) for i in range(len(flat))]
    assert sorted(matches) == list(range(len(flat))) and matches != list(range(len(flat)))


def test_batch_unshuffle_restores_each_ranks_order(ranks, inputs):
    for rank, r in enumerate(ranks):
        x = inputs["x1"][rank * 3 : rank * 3 + 3]
        torch.testing.assert_close(r["gathers"]["restored"], x * 2 + 1)
        torch.testing.assert_close(r["gathers"]["restored_rand"], x - 1)
