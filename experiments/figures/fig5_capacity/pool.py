"""The task pool of figure 5: experiments/bench/bench.py's 92 tasks over 7 backbones, as a run
config (YAML). Usage: python experiments/figures/fig5_capacity/pool.py [--spec capacity.yaml] OUT.yaml
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent.parent / "bench" / "bench.py"


def load_spec(path: str | Path = HERE / "capacity.yaml") -> dict:
    """The figure's settings: total_rps, duration_s, slo_attainment, gpus, systems."""
    return yaml.safe_load(Path(path).read_text())


def pool_config(total_rps: float, duration_s: float) -> dict:
    """bench.py's scenario (92 tasks, 7 backbones, Zipf 0.8) at ``total_rps`` for ``duration_s``."""
    spec = importlib.util.spec_from_file_location("fmplex_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.scenario(total_rps, duration_s)


def write_pool(out: str | Path, spec: dict) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = pool_config(spec["total_rps"], spec["duration_s"])
    head = (f"# Figure 5 task pool, written by {Path(__file__).name}: bench.py's 92 tasks over 7 backbones, "
            f"{spec['total_rps']} requests/s in all, {spec['duration_s']} s per probe.\n")
    out.write_text(head + yaml.safe_dump(cfg, sort_keys=False))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="where to write the pool config (YAML)")
    ap.add_argument("--spec", default=str(HERE / "capacity.yaml"), help="the figure's settings")
    args = ap.parse_args(argv)
    print(write_pool(args.out, load_spec(args.spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
