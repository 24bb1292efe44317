"""Helpers the figure scripts share: reading results folders, the caption line, saving PNG and
PDF, and merge-writing ``headlines.json``.

Figure scripts only read results folders (``summary.json``, ``requests.csv``, ``sweep.csv``,
``capacity.json``, ``validation.json``); they never run an engine. Each script takes
``--results DIR`` (the folder ``make_figures.py`` filled for that figure) and ``--out DIR``
(where ``<figure>.png``, ``<figure>.pdf`` and ``headlines.json`` go).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

SYSTEMS = ("spatial", "colocate", "fmplex")  # the three systems every figure compares
SYSTEM_COLORS = {"spatial": "#d62728", "colocate": "#ff7f0e", "fmplex": "#1f77b4"}
SCHEDULERS = ("fifo", "rr", "wfq", "vtc", "bfq")
HEADLINES = "headlines.json"


# ----------------------------------------------------------------------------- command line
def parser(figure: str, doc: str) -> argparse.ArgumentParser:
    """The command line every plot script shares: ``--results`` and ``--out``."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--results", default=f"results/figures/{figure}",
                   help=f"the results folder of this figure (default results/figures/{figure})")
    p.add_argument("--out", default="results/figures",
                   help="where the PNG, PDF and headlines.json go (default results/figures)")
    p.add_argument("--skipped", metavar="REASON",
                   help="record this figure as skipped for REASON instead of drawing it")
    return p


# ----------------------------------------------------------------------------- reading results
def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def read_csv_rows(path: str | Path) -> list[dict]:
    """Rows of a CSV file as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class Requests:
    """Columns of one ``requests.csv`` as numpy arrays (times in seconds, nan when empty)."""

    def __init__(self, path: str | Path) -> None:
        rows = read_csv_rows(path)
        self.task = np.array([r["task"] for r in rows], dtype=object)
        self.arrival_s = np.array([float(r["arrival_s"]) for r in rows])
        self.start_s = np.array([float(r["start_s"]) if r["start_s"] else np.nan for r in rows])
        self.finish_s = np.array([float(r["finish_s"]) if r["finish_s"] else np.nan for r in rows])
        self.batch_id = np.array([int(r["batch_id"]) if r["batch_id"] else -1 for r in rows])
        self.instance = np.array([r["instance"] for r in rows], dtype=object)
        self.status = np.array([r["status"] for r in rows], dtype=object)

    @property
    def latency_ms(self) -> np.ndarray:
        """Latency of completed requests, in ms."""
        done = np.isfinite(self.finish_s)
        return (self.finish_s[done] - self.arrival_s[done]) * 1000.0


def batch_service(req: Requests) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Service time of every batch, approximated from ``requests.csv``, split over its tasks.

    A batch's service is the time its instance's output advanced for it: its finish minus the
    later of its start and the previous batch's finish on the same instance (so batches that
    overlap in the pipeline are not counted twice, and idle gaps are not counted at all). The
    service is split over the batch's tasks by rows (requests), which equals the engine's token
    split when a batch's requests have equal input lengths.

    Returns ``(finish_s, service_s, rows_by_task)``: per batch, its finish time, its service, and
    for every task the number of that task's rows in it.
    """
    ran = req.batch_id >= 0
    keys = np.array([f"{i}\x00{b}" for i, b in zip(req.instance[ran], req.batch_id[ran])], dtype=object)
    uniq, inv = np.unique(keys, return_inverse=True)
    n = uniq.shape[0]
    start = np.full(n, np.inf)
    finish = np.full(n, -np.inf)
    np.minimum.at(start, inv, req.start_s[ran])
    np.maximum.at(finish, inv, req.finish_s[ran])
    inst = np.array([k.split("\x00")[0] for k in uniq], dtype=object)
    service = np.zeros(n)
    for name in np.unique(inst):
        idx = np.flatnonzero(inst == name)
        idx = idx[np.argsort(finish[idx], kind="stable")]
        prev = np.concatenate(([-np.inf], finish[idx][:-1]))
        service[idx] = finish[idx] - np.maximum(start[idx], prev)
    rows: dict[str, np.ndarray] = {}
    tasks = req.task[ran]
    for t in np.unique(tasks):
        rows[str(t)] = np.bincount(inv[tasks == t], minlength=n)
    return finish, np.clip(service, 0.0, None), rows


def sweep_points(folder: str | Path) -> list[dict]:
    """The rows of ``DIR/sweep.csv``, each with its point's ``summary`` loaded."""
    folder = Path(folder)
    rows = read_csv_rows(folder / "sweep.csv")
    for r in rows:
        r["summary"] = read_json(folder / "points" / r["point"] / "summary.json")
        r["folder"] = folder / "points" / r["point"]
    return rows


def system_of(summary: Mapping) -> str:
    return summary["system"]["name"]


# ----------------------------------------------------------------------------- caption
def caption(latency_model: Mapping | None, device: str | None, gpus: int | None = None,
            extra: str = "") -> str:
    """The caption line every figure carries: the latency model and the device it predicts."""
    if latency_model:
        kind = latency_model.get("kind", "?")
        source = latency_model.get("source", "")
        lm = f"{kind} ({source})" if source else kind
    else:
        lm = "unknown"
    dev = device or "unknown device"
    if gpus:
        dev = f"{gpus} x {dev}"
    text = f"Latency model: {lm}; device: {dev}; simulated by fmplex-sim (no GPU was used)"
    return f"{text}. {extra}" if extra else text + "."


def caption_from(summary: Mapping, extra: str = "") -> str:
    return caption(summary.get("latency_model"), summary["cluster"]["device"], summary["cluster"]["gpus"], extra)


# ----------------------------------------------------------------------------- output
def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out: str | Path, name: str, caption_text: str) -> list[Path]:
    """Put the caption under ``fig``, write ``out/name.png`` and ``out/name.pdf``; the paths."""
    import textwrap

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = textwrap.wrap(caption_text, max(60, int(fig.get_figwidth() * 17)))
    fig.text(0.5, 0.005, "\n".join(lines), ha="center", va="bottom", fontsize=7, color="#333333")
    fig.tight_layout(rect=(0, 0.025 + 0.022 * len(lines), 1, 1))
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1])
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def merge_headlines(out: str | Path, key: str, value: Mapping) -> Path:
    """Set ``headlines.json[key] = value`` in ``out``, keeping every other figure's entry.

    Written through a temporary file and a rename, so a reader never sees half a file, under an
    exclusive lock, so figure scripts running side by side do not lose each other's entries."""
    import fcntl

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / HEADLINES
    with open(out / f".{HEADLINES}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_json(path) if path.is_file() else {}
        data[key] = _plain(value)
        tmp = out / f".{HEADLINES}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
        os.replace(tmp, path)
    return path


def main(figure: str, doc: str, argv: list[str] | None, load, draw, headlines, add_arguments=None) -> int:
    """Every plot script's ``main``: the shared command line (:func:`parser`, plus
    ``add_arguments(p)``), ``--skipped`` recorded as such, else :func:`finish` with
    ``load(args) -> (data, reason to skip when data is empty)``."""
    p = parser(figure, doc)
    if add_arguments is not None:
        add_arguments(p)
    args = p.parse_args(argv)
    if args.skipped:
        record_skip(args.out, figure, args.skipped)
        return 0
    data, missing = load(args)
    return finish(args.out, figure, data, missing, draw, headlines)


def finish(out: str | Path, key: str, data, missing: str, draw, headlines) -> int:
    """End of every plot script: record ``key`` as skipped for ``missing`` when ``data`` is
    empty, else ``draw(data, out)`` (the figure files) and merge ``headlines(data)``."""
    if not data:
        record_skip(out, key, missing)
        return 0
    paths = draw(data, Path(out))
    merge_headlines(out, key, headlines(data))
    print(f"{key}: {', '.join(map(str, paths))}")
    return 0


def record_skip(out: str | Path, key: str, reason: str) -> None:
    """Record ``key`` as skipped in headlines.json and say so on stdout."""
    merge_headlines(out, key, {"skipped": True, "reason": reason})
    print(f"{key}: skipped: {reason}")


def _plain(v):
    """JSON-safe copy: numpy scalars to Python, NaN and inf to None, floats rounded."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return round(f, 4) if np.isfinite(f) else None
    return v


# ----------------------------------------------------------------------------- small numbers
def reduction(ours: float | None, theirs: float | None) -> float | None:
    """``1 - ours / theirs``: the fraction by which ``ours`` is lower (None if undefined)."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return 1.0 - ours / theirs


def ecdf(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    v = np.sort(np.asarray(values, dtype=float))
    return v, np.arange(1, v.shape[0] + 1) / max(1, v.shape[0])
