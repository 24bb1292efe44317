"""Run the validation suite and print its table (the README's "Simulator against reality").

    python experiments/validation/run_suite.py --out results/validation [--device cpu|cuda]

On CPU the suite is this folder's scenarios; with ``--device cuda`` it is ``cuda/``'s, whose
rates suit one GPU.

Each scenario is one `fmplex-exec validate` command, printed before it runs, with its defaults:
two rounds, each measuring a profile and then replaying every system (this host's speed drifts
by up to a third between profiles taken an hour apart; the rounds let the profile and the
replays sample the same minutes). The table's last column is how far one system's two replays
lie apart: the host's own noise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIOS = ("minilm_low", "minilm_medium", "minilm_high", "mix_two_backbones", "bursty")
CUDA_SCENARIOS = ("minilm", "mix_two_backbones")  # cuda/


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/validation")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--only", help="comma-separated scenario names")
    args = ap.parse_args()
    out = Path(args.out)
    here, names = (HERE / "cuda", CUDA_SCENARIOS) if args.device == "cuda" else (HERE, SCENARIOS)
    todo = [s for s in names if not args.only or s in args.only.split(",")]
    exe = str(Path(sys.executable).with_name("fmplex-exec"))
    for name in todo:
        cmd = [exe, "validate", str(here / f"{name}.yaml"), "--out", str(out / name),
               "--device", args.device]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    print()
    print(table(out, todo))
    return 0


def table(out: Path, names) -> str:
    """Markdown table: per scenario and system, measured and simulated p50/p99, errors, SLO."""
    lines = ["| scenario | system | p50 real / sim ms | p50 err | p99 real / sim ms | p99 err | "
             "SLO real / sim | ranking same | replays apart p50 / p99 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        f = out / name / "validation.json"
        if not f.exists():
            continue
        rep = json.loads(f.read_text())
        for sysname, e in rep["systems"].items():
            o = e["overall"]
            r, s = o["real"], o["sim"]
            spread = e.get("round_spread")
            apart = (f"{spread['p50'] * 100:.1f}% / {spread['p99'] * 100:.1f}%"
                     if spread and spread["p50"] is not None and spread["p99"] is not None else "-")
            lines.append(
                f"| {name} | {sysname} | {r['p50_ms']:.1f} / {s['p50_ms']:.1f} | {o['p50_rel_err'] * 100:+.1f}% | "
                f"{r['p99_ms']:.1f} / {s['p99_ms']:.1f} | {o['p99_rel_err'] * 100:+.1f}% | "
                f"{r['slo_attainment']:.3f} / {s['slo_attainment']:.3f} | {_ranked(rep['ranking'])} | {apart} |")
    return "\n".join(lines)


def _ranked(rk: dict) -> str:
    """The table's ranking cell: yes, or no with the pairs the replays' own rounds left unsettled."""
    if rk["same"]:
        return "yes"
    if not rk.get("unsettled"):
        return "no"
    pairs = ", ".join("/".join(p) for p in rk["unsettled"])
    return f"no ({pairs} unsettled by the replays; {'rest same' if rk['same_settled'] else 'rest differs'})"


if __name__ == "__main__":
    sys.exit(main())
