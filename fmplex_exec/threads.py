"""Where torch runs on a CPU host: never on the main thread of a serving process.

torch's CPU kernels run their parallel loops on OpenMP (GNU libgomp in the pip wheels). Each
thread that starts a parallel loop keeps a pool of OpenMP worker threads until it exits, and
libgomp counts every pool thread of the process: once the process holds more OpenMP threads
than the host has cores, every pool stops spinning between loops and goes to sleep at once
(libgomp's "throttled" spin count), so each of the hundreds of small loops in a forward pays
a futex wake-up. Measured on a 2-core host (MiniLM, one request of 64 tokens on a PhysicalFM
holding LoRA adapters): 51-56 ms on a serving thread when the main thread had built the
model, 35-41 ms when the model was built on a thread that had exited.

So the harness keeps the main thread free of OpenMP pools: models are built, and profiles
measured, on short-lived threads (:func:`off_main`), and each instance serves on a thread of
its own. One instance per process then runs unthrottled, as a profile measures it; several
co-located replicas in one process (``colocate``, or one ``fmplex`` backbone per model on a
host) run throttled, and the profiler measures that condition: ``contention`` and ``throttle``
rows, and ``wake`` rows with ``beside`` (after an idle gap a throttled instance's batch runs far
slower than one alone in its process, the more so the longer the batch).
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def off_main(fn: Callable[..., T], *args, name: str = "fmplex-torch", **kwargs) -> T:
    """``fn(*args, **kwargs)`` on a new thread that exits when it returns (its OpenMP pool
    with it); returns the result, or re-raises the exception on the calling thread."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised on the calling thread
            box["error"] = e

    th = threading.Thread(target=target, name=name, daemon=True)
    th.start()
    th.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
