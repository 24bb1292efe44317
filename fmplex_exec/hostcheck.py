"""How fast is this host now, against when its profile was measured?

On a shared host (a cloud VM) the same forward can take a third longer one hour than the next,
and a profile measured minutes before a replay may describe a faster or slower machine than
the one the replay runs on. ``fmplex-exec validate`` therefore times one reference point
three times: right after measuring the profile, and right before and right after each system's
replay. The point is a bare forward of one input at the profiled length nearest the workload's
median, per backbone, with each thread count the profile has ``forward`` rows for (the whole
host, and the slices' counts), always by the same protocol (:class:`HostCheck`). The mean of a
replay's two timings over the timing at profile time is the host's speed factor at that thread
count; :func:`scale_profile` writes a copy of the profile whose time rows are multiplied by it.
A factor within :data:`DEADBAND` of 1 is applied as 1: on the 2-core VM, checks before and
after four 30 s replays differed by 9-16% within each pair, so a smaller change cannot be told
from the check's own noise.
Nothing here looks at the replay's latencies: the factor comes from the reference forward alone.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from pathlib import Path

#: Row kinds whose times are host work and scale with the host's speed. ``contention`` rows
#: are compared with each other (a ratio), and load rows time storage: neither is scaled.
SCALED_KINDS = ("forward", "decode", "encoder", "lora", "head", "overhead", "wake", "throttle")
_TIMES = ("median_ms", "p10_ms", "p90_ms")


def _table(path: str | Path) -> tuple[list[str], list[str], list[dict]]:
    """``(comments, header, rows)`` of a profile CSV (comments keep their ``#``)."""
    lines = Path(path).read_text().splitlines()
    comments = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(body)))
    return comments, list(reader.fieldnames or []), list(reader)


def reference_points(profile: str | Path, lengths: dict[str, list[int]]) -> dict[tuple[str, int], tuple[int, float]]:
    """For each backbone of ``lengths`` (its requests' input lengths) and each thread count its
    ``forward`` rows have (0: the whole host): ``(seq_len, profile ms)`` of its batch-1 row at
    the profiled length nearest the median input."""
    _, _, rows = _table(profile)
    out: dict[tuple[str, int], tuple[int, float]] = {}
    for bb, lens in lengths.items():
        mid = statistics.median(lens) if lens else 0
        fwd = [r for r in rows if r["kind"] == "forward" and r["backbone"] == bb and r["batch"] == "1"]
        for threads in sorted({int(r.get("threads") or 0) for r in fwd}):
            mine = [r for r in fwd if int(r.get("threads") or 0) == threads]
            best = min(mine, key=lambda r: (abs(int(r["seq_len"]) - mid), int(r["seq_len"])))
            out[(bb, threads)] = (int(best["seq_len"]), float(best["median_ms"]))
    return out


class HostCheck:
    """Times the reference points of a profile on this host (``measure``). Build and call it
    off the main thread (:func:`fmplex_exec.threads.off_main`), as the profiler measured them."""

    def __init__(self, points: dict[tuple[str, int], tuple[int, float]], device: str, dtype: str,
                 seed: int = 0, repeats: int = 15, warmup: int = 2) -> None:
        import torch

        from fmplex_exec.backbones import load_backbone

        self.points = points
        self.repeats, self.warmup = repeats, warmup
        self.models = {bb: load_backbone(bb, device=device, dtype=dtype, seed=seed)
                       for bb in sorted({bb for bb, _ in points})}
        self.gen = torch.Generator().manual_seed(seed)

    def measure(self) -> dict[tuple[str, int], float]:
        """Median ms of the bare forward at each reference point, now."""
        import os

        import torch

        old = torch.get_num_threads()
        out = {}
        try:
            with torch.inference_mode():
                for (name, threads), (seq_len, _) in self.points.items():
                    torch.set_num_threads(threads or os.cpu_count() or 1)
                    bb = self.models[name]
                    x = bb.make_inputs(1, seq_len, self.gen)
                    for _ in range(self.warmup):
                        bb.model(**x)
                    ms = []
                    for _ in range(self.repeats):
                        t0 = time.perf_counter()
                        bb.model(**x)
                        ms.append((time.perf_counter() - t0) * 1000.0)
                    out[(name, threads)] = statistics.median(ms)
        finally:
            torch.set_num_threads(old)
        return out


#: Speed factors closer to 1 than this are applied as 1 (the check's own repeatability).
DEADBAND = 0.10


def factors(reference: dict, before: dict, after: dict) -> dict[tuple[str, int], tuple[float, float]]:
    """Per reference point: ``(measured, applied)`` speed factor. Measured is the mean of the two
    timings around a replay over the timing at profile time (above 1: slower now); applied is
    1 when measured is within :data:`DEADBAND` of 1, else measured."""
    out = {}
    for k, ref in reference.items():
        if ref > 0:
            f = (before[k] + after[k]) / 2.0 / ref
            out[k] = (f, 1.0 if abs(f - 1.0) < DEADBAND else f)
    return out


def scale_profile(src: str | Path, dst: str | Path, factor: dict[tuple[str, int], float], note: str) -> None:
    """Copy profile ``src`` to ``dst`` with the times of its :data:`SCALED_KINDS` rows
    multiplied by ``factor[(backbone, threads)]``. A row whose thread count was not checked
    takes its backbone's whole-host factor; rows for every backbone (``overhead``, ``*``) take
    the mean whole-host factor. ``note`` is added to the comments."""
    comments, header, rows = _table(src)
    whole = [f for (_, t), f in factor.items() if t == 0] or [1.0]
    shared = sum(whole) / len(whole)
    for r in rows:
        if r["kind"] not in SCALED_KINDS:
            continue
        bb, threads = r["backbone"], int(r.get("threads") or 0)
        f = factor.get((bb, threads), factor.get((bb, 0), shared))
        for col in _TIMES:
            if r.get(col) not in (None, ""):
                r[col] = f"{float(r[col]) * f:.6f}"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    Path(dst).write_text("\n".join([*comments, f"# {note}"]) + "\n" + buf.getvalue())
