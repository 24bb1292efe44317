"""Shared fixtures: tiny configs and a hand-checkable latency model."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from fmplex_sim.config import parse_config
from fmplex_sim.latency.base import LatencyModel


class LinearLatency(LatencyModel):
    """Service time = fixed + per_row * rows, nothing else: timelines can be computed by hand."""

    kind = "linear-test"

    def __init__(
        self, fixed_s: float = 0.010, per_row_s: float = 0.001, load_s: float = 0.0, host_s: float = 0.0,
        dispatch_s: float = 0.0,
    ) -> None:
        self.fixed_s = fixed_s
        self.per_row_s = per_row_s
        self._load_s = load_s
        self._host_s = host_s  # part of every batch spent on the host (not holding the device)
        self._dispatch_s = dispatch_s  # arrival at an idle instance -> its pick

    @property
    def source(self) -> str:
        return "test"

    def backbone_s(self, bb, dev, rows, seq_len, share=1.0):
        return (self.fixed_s + self.per_row_s * rows) / share

    def decode_step_s(self, bb, dev, rows, ctx_len, share=1.0):
        return 0.0

    def adapters_s(self, bb, dev, rows, seq_len, n_adapters, rank, share=1.0):
        return 0.0

    def extension_s(self, ext, bb, dev, rows, seq_len, share=1.0):
        return 0.0

    def batch_overhead_s(self, dev, rows=1):
        return 0.0

    def host_s(self, bb, dev, groups, output_len=0):
        return self._host_s

    def dispatch_s(self, dev):
        return self._dispatch_s

    def load_s(self, nbytes, dev):
        return self._load_s

    def extension_load_s(self, nbytes, dev):
        return self._load_s


BASE = {
    "seed": 3,
    "duration_s": 10,
    "drain_s": 5,
    "cluster": {"device": "H100-80GB", "gpus": 1},
    "latency_model": "roofline",
    "system": "fmplex",
    "tasks": [
        {"name": "a", "backbone": "bert-base", "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 2}],
         "slo_ms": 100, "input_len": 128, "arrival": {"process": "poisson", "rate_rps": 50}},
        {"name": "b", "backbone": "bert-base", "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 3}],
         "slo_ms": 100, "input_len": 128, "arrival": {"process": "gamma", "rate_rps": 30, "cv": 2}},
    ],
}


@pytest.fixture
def base_raw() -> dict:
    """A fresh copy of a small valid raw config (two tasks on bert-base, one H100)."""
    return copy.deepcopy(BASE)


def make_cfg(raw: dict, **top):
    raw = copy.deepcopy(raw)
    raw.update(top)
    return parse_config(raw, "test.yaml")


@pytest.fixture
def linear():
    return LinearLatency


PUBLIC_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


@pytest.fixture(scope="session")
def traces() -> Path:
    """The public traces folder (../shared/traces). Missing: skip locally, fail loudly in CI."""
    if not PUBLIC_TRACES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the public traces folder {PUBLIC_TRACES} is missing; CI must provide ../shared/traces")
        pytest.skip(f"public traces not found at {PUBLIC_TRACES} (see traces/README.md for where to get them)")
    return PUBLIC_TRACES


def load_script(path: Path, name: str | None = None):
    """Import a script of experiments/ (not a package) as a module; registered in sys.modules,
    where dataclasses look their module up."""
    name = name or f"script_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skip them, with the reason, where none is present."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marker gpu); none is present here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
