"""Load a script of ``bench/`` as a module (the benchmarks are scripts, not a package)."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(autouse=True)
def keep_torch_threads(monkeypatch):
    """A benchmark's ``main`` sets torch's thread count for its own process; called in-process
    from a test it would change the numerics of every later test (even setting the same count
    re-initialises the thread pool), so it is a no-op here."""
    import torch

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)


def load_bench(name: str):
    """Yield ``bench/<name>.py`` run as module ``name``, registered while it is used (dataclasses
    look their module up while the file runs), removed afterwards."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def ls():
    """``bench/learning_signal.py``."""
    yield from load_bench("learning_signal")


@pytest.fixture(scope="module")
def diag():
    """``bench/stor_diagnosis.py``."""
    yield from load_bench("stor_diagnosis")


@pytest.fixture(scope="module")
def probes():
    """``bench/stor_probes.py``."""
    yield from load_bench("stor_probes")


@pytest.fixture(scope="module")
def frames():
    """``bench/synth_frames.py``."""
    yield from load_bench("synth_frames")
