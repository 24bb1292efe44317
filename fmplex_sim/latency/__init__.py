"""Latency models (``roofline``, ``profile``) and the factory that builds one from config."""

from __future__ import annotations

from typing import Any

from fmplex_sim.errors import InputError
from fmplex_sim.latency import profile, roofline  # noqa: F401  (register)
from fmplex_sim.latency.base import LATENCY_MODELS, InstanceCost, LatencyModel

__all__ = ["LATENCY_MODELS", "InstanceCost", "LatencyModel", "make_latency_model"]


def make_latency_model(cfg: Any) -> LatencyModel:
    """Build the model a :class:`~fmplex_sim.config.LatencyConfig` names.

    A malformed profile file raises :class:`InputError` naming the file and line.
    """
    cls = LATENCY_MODELS.get(cfg.kind)
    if cfg.kind == "profile":
        try:
            return cls(cfg.path)
        except (ValueError, KeyError) as e:
            msg = str(e).strip("'\"")
            raise InputError("", "", msg if cfg.path in msg else f"{cfg.path}: {msg}") from None
        except OSError as e:
            raise InputError(cfg.path, "", f"cannot read: {e.strerror or e}") from None
    return cls(**dict(cfg.options))
