"""Placement policies: capacity, sharing, replication, online add/remove, and the invariant that
every task is either hosted or reported unplaced (never both, never neither)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fmplex_sim.catalog import get_device
from fmplex_sim.cluster import ClusterCost
from fmplex_sim.latency.roofline import RooflineModel
from fmplex_sim.policies.placement import Placement, make_placement, replica_gib
from fmplex_sim.policies.placement.colocate import ColocatePlacement
from fmplex_sim.policies.placement.fmplex import FmplexPlacement
from fmplex_sim.policies.placement.spatial import SpatialPlacement
from fmplex_sim.specs import ArrivalSpec, ExtensionSpec, TaskSpec


class FakeCost:
    """A PlacementCost with hand-picked numbers (GiB); utilization = rate * per_request_s / share."""

    def __init__(
        self,
        gpus: int = 2,
        gpu_memory_gib: float = 10.0,
        process_gib: float = 0.5,
        backbones: dict[str, float] | None = None,
        ext: dict[str, float] | None = None,
        act_gib: float = 0.5,
        per_request_s: float = 0.01,
    ) -> None:
        self.gpus = gpus
        self.gpu_memory_gib = gpu_memory_gib
        self.process_gib = process_gib
        self.backbones = backbones if backbones is not None else {"A": 2.0, "B": 3.0, "C": 1.0}
        self.ext = ext or {}  # backbone -> extension GiB of each of its tasks (default 0.1)
        self.act_gib = act_gib
        self.per_request_s = per_request_s

    def backbone_gib(self, backbone: str) -> float:
        return self.backbones[backbone]

    def extension_gib(self, task: TaskSpec) -> float:
        return self.ext.get(task.backbone, 0.1)

    def activation_gib(self, backbone: str, seq_len: int) -> float:
        return self.act_gib

    def task_util(self, task: TaskSpec, share: float) -> float:
        return task.arrival.rate_rps * self.per_request_s / share


def T(name: str, backbone: str = "A", rate: float = 1.0, input_len: int = 128) -> TaskSpec:
    return TaskSpec(name=name, backbone=backbone, arrival=ArrivalSpec("poisson", rate), input_len=input_len)


def hosted(p: Placement) -> set[str]:
    return {t for i in p.instances for t in i.tasks}


def unplaced(p: Placement) -> dict[str, str]:
    return dict(p.unplaced)


def slices_of(inst, slices_per_gpu: int) -> range:
    first = int(inst.process.split("/s")[1])
    return range(first, first + round(inst.share * slices_per_gpu))


def check_invariants(p: Placement, names: set[str], cost, slices_per_gpu: int = 7) -> None:
    """Each task hosted xor unplaced; ids unique; no device over memory; policy-specific shape."""
    on = hosted(p)
    off = [t for t, _ in p.unplaced]
    assert len(off) == len(set(off)), f"a task is reported unplaced twice: {off}"
    assert on.isdisjoint(off), f"hosted and unplaced: {on & set(off)}"
    assert on | set(off) == names, f"lost: {names - on - set(off)}, invented: {(on | set(off)) - names}"
    assert all(reason for _, reason in p.unplaced)
    ids = [i.id for i in p.instances]
    assert len(ids) == len(set(ids))
    assert all(i.tasks for i in p.instances), "an instance without tasks"
    for g, m in enumerate(p.gpu_memory_gib(cost.gpus)):
        assert m <= cost.gpu_memory_gib + 1e-6, f"device {g} over memory: {m}"
    if p.policy == "spatial":
        for g in range(cost.gpus):
            taken: list[int] = []
            for inst in p.instances:
                if inst.gpu == g:
                    taken += list(slices_of(inst, slices_per_gpu))
            assert len(taken) == len(set(taken)), f"overlapping slices on device {g}: {sorted(taken)}"
            assert all(0 <= s < slices_per_gpu for s in taken)
    if p.policy == "fmplex":
        pairs = [(i.backbone, i.gpu) for i in p.instances]
        assert len(pairs) == len(set(pairs)), "two copies of one backbone on one device"
    if p.policy in ("spatial", "colocate"):
        assert all(len(i.tasks) == 1 for i in p.instances)


# -- spatial ----------------------------------------------------------------------------------
def test_spatial_gives_each_task_one_slice_when_its_replica_fits_one():
    cost = FakeCost(gpus=1, gpu_memory_gib=8.0)  # 4 slices of 2 GiB; replica of A = 0.5+2+0.1+0.5 = 3.1
    cost.backbones["A"] = 0.8  # replica = 1.9 GiB: one slice
    pol = SpatialPlacement(slices_per_gpu=4)
    p = pol.plan([T("a"), T("b"), T("c")], cost)
    assert [(i.id, i.share) for i in p.instances] == [
        ("g0/s0/a", 0.25), ("g0/s1/b", 0.25), ("g0/s2/c", 0.25)
    ]
    assert p.time_shared is False
    assert {i.process for i in p.instances} == {"g0/s0", "g0/s1", "g0/s2"}
    assert all(i.memory_gib == pytest.approx(1.9) for i in p.instances)
    assert p.instances[0].util == pytest.approx(0.01 / 0.25)  # load on a quarter device
    check_invariants(p, {"a", "b", "c"}, cost, 4)


def test_spatial_takes_contiguous_slices_only_when_memory_needs_them():
    cost = FakeCost(gpus=1, gpu_memory_gib=8.0, backbones={"A": 0.8, "B": 3.0})
    pol = SpatialPlacement(slices_per_gpu=4)
    # B's replica is 0.5+3+0.1+0.5 = 4.1 GiB: three 2-GiB slices. A's (1.9) takes one, even when hot.
    p = pol.plan([T("small", "A", rate=500), T("big", "B")], cost)
    got = {i.tasks[0]: (list(slices_of(i, 4)), i.share) for i in p.instances}
    assert got == {"small": ([0], 0.25), "big": ([1, 2, 3], 0.75)}
    assert pol.slices_needed(T("big", "B"), cost) == 3
    check_invariants(p, {"small", "big"}, cost, 4)


def test_spatial_reports_unplaced_when_no_device_has_enough_contiguous_free_slices():
    cost = FakeCost(gpus=1, gpu_memory_gib=8.0, backbones={"A": 0.8, "B": 1.5})
    pol = SpatialPlacement(slices_per_gpu=4)
    # a:s0, b:s1, c:s2, d:s3 -> full.
    p = pol.plan([T(n) for n in "abcd"], cost)
    p = pol.add(p, T("e"), cost)
    assert unplaced(p) == {"e": "no device has 1 free slice(s) of 4"}
    # Free s0 and s2: two free slices but not contiguous, so a 2-slice replica (B: 2.6 GiB) fits nowhere.
    p = pol.remove(p, T("a"), cost)
    p = pol.remove(p, T("c"), cost)
    assert pol.slices_needed(T("x", "B"), cost) == 2
    p = pol.add(p, T("x", "B"), cost)
    assert "x" in unplaced(p) and "x" not in hosted(p)
    # A one-slice task reuses the freed slice s0.
    p = pol.add(p, T("f"), cost)
    assert p.instance("g0/s0/f").share == 0.25
    check_invariants(p, {"b", "d", "e", "x", "f"}, cost, 4)


def test_spatial_replica_bigger_than_a_device_is_unplaced_with_reason():
    cost = FakeCost(gpus=2, gpu_memory_gib=8.0, backbones={"A": 0.8, "H": 9.0})
    p = SpatialPlacement(slices_per_gpu=4).plan([T("huge", "H"), T("ok")], cost)
    assert hosted(p) == {"ok"}
    assert "huge" in unplaced(p) and "more than one device" in unplaced(p)["huge"]


def test_spatial_fills_devices_first_fit_and_never_overlaps():
    cost = FakeCost(gpus=2, gpu_memory_gib=8.0, backbones={"A": 0.8, "B": 1.5})
    pol = SpatialPlacement(slices_per_gpu=4)
    tasks = [T("b1", "B"), T("a1"), T("b2", "B"), T("a2"), T("b3", "B")]
    p = pol.plan(tasks, cost)
    # g0: b1 s0-1, a1 s2, a2 s3; g1: b2 s0-1, b3 s2-3.
    assert sorted(i.id for i in p.instances) == [
        "g0/s0/b1", "g0/s2/a1", "g0/s3/a2", "g1/s0/b2", "g1/s2/b3"
    ]
    check_invariants(p, {t.name for t in tasks}, cost, 4)


def test_spatial_with_real_cluster_cost_sizes_slices_by_memory():
    dev = get_device("H100-80GB")
    cost = ClusterCost(dev, 1, RooflineModel(), max_batch=32)
    pol = make_placement("spatial", slices_per_gpu=7)
    small = TaskSpec("small", "bert-base", (ExtensionSpec("lora"),), input_len=128)
    # 3B decoder with 4096-token inputs: KV cache and scores of 32 rows far exceed one 11.4-GiB slice.
    large = TaskSpec("large", "llama-3.2-3b", (ExtensionSpec("lora"),), input_len=4096)
    p = pol.plan([small, large], cost)
    need = math.ceil(replica_gib(large, cost) / (80.0 / 7))
    assert 1 < need <= 7
    assert p.instance("g0/s0/small").share == pytest.approx(1 / 7)
    big = [i for i in p.instances if i.tasks == ("large",)]
    assert len(big) == 1 and big[0].share == pytest.approx(need / 7)
    assert list(slices_of(big[0], 7)) == list(range(1, 1 + need))
    check_invariants(p, {"small", "large"}, cost)


# -- colocate ---------------------------------------------------------------------------------
def test_colocate_packs_replicas_by_memory_and_reports_unplaced_when_memory_runs_out():
    cost = FakeCost(gpus=2, gpu_memory_gib=10.0)  # replica of B = 0.5+3+0.1+0.5 = 4.1: two per device
    pol = ColocatePlacement()
    tasks = [T(f"t{k}", "B") for k in range(5)]
    p = pol.plan(tasks, cost)
    assert [i.gpu for i in p.instances] == [0, 1, 0, 1]  # least-loaded device, in turn
    assert p.gpu_memory_gib(2) == pytest.approx([8.2, 8.2])
    assert unplaced(p) == {"t4": "no device has 4.10 GiB free for a replica"}
    # every replica is its own process owning the whole device (time-shared)
    assert all(i.share == 1.0 and i.process == i.id for i in p.instances)
    assert p.time_shared is True
    check_invariants(p, {t.name for t in tasks}, cost)


def test_colocate_places_on_least_loaded_device_and_largest_replicas_first():
    cost = FakeCost(gpus=2, gpu_memory_gib=10.0)
    pol = ColocatePlacement()
    # hot (util 0.5) lands on g0; then the two cool ones go to g1 (g1 stays less loaded).
    p = pol.plan([T("hot", rate=50), T("cool1", rate=5), T("cool2", rate=5)], cost)
    assert {i.tasks[0]: i.gpu for i in p.instances} == {"hot": 0, "cool1": 1, "cool2": 1}
    assert [i.tasks[0] for i in p.instances] == ["hot", "cool1", "cool2"]  # task order kept
    # Largest replica first: with room for only one B replica, B wins over the earlier A.
    tight = FakeCost(gpus=1, gpu_memory_gib=5.0)  # A replica 3.1, B replica 4.1, together 7.2
    p = pol.plan([T("a", "A"), T("b", "B")], tight)
    assert hosted(p) == {"b"} and set(unplaced(p)) == {"a"}


def test_colocate_remove_frees_the_replica_for_a_later_add():
    cost = FakeCost(gpus=1, gpu_memory_gib=9.0)
    pol = ColocatePlacement()
    p = pol.plan([T("x", "B"), T("y", "B")], cost)
    p = pol.add(p, T("z", "B"), cost)
    assert "z" in unplaced(p)
    p = pol.remove(p, T("x", "B"), cost)
    assert hosted(p) == {"y"} and p.memory_gib() == pytest.approx(4.1)
    p = pol.add(p, T("w", "B"), cost)
    assert hosted(p) == {"y", "w"}


# -- fmplex -----------------------------------------------------------------------------------
def test_fmplex_hosts_many_vfms_on_one_copy_per_backbone_and_device():
    cost = FakeCost(gpus=2, gpu_memory_gib=10.0)
    pol = FmplexPlacement(target_util=0.7)
    tasks = [T(f"a{k}", "A") for k in range(6)] + [T(f"c{k}", "C") for k in range(3)]
    p = pol.plan(tasks, cost)
    assert sorted((i.backbone, len(i.tasks)) for i in p.instances) == [("A", 6), ("C", 3)]
    # Busiest backbone first on device 0, then C on the least-loaded device 1.
    a = next(i for i in p.instances if i.backbone == "A")
    c = next(i for i in p.instances if i.backbone == "C")
    assert (a.gpu, c.gpu) == (0, 1)
    # one process per device; weights + activation + 6 extensions + that process
    assert a.memory_gib == pytest.approx(2.0 + 0.5 + 6 * 0.1 + 0.5)
    assert c.memory_gib == pytest.approx(1.0 + 0.5 + 3 * 0.1 + 0.5)
    assert a.process == "g0" and a.util == pytest.approx(0.06)
    assert p.routes()["a3"] == ["g0/A"]
    check_invariants(p, {t.name for t in tasks}, cost)


def test_fmplex_uses_far_less_memory_than_colocate_with_real_costs():
    cost = ClusterCost(get_device("H100-80GB"), 2, RooflineModel(), max_batch=32)
    tasks = [
        TaskSpec(f"t{k}", "bert-base", (ExtensionSpec("lora", rank=8), ExtensionSpec("head", outputs=3)),
                 arrival=ArrivalSpec("poisson", 20.0))
        for k in range(8)
    ]
    fm = make_placement("fmplex", spread_idle=False).plan(tasks, cost)
    co = make_placement("colocate").plan(tasks, cost)
    assert len(fm.instances) == 1 and len(co.instances) == 8
    assert not fm.unplaced and not co.unplaced
    assert fm.memory_gib() < co.memory_gib() / 4
    # colocate pays a backbone copy and a process per task; fmplex one of each
    assert co.memory_gib() - fm.memory_gib() == pytest.approx(
        7 * (cost.backbone_gib("bert-base") + cost.activation_gib("bert-base", 128) + cost.process_gib)
    )


def test_fmplex_adds_a_copy_on_another_device_when_utilization_passes_target():
    cost = FakeCost(gpus=3, gpu_memory_gib=10.0)
    pol = FmplexPlacement(target_util=0.7, spread_idle=False)
    cool = pol.plan([T("x", rate=30), T("y", rate=30)], cost)  # demand 0.6 <= 0.7: one copy
    assert [i.id for i in cool.instances] == ["g0/A"]
    hot = pol.plan([T("x", rate=50), T("y", rate=50)], cost)  # demand 1.0 > 0.7: two copies
    assert sorted(i.id for i in hot.instances) == ["g0/A", "g1/A"]
    assert sorted(i.tasks for i in hot.instances) == [("x",), ("y",)]
    assert all(i.util == pytest.approx(0.5) for i in hot.instances)
    check_invariants(hot, {"x", "y"}, cost)


def test_fmplex_spreads_copies_onto_devices_that_would_stay_idle():
    cost = FakeCost(gpus=3, gpu_memory_gib=10.0)
    pol = FmplexPlacement(target_util=0.7)  # spread_idle is the default
    # Demand 0.6 needs one copy; two spare devices get copies too, one per task at most.
    p = pol.plan([T("x", rate=30), T("y", rate=30)], cost)
    assert sorted(i.id for i in p.instances) == ["g0/A", "g1/A"]
    assert sorted(i.tasks for i in p.instances) == [("x",), ("y",)]
    # The busiest backbone per copy gets the spare device.
    p = pol.plan([T("a1", "A", rate=40), T("a2", "A", rate=40), T("b1", "B", rate=5), T("b2", "B", rate=5)], cost)
    per_backbone = {bb: sum(1 for i in p.instances if i.backbone == bb) for bb in ("A", "B")}
    assert per_backbone == {"A": 2, "B": 1}
    check_invariants(p, {"a1", "a2", "b1", "b2"}, cost)
    # A single task never gets more than one copy from spreading.
    assert len(pol.plan([T("solo", rate=10)], cost).instances) == 1


def test_fmplex_spreads_a_hot_task_over_several_copies():
    cost = FakeCost(gpus=4, gpu_memory_gib=10.0)
    pol = FmplexPlacement(target_util=0.7)
    p = pol.plan([T("hot", rate=150), T("cool", rate=1)], cost)  # hot util 1.5 -> 3 copies
    routes = p.routes()
    assert len(routes["hot"]) == 3 and len({p.instance(i).gpu for i in routes["hot"]}) == 3
    assert len(routes["cool"]) == 1
    for i in routes["hot"]:
        assert p.instance(i).util >= 0.5 - 1e-9  # each copy carries a third of the hot task
    # its extension is loaded on every copy it is routed to
    assert sum(p.instance(i).memory_gib for i in routes["hot"]) == pytest.approx(
        3 * (2.0 + 0.5 + 0.1 + 0.5) + 0.1
    )
    check_invariants(p, {"hot", "cool"}, cost)


def test_fmplex_reports_every_task_of_a_backbone_that_fits_nowhere():
    cost = FakeCost(gpus=2, gpu_memory_gib=10.0, backbones={"A": 2.0, "HUGE": 12.0})
    p = FmplexPlacement().plan([T("h1", "HUGE"), T("a1"), T("h2", "HUGE")], cost)
    assert hosted(p) == {"a1"}
    assert unplaced(p) == {
        "h1": "no device has memory for backbone HUGE",
        "h2": "no device has memory for backbone HUGE",
    }
    assert [t for t, _ in p.unplaced] == ["h1", "h2"]


def test_fmplex_reserves_extension_memory_for_the_busier_backbone():
    # One device of 10 GiB. A (busier) needs 4 + 0.5 act + 2 x 1.0 extensions + 0.5 process = 7;
    # B needs 3 + 0.5 more. The busier backbone keeps its tasks; B is reported unplaced.
    cost = FakeCost(gpus=1, gpu_memory_gib=10.0, backbones={"A": 4.0, "B": 3.0},
                    ext={"A": 1.0, "B": 0.0})
    p = FmplexPlacement().plan([T("b", "B", rate=1), T("a1", "A", rate=5), T("a2", "A", rate=5)], cost)
    assert hosted(p) == {"a1", "a2"}
    assert unplaced(p) == {"b": "no device has memory for backbone B"}
    assert p.memory_gib() == pytest.approx(7.0)


def test_fmplex_add_joins_an_existing_copy_or_loads_a_new_backbone():
    cost = FakeCost(gpus=2, gpu_memory_gib=6.0)
    pol = FmplexPlacement()
    p = pol.plan([T("a1", rate=10)], cost)
    assert [i.id for i in p.instances] == ["g0/A"]
    assert p.instance("g0/A").memory_gib == pytest.approx(0.5 + 2.0 + 0.5 + 0.1)
    # Joins the copy: only its extension and its load are added, no new weights.
    p = pol.add(p, T("a2", rate=20), cost)
    inst = p.instance("g0/A")
    assert inst.tasks == ("a1", "a2")
    assert inst.memory_gib == pytest.approx(3.2) and inst.util == pytest.approx(0.3)
    assert len(p.instances) == 1
    # A new backbone is loaded on the least-loaded device, with that device's serving process.
    p = pol.add(p, T("c1", "C", rate=1), cost)
    assert p.routes()["c1"] == ["g1/C"]
    assert p.instance("g1/C").memory_gib == pytest.approx(0.5 + 1.0 + 0.5 + 0.1)
    check_invariants(p, {"a1", "a2", "c1"}, cost)


def test_fmplex_add_loads_a_second_copy_when_the_first_device_is_full():
    cost = FakeCost(gpus=2, gpu_memory_gib=6.0, backbones={"A": 2.0, "B": 0.5}, ext={"A": 1.4})
    pol = FmplexPlacement()
    p = pol.plan([T("a1"), T("b1", "B")], cost)
    assert p.gpu_memory_gib(2) == pytest.approx([0.5 + 2.0 + 0.5 + 1.4, 0.5 + 0.5 + 0.5 + 0.1])
    p = pol.add(p, T("a2"), cost)  # g0: 4.4 + 1.4 = 5.8 fits: joins
    assert p.instance("g0/A").tasks == ("a1", "a2")
    # g0 is now full for another 1.4: a second copy of A is loaded on g1, whose process exists.
    p = pol.add(p, T("a3"), cost)
    assert p.routes()["a3"] == ["g1/A"]
    assert p.instance("g1/A").memory_gib == pytest.approx(2.0 + 0.5 + 1.4)
    assert p.gpu_memory_gib(2)[1] == pytest.approx(1.6 + 3.9)
    # Now neither copy has room and no device can take a third: unplaced, with the reason.
    p = pol.add(p, T("a4"), cost)
    assert hosted(p) == {"a1", "a2", "a3", "b1"}
    assert "a4" in unplaced(p) and "A" in unplaced(p)["a4"]
    check_invariants(p, {"a1", "a2", "a3", "a4", "b1"}, cost)


def test_fmplex_remove_frees_extension_memory_and_drops_empty_instances():
    cost = FakeCost(gpus=2, gpu_memory_gib=10.0)
    pol = FmplexPlacement()
    tasks = [T("a1", rate=20), T("a2", rate=10), T("c1", "C", rate=1)]
    p = pol.plan(tasks, cost)
    a = p.instance("g0/A")
    assert a.tasks == ("a1", "a2") and a.util == pytest.approx(0.3)
    p = pol.remove(p, tasks[0], cost)
    a2 = p.instance("g0/A")
    assert a2.tasks == ("a2",)
    assert a2.memory_gib == pytest.approx(a.memory_gib - 0.1)
    assert a2.util == pytest.approx(0.1)  # its load is gone too
    p = pol.remove(p, tasks[1], cost)
    assert [i.id for i in p.instances] == ["g1/C"]
    assert hosted(p) == {"c1"} and not p.unplaced


def test_fmplex_remove_keeps_the_devices_process_memory_with_a_remaining_instance():
    cost = FakeCost(gpus=1, gpu_memory_gib=10.0)
    pol = FmplexPlacement()
    p = pol.plan([T("a1", "A", rate=10), T("c1", "C", rate=1)], cost)
    before = p.gpu_memory_gib(1)[0]
    assert before == pytest.approx(0.5 + (2.0 + 0.5 + 0.1) + (1.0 + 0.5 + 0.1))
    p = pol.remove(p, T("a1", "A", rate=10), cost)  # the first instance on g0 goes away
    assert [i.id for i in p.instances] == ["g0/C"]
    assert p.gpu_memory_gib(1)[0] == pytest.approx(0.5 + 1.0 + 0.5 + 0.1)
    p = pol.add(p, T("a2", "A", rate=1), cost)  # a new copy on g0 does not pay the process again
    assert p.gpu_memory_gib(1)[0] == pytest.approx(0.5 + (1.0 + 0.5 + 0.1) + (2.0 + 0.5 + 0.1))


def test_fmplex_remove_of_a_spread_task_frees_every_copy():
    cost = FakeCost(gpus=3, gpu_memory_gib=10.0)
    pol = FmplexPlacement()
    hot, cool = T("hot", rate=150), T("cool", rate=1)
    p = pol.plan([hot, cool], cost)
    assert len(p.routes()["hot"]) == 3
    p = pol.remove(p, hot, cost)
    assert hosted(p) == {"cool"} and len(p.instances) == 1
    assert p.memory_gib() == pytest.approx(0.5 + 2.0 + 0.5 + 0.1)
    assert p.instances[0].util == pytest.approx(0.01)


# -- every policy: hosted xor unplaced, on random task sets -----------------------------------
def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    cost = FakeCost(
        gpus=int(rng.integers(1, 4)),
        gpu_memory_gib=float(rng.choice([6.0, 8.0, 12.0])),
        backbones={"A": 2.0, "B": 3.5, "C": 1.0, "X": 7.0},
        ext={"A": 0.3, "B": 0.6, "C": 0.05, "X": 0.2},
        per_request_s=0.01,
    )
    n = int(rng.integers(1, 14))
    tasks = [
        T(f"t{k}", str(rng.choice(["A", "B", "C", "X"])), rate=float(rng.choice([0.5, 10.0, 60.0, 150.0])))
        for k in range(n)
    ]
    extra = [T(f"late{k}", str(rng.choice(["A", "B", "C"])), rate=float(rng.choice([1.0, 40.0])))
             for k in range(int(rng.integers(1, 6)))]
    return rng, cost, tasks, extra


@pytest.mark.parametrize("policy", ["spatial", "colocate", "fmplex"])
@pytest.mark.parametrize("seed", range(8))
def test_every_task_is_hosted_or_unplaced_never_both_never_neither(policy, seed):
    rng, cost, tasks, extra = _random_case(seed)
    pol = make_placement(policy, slices_per_gpu=4, target_util=0.7)
    p = pol.plan(tasks, cost)
    names = {t.name for t in tasks}
    check_invariants(p, names, cost, 4)
    # Online: deploy more tasks, retire some, in a random interleaving; the invariant holds after each.
    live = list(tasks)
    for t in extra:
        p = pol.add(p, t, cost)
        names.add(t.name)
        live.append(t)
        check_invariants(p, names, cost, 4)
        if len(live) > 1 and rng.random() < 0.6:
            gone = live.pop(int(rng.integers(0, len(live))))
            p = pol.remove(p, gone, cost)
            names.discard(gone.name)
            check_invariants(p, names, cost, 4)


@pytest.mark.parametrize("seed", range(6))
def test_fmplex_memory_accounting_matches_its_parts_through_add_and_remove(seed):
    rng, cost, tasks, extra = _random_case(seed)
    pol = FmplexPlacement(target_util=0.7)

    def expected(p):
        mem = [0.0] * cost.gpus
        for i in p.instances:
            mem[i.gpu] += cost.backbone_gib(i.backbone) + cost.act_gib + cost.ext[i.backbone] * len(i.tasks)
        for g in {i.gpu for i in p.instances}:
            mem[g] += cost.process_gib
        return mem

    p = pol.plan(tasks, cost)
    assert p.gpu_memory_gib(cost.gpus) == pytest.approx(expected(p))
    live = list(tasks)
    for t in extra:
        p = pol.add(p, t, cost)
        live.append(t)
        if rng.random() < 0.7:
            p = pol.remove(p, live.pop(int(rng.integers(0, len(live)))), cost)
        assert p.gpu_memory_gib(cost.gpus) == pytest.approx(expected(p))
