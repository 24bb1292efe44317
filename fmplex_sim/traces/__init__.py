"""Public traces as workloads: load, shape, and bind a trace's tasks to the run's task specs.

Order of operations, applied to the trace in its own time:

1. ``window`` keeps ``[start_s, start_s + duration_s)`` and shifts it to start at 0;
2. tasks: a trace with task ids (Alibaba tenants, ServeGen clients) keeps its N most popular
   tasks; a trace without (Azure, Mooncake, native with one task) assigns each request to one of
   N tasks, i.i.d. with Zipf(s) or uniform popularity, from the run's seed;
3. ``burstiness_scale`` multiplies each task's inter-arrival CV (count and span kept);
4. ``rate_scale`` compresses time (2.0 = the same requests in half the time);
5. ``max_requests`` keeps the first N requests.

Trace task k (most popular first) becomes the run's task k: with ``workload.tasks.count`` the
task templates are cycled (task k takes template ``k mod len(templates)``, named
``<template>-<k>``); without it the templates are the tasks. With ``map_backbones`` (Alibaba),
base models are ranked by request count and base model j maps to the j-th distinct template
backbone (cyclically); a tenant takes the first template on the backbone of its most-used base
model. Input lengths are clipped to the backbone's positions (inputs are truncated, as a
tokenizer would) and at least 1; generated tokens are kept only for decoder backbones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from fmplex_sim.catalog import BACKBONES
from fmplex_sim.config import RunConfig, check_updates, expand_tasks
from fmplex_sim.errors import InputError
from fmplex_sim.traces import formats  # noqa: F401  (registers the loaders)
from fmplex_sim.traces import shaping
from fmplex_sim.traces.base import TRACE_FORMATS, Trace
from fmplex_sim.workload import Workload, from_arrays

__all__ = ["TRACE_FORMATS", "Trace", "load_trace", "shape_trace", "trace_workload"]

_SHAPING_STREAM = 0x7ACE  # second word of the seed of the shaping random stream


MAX_SPAN_S = 1e9  # a trace spanning more is a unit mistake, and its gaps' statistics overflow


def load_trace(fmt: str, path: str, *, seed: int = 0, window: tuple[float, float | None] | None = None,
               input_len: int | None = None) -> Trace:
    """Read ``path`` with the loader ``fmt``. Raises InputError for a bad file.

    ``window`` lets a loader skip work outside it (ServeGen generates only those windows); times
    are never shifted by the loader: :func:`shape_trace` cuts and shifts.
    """
    if input_len is not None and fmt != "servegen":
        raise InputError(path, "input_len", f"only servegen traces take an input length; {fmt} traces carry their own")
    load = TRACE_FORMATS.get(fmt)
    kwargs = {} if input_len is None else {"input_len": input_len}
    trace = load(path, seed=seed, window=window, **kwargs)
    if len(trace) and float(trace.arrival_s[-1] - trace.arrival_s[0]) > MAX_SPAN_S:
        raise InputError(path, "", f"spans {float(trace.arrival_s[-1] - trace.arrival_s[0]):.3g} s from its first "
                         f"request to its last; at most {MAX_SPAN_S:g} s (about 31 years): are its times in seconds?")
    return trace


def shape_trace(trace: Trace, *, n_tasks: int, rng: np.random.Generator, zipf: float | None = None,
                window: tuple[float, float | None] | None = None, burstiness_scale: float = 1.0,
                rate_scale: float = 1.0, max_requests: int | None = None,
                where: str | Mapping[str, str] = "workload") -> Trace:
    """Apply the shaping steps in the module's order. Raises InputError naming the option:
    ``<where>.<step>`` (a config key), or ``where[step]`` when ``where`` maps each step
    (window, tasks.popularity, tasks, burstiness_scale, rate_scale, max_requests) to a
    command-line option."""
    step = "window"
    try:
        if window is not None:
            trace = shaping.window(trace, window[0], window[1])
        step = "tasks.popularity"
        if trace.task is not None and zipf is not None:
            raise ValueError("this trace has its own task ids (its most requested are kept); a Zipf "
                             "popularity shapes only tasks assigned to a trace without them")
        step = "tasks"
        if trace.task is None:
            trace = shaping.assign_tasks(trace, n_tasks, rng, zipf=zipf)
        else:
            trace = shaping.top_tasks(trace, n_tasks)
        step = "burstiness_scale"
        if burstiness_scale != 1.0:
            trace = shaping.scale_burstiness(trace, burstiness_scale, rng)
        step = "rate_scale"
        if rate_scale != 1.0:
            trace = shaping.scale_rate(trace, rate_scale)
        step = "max_requests"
        if max_requests is not None:
            trace = shaping.max_requests(trace, max_requests)
    except ValueError as e:
        label = where[step] if isinstance(where, Mapping) else f"{where}.{step}"
        raise InputError(trace.source, label, str(e)) from None
    return trace


def _templates_by_base_model(trace: Trace, templates) -> list[int]:
    """map_backbones: template index of each trace task, from its most-used base model."""
    assert trace.task is not None and trace.backbone is not None
    n_tasks = len(trace.task_names)
    per_model = np.bincount(trace.backbone, minlength=len(trace.backbone_names))
    model_rank = {int(m): r for r, m in enumerate(np.argsort(-per_model, kind="stable"))}
    distinct: list[str] = []
    for t in templates:
        if t.backbone not in distinct:
            distinct.append(t.backbone)
    first_template = {bb: next(i for i, t in enumerate(templates) if t.backbone == bb) for bb in distinct}
    pairs = np.zeros((n_tasks, len(trace.backbone_names)), dtype=np.int64)
    np.add.at(pairs, (trace.task, trace.backbone), 1)
    out = []
    for k in range(n_tasks):
        model = int(np.argmax(pairs[k])) if pairs[k].any() else 0
        out.append(first_template[distinct[model_rank[model] % len(distinct)]])
    return out


def trace_workload(cfg: RunConfig) -> tuple[RunConfig, Workload, dict]:
    """Read and shape ``cfg``'s trace; return the config with its tasks and duration resolved,
    the request stream, and a description of what was read (for ``workload.json``)."""
    spec = cfg.workload
    src = spec.trace
    assert src is not None
    win = None
    if spec.window_start_s > 0 or spec.window_duration_s is not None:
        win = (spec.window_start_s, spec.window_duration_s)
    raw = load_trace(src.format, src.path, seed=cfg.seed, window=win, input_len=src.input_len)
    n_tasks = spec.task_count if spec.task_count is not None else len(cfg.templates or cfg.tasks)
    rng = np.random.default_rng([cfg.seed, _SHAPING_STREAM])
    tr = shape_trace(raw, n_tasks=n_tasks, rng=rng, zipf=spec.zipf, window=win,
                     burstiness_scale=spec.burstiness_scale, rate_scale=spec.rate_scale,
                     max_requests=spec.max_requests)
    tasks = cfg.tasks
    if spec.map_backbones:
        if tr.backbone is None:
            raise InputError(src.path, "workload.tasks.map_backbones", "this trace has no base-model ids")
        template_of = _templates_by_base_model(tr, cfg.templates)
        template_of += [k % len(cfg.templates) for k in range(len(template_of), n_tasks)]
        tasks = expand_tasks(cfg.templates, replace(spec, task_count=n_tasks), template_of)
    if cfg.duration_s is None:  # the trace's own span: its last request is in it
        duration = max(tr.duration_s, 1e-3)
        keep = tr.arrival_s <= duration
    else:
        duration = cfg.duration_s
        keep = tr.arrival_s < duration
    if not keep.all():
        tr = tr.take(keep)
    # Trace task k is the run's task k, unless the trace names its tasks and every name it
    # keeps is a task of the config (a native trace written for it): then by name.
    idx = tr.task.astype(np.int32)
    by_name = {t.name: k for k, t in enumerate(tasks)}
    names = tr.task_names or ()
    matched = (raw.task is not None and spec.task_count is None and not spec.map_backbones and len(names) > 0
               and all(n in by_name for n in names))
    if matched:
        idx = np.array([by_name[n] for n in names], dtype=np.int32)[idx]
    limit = np.array([BACKBONES[t.backbone].max_positions - t.prefix_tokens for t in tasks])
    decoder = np.array([BACKBONES[t.backbone].decoder for t in tasks])
    out_len = np.where(decoder[idx], tr.output_len, 0).astype(np.int32)
    in_cap = np.maximum(1, limit[idx] - out_len)
    in_len = np.clip(tr.input_len, 1, in_cap).astype(np.int32)
    clipped = int((tr.input_len > in_cap).sum())
    wl = from_arrays(tuple(t.name for t in tasks), tr.arrival_s, idx, in_len, out_len)
    info = {
        "trace": src.to_dict(),
        "read": raw.stats(),
        "shaped": tr.stats(),
        "inputs_truncated": clipped,
        "tasks_matched_by": "name" if matched else "popularity",
        "duration_s": duration,
    }
    if cfg.duration_s is None:
        check_updates(tasks, duration, cfg.source)
    return replace(cfg, duration_s=duration, tasks=tasks), wl, info
