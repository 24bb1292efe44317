"""Where sweep points run: in this process, a local process pool, or Ray tasks.

Every backend runs :func:`simulate_point`, which returns a point's results folder as bytes;
only the sweep's own process writes into the sweep folder. So a worker can be stopped at any
moment without leaving anything half-written there, and Ray workers on other machines need no
shared filesystem (they need fmplex installed). ``map(configs)`` yields ``(index, files)`` as
points finish; ``abort()`` stops whatever is still running.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Iterator, Sequence

from fmplex_sim.config import RunConfig
from fmplex_sim.errors import InputError


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a sweep (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM inside the block into :class:`Interrupted`; later
    ones are ignored, so cleanup runs to the end. Outside the main thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM)

    def handler(signum, frame):
        for s in sigs:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def simulate_point(cfg: RunConfig, argv: list[str] | None) -> dict[str, bytes]:
    """Simulate one point; its results folder (the files of ``fmplex-sim run``) as bytes."""
    from fmplex_sim.run import prepare, simulate, write_run

    cfg, wl, info = prepare(cfg)
    out = simulate(cfg, wl)
    with tempfile.TemporaryDirectory(prefix="fmplex-point-") as d:
        write_run(Path(d), cfg, out, argv, workload_info=info)
        return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


class InProcess:
    """Run points one after another in this process (``--workers 1``)."""

    def __init__(self, argv: list[str] | None) -> None:
        self.argv = argv

    def map(self, configs: Sequence[RunConfig]) -> Iterator[tuple[int, dict[str, bytes]]]:
        for i, cfg in enumerate(configs):
            yield i, simulate_point(cfg, self.argv)

    def abort(self) -> None:
        pass


class _WorkerStop(SystemExit):
    """SIGTERM in a pool worker: unwinds (removing its temporary folder), exits quietly."""


def _worker_stop(signum, frame):
    raise _WorkerStop(128 + signum)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the sweep, which stops us
    signal.signal(signal.SIGTERM, _worker_stop)


def _pool_point(cfg: RunConfig, argv: list[str] | None) -> dict[str, bytes]:
    try:
        return simulate_point(cfg, argv)
    except _WorkerStop as e:
        os._exit(e.code)  # the pool would hand us the next point otherwise


class Pool:
    """A local pool of ``workers`` processes (spawned, so nothing of this process leaks in)."""

    #: seconds a terminated worker gets to unwind before it is killed
    ABORT_GRACE_S = 10.0

    def __init__(self, workers: int, argv: list[str] | None) -> None:
        self.workers, self.argv = workers, argv
        self._ex: ProcessPoolExecutor | None = None
        self._before: set = set()

    def map(self, configs: Sequence[RunConfig]) -> Iterator[tuple[int, dict[str, bytes]]]:
        if not configs:
            return
        self._before = set(multiprocessing.active_children())
        self._ex = ProcessPoolExecutor(min(self.workers, len(configs)), multiprocessing.get_context("spawn"),
                                       initializer=_worker_init)
        pending = {self._ex.submit(_pool_point, cfg, self.argv): i for i, cfg in enumerate(configs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield pending.pop(f), f.result()
        self._ex.shutdown()
        self._ex = None

    def abort(self) -> None:
        if self._ex is None:
            return
        mine = set(multiprocessing.active_children()) - self._before
        # The executor's management thread may fail on a result a terminated worker cut short;
        # that is this abort, not an error to print (it printed a traceback under SIGTERM).
        manager = getattr(self._ex, "_executor_manager_thread", None)
        hook = threading.excepthook

        def quiet(args, hook=hook):
            if args.thread is not manager:
                hook(args)
        threading.excepthook = quiet
        for p in mine:
            p.terminate()  # the executor has no public way to stop running work (before 3.14)
        for p in mine:
            # A worker that unwinds may still block on exit (a queue's feeder thread writing
            # to a pipe nobody reads); past a grace period it is killed, so abort never hangs.
            p.join(self.ABORT_GRACE_S)
            if p.is_alive():
                p.kill()
                p.join()
        try:
            self._ex.shutdown(wait=True, cancel_futures=True)
        finally:
            threading.excepthook = hook
        self._ex = None


RAY_CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Raise InputError unless a ``host:port`` (or ``ray://host:port``) address accepts a TCP
    connection within ``timeout_s``. Ray's own connect retries an unreachable cluster for
    minutes, printing warnings; ``local`` and ``auto`` are left to Ray, which answers at once."""
    if address in ("local", "auto"):
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError("--ray", address, "expected host:port, ray://host:port, auto or local")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise InputError("--ray", address, f"cannot reach Ray: {reason}") from None


class Ray:
    """Points as Ray tasks on the cluster at ``address`` (``local``: start one here)."""

    def __init__(self, address: str, workers: int | None, argv: list[str] | None) -> None:
        try:
            import ray
        except ImportError:
            raise InputError("--ray", address, "Ray is not installed; pip install 'fmplex[ray]'") from None
        self.ray, self.argv, self._refs = ray, argv, {}
        check_reachable(address)
        opts = {"num_cpus": workers} if address == "local" and workers else {}
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, **opts)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise InputError("--ray", address, f"cannot start or reach Ray: {str(e).splitlines()[0]}") from None
        self._task = ray.remote(simulate_point)

    def map(self, configs: Sequence[RunConfig]) -> Iterator[tuple[int, dict[str, bytes]]]:
        self._refs = {self._task.remote(cfg, self.argv): i for i, cfg in enumerate(configs)}
        while self._refs:
            done, _ = self.ray.wait(list(self._refs), num_returns=1)
            yield self._refs.pop(done[0]), self.ray.get(done[0])
        self.ray.shutdown()

    def abort(self) -> None:
        for ref in self._refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self._refs = {}
        self.ray.shutdown()


def backend(workers: int | None, ray_address: str | None, argv: list[str] | None):
    """The backend the command line asks for; raises InputError for a bad choice."""
    if workers is not None and workers < 1:
        raise InputError("--workers", str(workers), "must be >= 1")
    if ray_address is not None:
        if not ray_address.strip():
            raise InputError("--ray", "", "name a Ray address (host:port, auto) or local")
        return Ray(ray_address, workers, argv)
    n = workers if workers is not None else (os.cpu_count() or 1)
    return InProcess(argv) if n == 1 else Pool(n, argv)
