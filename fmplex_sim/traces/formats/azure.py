"""Azure LLM inference trace 2023 (``AzureLLMInferenceTrace_{code,conv}.csv``).

Format: header ``TIMESTAMP,ContextTokens,GeneratedTokens`` (any column order), one request per
row, ``TIMESTAMP`` like ``2023-11-16 18:15:46.6805900`` (up to 9 fractional digits, no time zone).

Rules:

- every row is a request; ``input_len`` = ContextTokens, ``output_len`` = GeneratedTokens (whole
  numbers >= 0); no task or base-model ids (``task`` and ``backbone`` are None);
- ``arrival_s`` = (TIMESTAMP - earliest TIMESTAMP) in seconds, computed in integer nanoseconds;
  the public files are already in time order; a file that is not is sorted stably (ties keep
  file order); ``span_s`` = last - first timestamp;
- ``seed`` is unused (nothing random); ``window`` is checked but not applied (the whole file is
  parsed anyway; the caller's shaping cuts it).
"""

from __future__ import annotations

import numpy as np

from fmplex_sim.traces.base import TRACE_FORMATS, Trace
from fmplex_sim.traces.formats._csv import (
    Col,
    check_window,
    data_lines,
    header_columns,
    order_by_time,
    read_table,
    read_text,
    seconds_from_first,
    source_of,
    split_lines,
)

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@TRACE_FORMATS.register("azure")
def load(path: str, *, seed: int = 0, window: tuple[float, float | None] | None = None) -> Trace:
    """Load an Azure LLM inference CSV (see the module docstring for the exact rules)."""
    check_window(path, window)
    lines = split_lines(path, read_text(path))
    cols = header_columns(path, lines[0], COLUMNS)
    table = read_table(
        path,
        data_lines(path, lines),
        2,
        len(cols),
        {
            cols["TIMESTAMP"]: Col("TIMESTAMP", "datetime"),
            cols["ContextTokens"]: Col("ContextTokens", "whole"),
            cols["GeneratedTokens"]: Col("GeneratedTokens", "whole"),
        },
        lines[0].strip(),
    )
    ns = table["TIMESTAMP"]
    arrival = seconds_from_first(ns)
    input_len = table["ContextTokens"].astype(np.int32)
    output_len = table["GeneratedTokens"].astype(np.int32)
    order = order_by_time(arrival)
    if order is not None:
        arrival, input_len, output_len = arrival[order], input_len[order], output_len[order]
    return Trace(
        source=source_of(path),
        format="azure",
        arrival_s=arrival,
        input_len=input_len,
        output_len=output_len,
        span_s=float(arrival[-1]),
    )
