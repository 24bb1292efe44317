"""Alibaba GenAI serving trace 2026 (GenTD26), ``lora_request_trace.csv``: tenants on shared base models.

Format: header ``gmt_create,predict_type,predict_status,exec_time_seconds,groupId,prompt_length,
negative_prompt_length,num_images_per_prompt,num_inference_steps,checkpoint_model_version_id,
num_lora`` (any column order; the four columns read below are required, the others may be left
out), one request per row, ``gmt_create`` like ``2024-11-15 16:57:50`` (whole seconds).

Rules:

- every row is an arrival, whatever its ``predict_status``: FAILED, PENDING and PROCESSING
  requests were submitted too, so they are kept as arrivals (the public file: 26,392 SUCCEED,
  398 FAILED, 30 PENDING, 3 PROCESSING);
- ``task`` = ``groupId`` (the tenant; must not be empty), ``task_names`` in order of first
  appearance; ``backbone`` = ``checkpoint_model_version_id`` (the base model),
  ``backbone_names`` in order of first appearance, an empty id (25 PENDING rows of the public
  file) becomes the backbone named ``(missing)``;
- ``input_len`` = ``prompt_length`` (a float in the file) rounded to the nearest whole number,
  an empty field counts as 0; ``output_len`` = 0 (images, no generated tokens);
- ``arrival_s`` = (gmt_create - earliest gmt_create) in seconds. The public file is in time
  order (checked); a file that is not is sorted stably, so requests of the same second keep
  file order; ``span_s`` = last - first timestamp;
- only the four columns above are parsed and checked; the others are carried by no field of
  :class:`Trace` and are not read;
- ``seed`` is unused; ``window`` is checked but not applied (the caller's shaping cuts it).
"""

from __future__ import annotations

import numpy as np

from fmplex_sim.traces.base import TRACE_FORMATS, Trace
from fmplex_sim.traces.formats._csv import (
    Col,
    check_window,
    data_lines,
    header_columns,
    index_first_seen,
    order_by_time,
    read_table,
    read_text,
    seconds_from_first,
    source_of,
    split_lines,
)

REQUIRED = ("gmt_create", "groupId", "prompt_length", "checkpoint_model_version_id")
OPTIONAL = (
    "predict_type",
    "predict_status",
    "exec_time_seconds",
    "negative_prompt_length",
    "num_images_per_prompt",
    "num_inference_steps",
    "num_lora",
)
MISSING_BACKBONE = "(missing)"


@TRACE_FORMATS.register("alibaba")
def load(path: str, *, seed: int = 0, window: tuple[float, float | None] | None = None) -> Trace:
    """Load the Alibaba GenAI LoRA request trace (see the module docstring for the exact rules)."""
    check_window(path, window)
    lines = split_lines(path, read_text(path))
    cols = header_columns(path, lines[0], REQUIRED, OPTIONAL)
    table = read_table(
        path,
        data_lines(path, lines),
        2,
        len(cols),
        {
            cols["gmt_create"]: Col("gmt_create", "datetime"),
            cols["groupId"]: Col("groupId", "text"),
            cols["prompt_length"]: Col("prompt_length", "round", empty="0"),
            cols["checkpoint_model_version_id"]: Col(
                "checkpoint_model_version_id", "text", empty=MISSING_BACKBONE
            ),
        },
        lines[0].strip(),
    )
    ns = table["gmt_create"]
    arrival = seconds_from_first(ns)
    input_len = np.rint(table["prompt_length"]).astype(np.int32)
    groups = table["groupId"]
    models = table["checkpoint_model_version_id"]
    order = order_by_time(arrival)
    if order is not None:
        arrival, input_len = arrival[order], input_len[order]
        groups = [groups[i] for i in order]
        models = [models[i] for i in order]
    task, task_names = index_first_seen(groups)
    backbone, backbone_names = index_first_seen(models)
    return Trace(
        source=source_of(path),
        format="alibaba",
        arrival_s=arrival,
        input_len=input_len,
        output_len=np.zeros(arrival.shape[0], dtype=np.int32),
        task=task,
        task_names=task_names,
        backbone=backbone,
        backbone_names=backbone_names,
        span_s=float(arrival[-1]),
    )
