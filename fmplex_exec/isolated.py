"""One replay in a fresh Python process, for experiments that run many replays back to back.

Each replay's serving threads, OpenMP pools and model copies end with its process, so one
replay cannot slow the next (fmplex_exec.threads). :func:`replay_in_child` writes the config,
runs ``python -m fmplex_exec.isolated CONFIG OUT`` and returns what the child wrote: the run's
``summary``, its lifecycle ``events``, the task names (``tasks``) and per request the task
index (``task``), ``arrival_s`` and ``latency_ms`` (NaN when not completed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def replay_in_child(raw: dict, name: str = "replay") -> dict:
    """Replay the config ``raw`` (a config file's mapping; ``name`` stands for its file in
    error messages) on real models in a child process; returns its results (module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / f"{name}.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps(raw))
        subprocess.run([sys.executable, "-m", "fmplex_exec.isolated", str(spec), str(out)], check=True)
        return json.loads(out.read_text())


def _child(spec: Path, out: Path) -> None:
    from fmplex_exec.executors import make_executor
    from fmplex_exec.runtime import Runtime
    from fmplex_sim.config import parse_config
    from fmplex_sim.run import prepare

    cfg, wl, _ = prepare(parse_config(json.loads(spec.read_text()), spec.stem))
    rt = Runtime(cfg, wl, make_executor)
    rec, summary = rt.run()
    out.write_text(json.dumps({
        "summary": summary, "events": rt.events, "tasks": list(rec.tasks),
        "task": rec.task.tolist(), "arrival_s": rec.arrival_s.tolist(),
        "latency_ms": ((rec.finish_s - rec.arrival_s) * 1000.0).tolist(),
    }))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
    # Without a drain, worker threads may still be inside a forward: skip the interpreter's
    # shutdown, which would abort them mid-call ("terminate called without an active exception").
    sys.stdout.flush()
    os._exit(0)
