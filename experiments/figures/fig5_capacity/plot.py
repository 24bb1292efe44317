"""Figure 5: tasks hosted with >= 99% SLO attainment for every task, against the number of GPUs.

Reads ``--results``: one ``fmplex-sim capacity`` folder per system and GPU count (any folder
name; each holds ``capacity.json``). Writes ``fig5_capacity.png/.pdf`` and
``headlines.json["fig5_capacity"]``: tasks hosted per system and GPU count, fmplex's ratio to
each baseline per GPU count, the largest ratios, and which counts are capped by the pool: a
system that hosts the whole pool might host more from a larger one, so a ratio where only fmplex
is capped is a lower bound.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

FIGURE = "fig5_capacity"
LABEL_OFFSET = {"spatial": (5, -11), "colocate": (5, -11), "fmplex": (-4, 6)}  # keeps equal counts legible


def collect(folder: Path) -> dict:
    """{system: {gpus: capacity.json}}."""
    out: dict = {}
    for p in sorted(folder.glob("*/capacity.json")):
        c = common.read_json(p)
        out.setdefault(c["system"], {})[int(c["gpus"])] = c
    return out


def monotone(c: dict) -> bool:
    """Whether the probes agree with the search's assumption (feasible k never above an infeasible one)."""
    probes = sorted(c["search"], key=lambda p: p["tasks"])
    seen_bad = False
    for p in probes:
        if not p["feasible"]:
            seen_bad = True
        elif seen_bad:
            return False
    return True


def headlines(data: dict) -> dict:
    any_c = next(iter(next(iter(data.values())).values()))
    pool = any_c["pool_size"]
    hosted = {s: {g: c["tasks_hosted_max"] for g, c in sorted(data[s].items())} for s in common.SYSTEMS if s in data}
    h: dict = {
        "scenario": f"bench pool: {pool} tasks over 7 backbones, Zipf(0.8) rates, SLO 200 ms, "
                    f"{any_c['device']}, roofline; every task >= {any_c['slo_attainment_target']} SLO attainment",
        "pool_size": pool,
        "tasks_hosted": hosted,
        "capped_by_pool": {s: [g for g, n in v.items() if n >= pool] for s, v in hosted.items()},
        "search_monotone": all(monotone(c) for v in data.values() for c in v.values()),
    }
    if "fmplex" in hosted:
        for base in ("spatial", "colocate"):
            if base not in hosted:
                continue
            ratios = {g: hosted["fmplex"][g] / hosted[base][g] for g in hosted["fmplex"]
                      if g in hosted[base] and hosted[base][g] > 0}
            h[f"ratio_vs_{base}"] = ratios
            if ratios:
                g, r = max(ratios.items(), key=lambda kv: kv[1])
                h[f"tasks_hosted_ratio_vs_{base}"] = r
                h[f"tasks_hosted_ratio_vs_{base}_at_gpus"] = g
                uncapped = {g: r for g, r in ratios.items() if hosted["fmplex"][g] < pool}
                h[f"tasks_hosted_ratio_vs_{base}_uncapped"] = uncapped
    return h


def draw(data: dict, out: Path) -> list[Path]:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    any_c = None
    for s in common.SYSTEMS:
        if s not in data:
            continue
        pts = sorted(data[s].items())
        any_c = pts[0][1]
        ax.plot([g for g, _ in pts], [c["tasks_hosted_max"] for _, c in pts], "-o",
                color=common.SYSTEM_COLORS[s], lw=1.8, label=s)
        for g, c in pts:
            ax.annotate(str(c["tasks_hosted_max"]), (g, c["tasks_hosted_max"]), textcoords="offset points",
                        xytext=LABEL_OFFSET[s], fontsize=7, color=common.SYSTEM_COLORS[s])
    gpus = sorted({g for v in data.values() for g in v})
    ax.axhline(any_c["pool_size"], color="grey", ls=":", lw=1, label=f"pool size ({any_c['pool_size']})")
    ax.plot(gpus, [7 * g for g in gpus], color="#d62728", ls=":", lw=0.8, alpha=0.6, label="7 slices per GPU")
    ax.set_xscale("log", base=2)
    ax.set_xticks(gpus)
    ax.set_xticklabels([str(g) for g in gpus])
    ax.set_ylim(0, any_c["pool_size"] * 1.12)
    ax.set_xlabel("number of GPUs (H100-80GB)")
    ax.set_ylabel("tasks hosted (every task >= 99% SLO attainment)")
    ax.set_title("Tasks hosted within their SLOs vs cluster size", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    text = common.caption(any_c.get("latency_model"), any_c["device"], None,
                          f"Capacity search (fmplex-sim capacity, bisection) over bench.py's pool of "
                          f"{any_c['pool_size']} tasks on 7 backbones, most popular first; "
                          f"target {any_c['slo_attainment_target']} per task")
    return common.save(fig, out, FIGURE, text)


def main(argv: list[str] | None = None) -> int:
    return common.main(FIGURE, __doc__, argv,
                       lambda a: (collect(Path(a.results)), f"no capacity results in {a.results}"),
                       draw, headlines)

if __name__ == "__main__":
    sys.exit(main())
