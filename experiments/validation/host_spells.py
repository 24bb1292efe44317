"""Does the host run in spells? The validate probe, taken again and again.

    python experiments/validation/host_spells.py [--backbones minilm-l6,chronos-t5-tiny]
        [--probes 30] [--pause-s 0.3] [--profile FILE]

Each probe is what ``fmplex-exec validate`` takes before and after a replay
(:class:`fmplex_exec.profiler.HostProbe`): 15 forwards of each backbone at one shape, all
threads, their median. Printed per probe: each backbone's median, and over the probe's wall
time the share of CPU time the kernel counted as stolen by the hypervisor and as idle
(``/proc/stat``, where there is one). A host that runs in spells shows probes in two clusters,
consecutive probes mostly in the same one. ``--profile``: take the probe's shapes from this
profile and print its rows beside (by default each backbone at batch 1 and its default input
length, at most 128).

Nothing is written; the host must be otherwise idle (2 cores: nothing else running).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def _cpu_times() -> list[int] | None:
    stat = Path("/proc/stat")
    if not stat.is_file():
        return None
    return [int(x) for x in stat.read_text().splitlines()[0].split()[1:]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="minilm-l6,chronos-t5-tiny")
    ap.add_argument("--probes", type=int, default=30)
    ap.add_argument("--pause-s", type=float, default=0.3, help="idle time between probes")
    ap.add_argument("--profile", help="a profile: probe at its shapes and print its rows")
    args = ap.parse_args()
    if args.probes < 1 or args.pause_s < 0:
        ap.error("--probes must be >= 1 and --pause-s >= 0")

    from fmplex_exec.profiler import HostProbe, probe_point, read_rows
    from fmplex_sim.catalog.backbones import get_backbone

    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    if args.profile:
        rows = read_rows(args.profile)
    else:
        rows = [{"kind": "forward", "backbone": n, "batch": 1, "median_ms": 1.0,
                 "seq_len": min(128, get_backbone(n).default_input_len)} for n in names]
    probe = HostProbe(names, rows)
    if args.profile:
        for n in probe.points:
            (b, s), ms = probe_point(rows, n)
            print(f"profile row {n} {b} x {s}: median {ms:.2f} ms")
    seen: dict[str, list[float]] = {n: [] for n in probe.points}
    for i in range(args.probes):
        before, t0 = _cpu_times(), time.perf_counter()
        got = probe.measure()
        after, wall = _cpu_times(), time.perf_counter() - t0
        line = "  ".join(f"{n} {m['median_ms']:7.2f} ms" for n, m in got.items())
        if before and after:
            d = [y - x for x, y in zip(before, after)]
            total = sum(d) or 1
            line += f"  steal {d[7] / total:.3f} idle {d[3] / total:.3f}" if len(d) > 7 else ""
        print(f"probe {i + 1:3d} ({wall:.2f} s): {line}", flush=True)
        for n, m in got.items():
            seen[n].append(m["median_ms"])
        time.sleep(args.pause_s)
    for n, xs in seen.items():
        xs = sorted(xs)
        print(f"{n}: probes {xs[0]:.2f}-{xs[-1]:.2f} ms, median {statistics.median(xs):.2f}, "
              f"mean {statistics.fmean(xs):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
