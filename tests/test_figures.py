"""The figure pipeline (experiments/figures/) and the results notebook, on tiny results folders.

Each test makes its own results with short simulations (a fraction of a simulated second), then
runs the figure scripts and the notebook on them: PNG and PDF written, headlines.json holding
each figure's keys, a missing input recorded as skipped with its reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_script

from fmplex_sim.cli import main as sim

ROOT = Path(__file__).resolve().parent.parent
FIGS = ROOT / "experiments" / "figures"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results root with a tiny fig1_load sweep (one backbone, two loads) and a tiny fig2_cdf
    compare (0.3 simulated seconds each), the layout make_figures.py writes."""
    root = tmp_path_factory.mktemp("figures")
    sweep = root / "fig1_sweep.yaml"
    sweep.write_text(
        f"base: {FIGS / 'fig1_load' / 'config.yaml'}\n"
        "grid:\n"
        "  tasks.0.backbone: [bert-base]\n"
        "  workload.total_rps: [500, 1500]\n"
        "  system: [spatial, colocate, fmplex]\n"
        "  duration_s: [0.3]\n"
    )
    assert sim(["sweep", str(sweep), "--out", str(root / "fig1_load"), "--workers", "1"]) == 0
    assert sim(["compare", str(FIGS / "fig2_cdf" / "config.yaml"), "--out", str(root / "fig2_cdf"),
                "--set", "duration_s=0.3", "--set", "workload.total_rps=1500"]) == 0
    return root


def _headlines(out: Path) -> dict:
    return json.loads((out / "headlines.json").read_text())


def test_fig1_and_fig2_scripts_draw_and_merge_their_headlines(results, tmp_path, capsys):
    out = tmp_path / "figs"
    assert load_script(FIGS / "fig1_load" / "plot.py").main(["--results", str(results / "fig1_load"), "--out", str(out)]) == 0
    assert load_script(FIGS / "fig2_cdf" / "plot.py").main(["--results", str(results / "fig2_cdf"), "--out", str(out)]) == 0
    for name in ("fig1_load", "fig2_cdf"):
        for ext in ("png", "pdf"):
            f = out / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    h = _headlines(out)
    assert set(h) == {"fig1_load", "fig2_cdf"}  # the second script kept the first one's entry
    f1 = h["fig1_load"]
    assert {"scenario", "per_family", "latency_reduction_vs_spatial", "latency_reduction_vs_colocate",
            "latency_reduction_vs_spatial_at"} <= set(f1)
    lang = f1["per_family"]["language"]
    assert lang["backbone"] == "bert-base" and lang["loads_rps"] == [500.0, 1500.0]
    assert set(lang["max_load_sustained_rps"]) == {"spatial", "colocate", "fmplex"}
    f2 = h["fig2_cdf"]
    assert {"load_rps", "systems", "latency_reduction_vs_spatial", "latency_reduction_vs_colocate",
            "p99_reduction_vs_spatial"} <= set(f2)
    assert set(f2["systems"]) == {"spatial", "colocate", "fmplex"}
    assert -1.0 < f2["latency_reduction_vs_spatial"] < 1.0


def test_missing_inputs_are_recorded_as_skipped(tmp_path, capsys):
    out = tmp_path / "figs"
    fig8 = load_script(FIGS / "fig8_validation" / "plot.py")
    assert fig8.main(["--validation", str(tmp_path / "nowhere"), "--out", str(out)]) == 0
    fig7 = load_script(FIGS / "fig7_traces" / "plot.py")
    assert fig7.main(["--skipped", "public traces not found", "--out", str(out)]) == 0
    h = _headlines(out)
    assert h["fig8_validation"]["skipped"] is True and "validation.json" in h["fig8_validation"]["reason"]
    assert h["fig7_traces"] == {"skipped": True, "reason": "public traces not found"}
    assert not list(out.glob("*.png"))


def test_make_figures_records_a_skip_without_running_anything(tmp_path, capsys):
    mf = load_script(FIGS / "make_figures.py")
    out = tmp_path / "figs"
    rc = mf.main(["--out", str(out), "--only", "fig7_traces,fig8_validation", "--traces", str(tmp_path / "no-traces"),
                  "--validation", str(tmp_path / "no-validation")])
    assert rc == 0
    h = _headlines(out)
    assert h["fig7_traces"]["skipped"] and "no-traces" in h["fig7_traces"]["reason"]
    assert h["fig8_validation"]["skipped"]
    timings = json.loads((out / "make_figures.json").read_text())
    assert set(timings["plots"]) == {"fig7_traces", "fig8_validation"} and timings["jobs"] == {}


def test_notebook_redraws_from_a_results_folder(results, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("FMPLEX_RESULTS", str(results))
    nb = nbformat.read(ROOT / "notebooks" / "explore_results.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()  # raises CellExecutionError if any cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # figure 1 and figure 2 redrawn
    text = "".join(o.get("text", "") for o in outputs)
    assert "MISSING" not in text and "no sweep" not in text and "no compare" not in text
    assert "fmplex: mean" in text  # the comparison table of the compare folder


def test_fig8_pools_the_measured_replays_of_every_round(tmp_path):
    fig8 = load_script(FIGS / "fig8_validation" / "plot.py")
    header = "request_id,task,arrival_s,start_s,finish_s,latency_ms,batch_id,instance,status,reason\n"

    def requests_csv(path: Path, latencies_ms) -> None:
        path.mkdir(parents=True)
        rows = [f"{i},a,{i}.000000,{i}.000000,{i + ms / 1000:.6f},{ms:.3f},{i},g0/a,completed,\n"
                for i, ms in enumerate(latencies_ms)]
        (path / "requests.csv").write_text(header + "".join(rows))

    requests_csv(tmp_path / "fmplex" / "real", [10.0, 20.0])
    requests_csv(tmp_path / "fmplex" / "real-2", [30.0, 40.0])
    requests_csv(tmp_path / "fmplex" / "sim", [25.0, 25.0])
    (tmp_path / "validation.json").write_text(json.dumps({"systems": {"fmplex": {"overall": {}}}}))
    _, lat = fig8.collect(tmp_path)
    real, sim = lat["fmplex"]
    assert sorted(real.round(3)) == [10.0, 20.0, 30.0, 40.0] and len(sim) == 2
