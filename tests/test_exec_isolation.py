"""Fault isolation on real models: invalid requests fail alone, and a task whose extension
raises or returns NaN is quarantined with a reason while the other tasks keep their outputs
and their latency.

Latency is compared on one PhysicalFM in one process, batch against batch, with the same
healthy rows each time: batches *with* the broken task's rows and invalid requests mixed in
alternate (ABBA) with batches *without* them, so the machine's drift (about 10% on this 2-core
VM) hits both sides alike, and each side's fastest batch is compared: other processes on the
host only ever add time, so the fastest is the batch's own cost (the medians, printed, move
with the host's load). The bound is 25%: the healthy rows run the same forward either way, so
the only extra cost is validating and refusing a few requests, well under 1 ms against batches
of about 15-25 ms; 25% leaves room for timing noise of small CPU forwards and still catches a
slow exception path. That rows which fail validation or belong to a quarantined task never
reach the backbone is checked by counting the rows of each backbone forward, not by timing.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from conftest import make_cfg  # noqa: E402
from fmplex_exec.backbones import load_backbone, make_inputs  # noqa: E402
from fmplex_exec.executors import build_fm, local_executor  # noqa: E402
from fmplex_exec.runtime import Runtime  # noqa: E402
from fmplex_exec.vfm import ExecRequest, PhysicalFM  # noqa: E402
from fmplex_sim.specs import ExtensionSpec as E  # noqa: E402
from fmplex_sim.specs import TaskSpec  # noqa: E402
from fmplex_sim.workload import from_arrays  # noqa: E402

HEALTHY = ("a", "b", "c")
ROUNDS = 15  # pairs of batches timed


def _tasks() -> list[TaskSpec]:
    ext = (E("lora", rank=8), E("head", outputs=3))
    return [TaskSpec(n, "minilm-l6", ext) for n in (*HEALTHY, "broken")]


def _break(fm: PhysicalFM, task: str, failure: str) -> None:
    head = fm.head(task)

    def broken(x):
        if failure == "raise":
            raise RuntimeError("head exploded")
        return torch.full((x.shape[0], 3), float("nan"))

    head.forward = broken


@pytest.fixture(scope="module")
def fm_and_rows():
    bb = load_backbone("minilm-l6", seed=0)
    fm = PhysicalFM(bb)
    for t in _tasks():
        fm.add_task(t, seed=7)
    gen = torch.Generator().manual_seed(3)
    healthy = [ExecRequest(t, 24, make_inputs(bb, [24], gen)) for t in HEALTHY for _ in range(2)][:5]
    return fm, bb, healthy


def _timed(fm, reqs) -> tuple[float, list]:
    t0 = time.perf_counter()
    res = fm.run_batch(reqs)
    return time.perf_counter() - t0, res


@pytest.mark.parametrize("failure", ["raise", "nan"])
def test_broken_task_is_quarantined_and_others_keep_outputs_and_latency(fm_and_rows, failure):
    fm, bb, healthy = fm_and_rows
    gen = torch.Generator().manual_seed(4)
    ids = make_inputs(bb, [12], gen)
    invalid = [
        ExecRequest("nope", 12, ids),  # unknown task
        ExecRequest("a", bb.spec.max_positions + 5),  # too long
        ExecRequest("b", 12, {"input_ids": ids["input_ids"].float()}),  # wrong dtype
    ]
    broken_rows = [ExecRequest("broken", 24, make_inputs(bb, [24], gen)) for _ in range(2)]
    clean = [r.output for r in fm.run_batch(healthy)]
    for _ in range(3):  # warm-up
        fm.run_batch(healthy)
    fm.update_task(_tasks()[3], seed=8)  # a fresh, healthy version to break
    _break(fm, "broken", failure)

    mixed = broken_rows[:1] + healthy[:2] + invalid + healthy[2:] + broken_rows[1:]
    _, first = _timed(fm, mixed)  # the broken head fails here: quarantine
    assert "broken" in fm.quarantined
    reason = fm.quarantined["broken"]
    assert ("head exploded" if failure == "raise" else "non-finite") in reason
    by_req = dict(zip(map(id, mixed), first))
    for r in broken_rows:
        assert not by_req[id(r)].ok and "quarantined" in by_req[id(r)].error
    for r in invalid:
        assert not by_req[id(r)].ok and by_req[id(r)].error
    for r, want in zip(healthy, clean):
        got = by_req[id(r)]
        assert got.ok and torch.allclose(got.output, want, rtol=1e-4, atol=1e-5)

    # The healthy rows alone reach the backbone: counted, not timed.
    seen: list[int] = []
    hook = bb.model.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(next(v.shape[0] for v in (*args, *kwargs.values())
                                                  if torch.is_tensor(v))), with_kwargs=True)
    try:
        fm.run_batch(mixed)
    finally:
        hook.remove()
    assert seen == [len(healthy)], seen

    with_faults, without = [], []
    for i in range(ROUNDS):
        # ABBA order: a drift of the host within a pair hits both sides alike
        for faulty in ((True, False) if i % 2 == 0 else (False, True)):
            if faulty:
                dt, res = _timed(fm, mixed)
                with_faults.append(dt)
                assert [x.ok for x in res] == [any(r is h for h in healthy) for r in mixed]
            else:
                without.append(_timed(fm, healthy)[0])
    # Other processes only ever add time: each side's fastest batch is its own cost, and the
    # median is printed for the record.
    best_with, best_without = min(with_faults), min(without)
    print(f"batch ms with the broken task and invalid requests: fastest {best_with * 1e3:.2f}, median "
          f"{statistics.median(with_faults) * 1e3:.2f}; without: fastest {best_without * 1e3:.2f}, median "
          f"{statistics.median(without) * 1e3:.2f} (fastest ratio {best_with / best_without:.3f})")
    assert best_with <= 1.25 * best_without, (best_with, best_without)


def test_replay_keeps_serving_the_others_with_a_broken_task_and_bad_requests():
    """The same in the wall-clock runtime: the broken task's requests and the invalid ones
    are rejected with their reason; every other request completes."""
    raw = {"seed": 1, "duration_s": 2, "drain_s": 30, "cluster": {"device": "CPU", "gpus": 1},
           "latency_model": "roofline", "system": "fmplex",
           "tasks": [{"name": t.name, "backbone": "minilm-l6", "slo_ms": 500, "input_len": 16,
                      "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 3}]}
                     for t in _tasks()]}
    cfg = make_cfg(raw)
    n = 40
    arrival = np.linspace(0.0, 1.5, n)
    task = np.arange(n, dtype=np.int32) % 4
    length = np.full(n, 16, dtype=np.int32)
    length[[0, 5]] = 600  # longer than MiniLM's 512 positions: invalid, fail alone
    wl = from_arrays(tuple(t.name for t in cfg.tasks), arrival, task, length, np.zeros(n, dtype=np.int32))

    def factory(plan, tasks, opts):
        fm = build_fm(plan.backbone, [tasks[t] for t in plan.tasks], opts.device, opts.dtype, opts.seed)
        _break(fm, "broken", "raise")
        return local_executor(fm, opts.device)

    rec, s = Runtime(cfg, wl, factory).run()
    reason = np.asarray(rec.reason, dtype=object)
    done = np.isfinite(rec.finish_s)
    broken = rec.task == 3
    assert all("quarantined" in r and "head exploded" in r for r in reason[broken])
    assert all("input length 600" in r for r in reason[[0, 5]])
    others = ~broken & (length == 16)
    assert done[others].all()
    assert s["requests"]["completed"] == int(others.sum())
