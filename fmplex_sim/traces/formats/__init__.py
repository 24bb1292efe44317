"""Trace loaders, one module per format; importing this package registers them in TRACE_FORMATS.

=========  ==========================================================================
format     file
=========  ==========================================================================
azure      Azure LLM inference 2023 CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``)
alibaba    Alibaba GenAI 2026 ``lora_request_trace.csv`` (tenants on shared base models)
mooncake   Mooncake FAST'25 JSON lines (``timestamp`` in ms, ``input_length``, ``output_length``)
servegen   ServeGen per-client statistics (folder of ``chunk-<client>-trace.csv``): arrivals drawn
native     FMplex's own CSV ``arrival_s,task,input_len[,output_len]`` (:func:`write_native`)
=========  ==========================================================================

Each registers ``load(path, *, seed=0, window=None) -> Trace``; errors are one-line
:class:`~fmplex_sim.errors.InputError` messages ``<file>: line <n>: <problem>``.
"""

from __future__ import annotations

from fmplex_sim.traces.formats import alibaba, azure, mooncake, native, servegen
from fmplex_sim.traces.formats.native import write_native, write_native_trace

__all__ = ["alibaba", "azure", "mooncake", "native", "servegen", "write_native", "write_native_trace"]
