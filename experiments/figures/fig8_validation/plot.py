"""Figure 8: simulator against real execution.

Reads a validation results folder (``fmplex-exec validate``; ``--validation DIR``, default
``results/validation/minilm_medium``): ``validation.json`` and, per system,
``<system>/real/requests.csv`` and, from later rounds, ``<system>/real-<k>/requests.csv``
(measured by the harness, pooled as validate pools them) and ``<system>/sim/requests.csv``
(simulated with the profile). Panels: latency CDFs, measured (solid) against simulated
(dashed), per system; the relative error of mean, p50 and p99 per system with the validation
targets. When no such folder exists the figure is skipped and the reason recorded in
``headlines.json["fig8_validation"]``. Nothing here runs torch or an engine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

FIGURE = "fig8_validation"
DEFAULT = "results/validation/minilm_medium"


def collect(folder: Path) -> tuple[dict, dict]:
    """(validation.json, {system: (real latencies ms, simulated latencies ms)})."""
    report = common.read_json(folder / "validation.json")
    lat = {}
    for name in report["systems"]:
        real = [folder / name / "real" / "requests.csv", *sorted((folder / name).glob("real-*/requests.csv"))]
        sim = folder / name / "sim" / "requests.csv"
        if real[0].is_file() and sim.is_file():
            pooled = np.concatenate([np.asarray(common.Requests(f).latency_ms, dtype=float) for f in real])
            lat[name] = (pooled, common.Requests(sim).latency_ms)
    return report, lat


def headlines(report: dict, folder: Path) -> dict:
    h: dict = {"folder": str(folder), "config": report.get("config"), "device": report.get("device"),
               "sim_device": report.get("sim_device"), "requests": report.get("requests"),
               "targets": report.get("targets"), "systems": {}}
    for name, e in report["systems"].items():
        o = e["overall"]
        h["systems"][name] = {k: o.get(k) for k in ("mean_rel_err", "p50_rel_err", "p99_rel_err",
                                                    "slo_attainment_abs_err", "throughput_rel_err")}
        h["systems"][name]["meets_targets"] = e.get("meets_targets")
        h["systems"][name]["real_mean_ms"] = o["real"].get("mean_ms")
        h["systems"][name]["sim_mean_ms"] = o["sim"].get("mean_ms")
    if "ranking" in report:
        h["ranking_same"] = report["ranking"].get("same")
        h["ranking_real"] = report["ranking"].get("real")
        h["ranking_sim"] = report["ranking"].get("sim")
    errs = [abs(v["p99_rel_err"]) for v in h["systems"].values() if v.get("p99_rel_err") is not None]
    h["max_abs_p99_rel_err"] = max(errs) if errs else None
    errs = [abs(v["p50_rel_err"]) for v in h["systems"].values() if v.get("p50_rel_err") is not None]
    h["max_abs_p50_rel_err"] = max(errs) if errs else None
    return h


def draw(report: dict, lat: dict, folder: Path, out: Path) -> list[Path]:
    plt = common.pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, (real, sim) in lat.items():
        c = common.SYSTEM_COLORS.get(name, None)
        for vals, style, what in ((real, "-", "measured"), (sim, "--", "simulated")):
            if len(vals):
                x, y = common.ecdf(vals)
                a1.plot(x, y, style, color=c, lw=1.5, label=f"{name} {what}")
    a1.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    a1.xaxis.set_minor_formatter(NullFormatter())  # decades only: no overlapping labels
    a1.set_xlabel("latency (ms, log scale)")
    a1.set_ylabel("fraction of requests")
    a1.set_title("latency CDF: measured (solid) vs simulated (dashed)", fontsize=10)
    a1.grid(alpha=0.3, which="both")
    a1.legend(fontsize=7)
    names = list(report["systems"])
    stats = ("mean", "p50", "p99")
    x = np.arange(len(names))
    w = 0.26
    for i, st in enumerate(stats):
        vals = [report["systems"][n]["overall"].get(f"{st}_rel_err") for n in names]
        a2.bar(x + (i - 1) * w, [100 * (v or 0) for v in vals], w, label=st, color=("#9ecae1", "#4292c6", "#08519c")[i],
               edgecolor="black", lw=0.4)
    t = report.get("targets", {})
    if "p50_rel_err" in t:
        a2.axhspan(-100 * t["p50_rel_err"], 100 * t["p50_rel_err"], color="green", alpha=0.08,
                   label=f"p50 target ±{t['p50_rel_err']:.0%}")
    if "p99_rel_err" in t:
        for sgn in (-1, 1):
            a2.axhline(sgn * 100 * t["p99_rel_err"], color="green", ls=":", lw=1,
                       label=f"p99 target ±{t['p99_rel_err']:.0%}" if sgn > 0 else None)
    a2.axhline(0, color="black", lw=0.6)
    a2.set_xticks(x)
    a2.set_xticklabels(names)
    a2.set_xlabel("system")
    a2.set_ylabel("simulator error (%, + = predicts slower)")
    a2.set_title("relative error of the simulator", fontsize=10)
    a2.grid(axis="y", alpha=0.3)
    a2.legend(fontsize=7)
    fig.suptitle(f"Simulator vs real execution: {Path(str(report.get('config', folder))).name}, "
                 f"{report.get('requests', '?')} requests, {report.get('tasks', '?')} tasks", fontsize=11)
    how = "measured in the same run" if report.get("profile_measured") else "measured earlier on the same machine"
    text = common.caption({"kind": "profile", "source": f"{report.get('profile', 'profile.csv')} {how}"},
                          f"{report.get('device')} (simulated as {report.get('sim_device')})", None,
                          f"validation folder {folder.name}; measured by fmplex-exec replay")
    text = text.replace("; simulated by fmplex-sim (no GPU was used)", "")
    return common.save(fig, out, FIGURE, text)


def main(argv: list[str] | None = None) -> int:
    def add_arguments(p) -> None:
        p.add_argument("--validation", metavar="DIR", default=None,
                       help=f"a validation results folder (default {DEFAULT} if it exists)")

    def load(args):
        folder = Path(args.validation or DEFAULT)
        if not (folder / "validation.json").is_file():
            return None, (f"no validation results: {folder}/validation.json not found (run fmplex-exec "
                          f"validate experiments/validation/minilm_medium.yaml --out {DEFAULT}, or pass "
                          f"--validation DIR)")
        report, lat = collect(folder)
        return (report, lat, folder), ""

    return common.main(FIGURE, __doc__, argv, load, lambda d, out: draw(*d, out),
                       lambda d: headlines(d[0], d[2]), add_arguments)

if __name__ == "__main__":
    sys.exit(main())
