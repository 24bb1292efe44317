"""Run configuration: YAML file -> overrides -> typed, validated :class:`RunConfig`.

Every error names the file, the key path (``tasks[3].arrival.cv``) and what is wrong, as an
:class:`~fmplex_sim.errors.InputError`. Unknown keys are errors too, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fmplex_sim import costs
from fmplex_sim.catalog import BACKBONES, DEVICES
from fmplex_sim.errors import InputError
from fmplex_sim.specs import ArrivalSpec, ClusterSpec, ExtensionSpec, TaskSpec, prefix_tokens

SYSTEM_PRESETS: dict[str, dict[str, Any]] = {
    "spatial": {"placement": "spatial", "scheduler": "fifo"},
    "colocate": {"placement": "colocate", "scheduler": "fifo"},
    "fmplex": {"placement": "fmplex", "scheduler": "bfq"},
}
PLACEMENTS = ("spatial", "colocate", "fmplex")
SCHEDULER_NAMES = ("fifo", "rr", "wfq", "vtc", "bfq")
MAX_GPUS = 4096  # guard against a typo allocating per-device state for millions of devices
MAX_EXPECTED_REQUESTS = 50_000_000  # guard against a rate or duration that cannot fit in memory
MAX_CV = 1000.0  # inter-arrival CV (and a trace's burstiness scale); past it Gamma draws degenerate
MAX_RATE_SCALE = 1e6  # a trace's time compression (or, inverted, stretch); past it gaps under- or overflow
MIN_WEIGHT = 1e-6  # task weights lie in [MIN_WEIGHT, 1 / MIN_WEIGHT]; past them fairness metrics overflow
MAX_TASKS = 100_000  # tasks one run may make from templates
MAX_ONOFF_CYCLES = 10_000_000  # ON/OFF cycles in one task's stream (each is kept in memory)
MAX_PHASE_S = 1e12  # an ON or OFF phase (about 31,700 years); past it on_s + off_s overflows
MAX_CONFIG_BYTES = 64 * 2**20  # a config file larger than this is not one


UNKNOWN_SYSTEM_HINT = f"use {', '.join(SYSTEM_PRESETS)} or PLACEMENT-SCHEDULER, e.g. fmplex-wfq"


def system_parts(name: str) -> dict[str, str] | None:
    """``{placement, scheduler}`` of a system name: a preset or ``PLACEMENT-SCHEDULER``; None
    for anything else."""
    if name in SYSTEM_PRESETS:
        return dict(SYSTEM_PRESETS[name])
    placement, _, scheduler = name.partition("-")
    if placement in PLACEMENTS and scheduler in SCHEDULER_NAMES:
        return {"placement": placement, "scheduler": scheduler}
    return None


#: How spatial slices of a GPU are made (``SystemConfig.slicing``).
SLICINGS = ("mig", "processes")


@dataclass(frozen=True)
class SystemConfig:
    """A system: a placement plus a scheduler, with their knobs."""

    name: str = "fmplex"  # label in results ("fmplex", "spatial", or a custom name)
    placement: str = "fmplex"  # spatial | colocate | fmplex
    scheduler: str = "bfq"  # fifo | rr | wfq | vtc | bfq
    max_batch: int = 32  # most requests in one batch
    max_wait_ms: float = 0.0  # bounded wait to grow a batch (bfq)
    cross_task: bool | None = None  # allow batches that mix tasks (None: scheduler default)
    slices_per_gpu: int = 7  # spatial: partitions per GPU (default from the config: the device's max_slices)
    # spatial on a GPU: "mig", hardware partitions (a slice runs at its share of the GPU, alone);
    # "processes", a process per slice on the whole GPU, time-sliced by the driver (no MIG or
    # MPS: what fmplex-exec runs on CUDA). CPU slices are pinned cores either way.
    slicing: str = "mig"
    context_switch_ms: float | None = None  # colocate: switch cost (None: device default)
    target_util: float = 0.7  # fmplex: add a backbone replica past this predicted utilization
    on_task_end: str = "drain"  # drain | reject: fate of queued requests at a task's end_s
    pipeline_depth: int = 2  # batches in flight per instance: host prep overlaps device work
    spread_idle: bool = True  # fmplex: give devices that would stay idle extra backbone copies
    light_first: bool = False  # bfq: rank by virtual deadline, short batches for newly backlogged tasks

    def scheduler_options(self) -> dict:
        """Keyword arguments for :func:`~fmplex_sim.policies.scheduling.make_scheduler`.

        ``light_first`` goes to bfq only: a config that sets it can still be compared under
        systems with other schedulers (``with_system``), which do not have it."""
        opts: dict = dict(cross_task=self.cross_task, max_wait_s=self.max_wait_ms / 1000.0)
        if self.light_first and self.scheduler == "bfq":
            opts["light_first"] = True
        return opts

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return d


@dataclass(frozen=True)
class LatencyConfig:
    """Which latency model to use."""

    kind: str = "roofline"  # roofline | profile
    path: str = ""  # profile: CSV file (resolved path)
    options: tuple[tuple[str, float | str], ...] = ()  # roofline: overrides (efficiencies, lora_kernel)

    def to_dict(self) -> Any:
        if self.kind == "profile":
            return {"profile": self.path}
        if self.options:
            return {"roofline": dict(self.options)}
        return "roofline"


@dataclass(frozen=True)
class TraceSource:
    """A trace file to replay."""

    format: str  # loader name (azure, alibaba, mooncake, servegen, native)
    path: str  # file, or folder for servegen
    input_len: int | None = None  # servegen: tokens per request (its statistics carry none)

    def to_dict(self) -> dict:
        d = {"format": self.format, "path": self.path}
        if self.input_len is not None:
            d["input_len"] = self.input_len
        return d


@dataclass(frozen=True)
class WorkloadSpec:
    """Where requests come from: per-task synthetic arrivals, or a trace and its shaping."""

    trace: TraceSource | None = None  # replay this trace instead of per-task arrivals
    task_count: int | None = None  # make this many tasks from the task templates
    zipf: float | None = None  # popularity across tasks (None: uniform)
    map_backbones: bool = False  # alibaba: a tenant's base model picks its template's backbone
    total_rps: float | None = None  # synthetic: total rate split across tasks by popularity
    rate_scale: float = 1.0  # trace: 2.0 = the same requests in half the time
    burstiness_scale: float = 1.0  # trace: multiply the inter-arrival CV
    window_start_s: float = 0.0  # trace: span to keep, in the trace's own time
    window_duration_s: float | None = None  # None: to the end of the trace
    max_requests: int | None = None  # trace: keep the first N requests

    def to_dict(self) -> dict | None:
        d: dict = {}
        if self.trace is not None:
            d["trace"] = self.trace.to_dict()
        t: dict = {}
        if self.task_count is not None:
            t["count"] = self.task_count
        if self.zipf is not None:
            t["popularity"] = {"zipf": self.zipf}
        if self.map_backbones:
            t["map_backbones"] = True
        if t:
            d["tasks"] = t
        if self.total_rps is not None:
            d["total_rps"] = self.total_rps
        if self.trace is not None:
            d["rate_scale"] = self.rate_scale
            d["burstiness_scale"] = self.burstiness_scale
            d["window"] = {"start_s": self.window_start_s, "duration_s": self.window_duration_s}
            if self.max_requests is not None:
                d["max_requests"] = self.max_requests
        return d or None


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; saved next to its results as ``config.yaml``."""

    seed: int = 0  # seeds every random stream of the run
    duration_s: float | None = 60.0  # requests arrive in [0, duration_s); None: the trace's span
    drain_s: float = 30.0  # simulated time after duration_s to finish queued work
    cluster: ClusterSpec = field(default_factory=lambda: ClusterSpec("H100-80GB", 1))
    latency_model: LatencyConfig = field(default_factory=LatencyConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    tasks: tuple[TaskSpec, ...] = ()  # the run's tasks (templates expanded)
    source: str = "<config>"  # file the config came from, for error messages
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)  # trace and shaping
    templates: tuple[TaskSpec, ...] = ()  # the tasks as written (== tasks without workload.tasks)
    systems: tuple[str, ...] = ()  # systems compare/validate run by default (empty: all presets)

    def to_dict(self) -> dict:
        d = {
            "seed": self.seed,
            "duration_s": self.duration_s,
            "drain_s": self.drain_s,
            "cluster": {"device": self.cluster.device, "gpus": self.cluster.gpus},
            "latency_model": self.latency_model.to_dict(),
            "system": self.system.to_dict(),
        }
        wl = self.workload.to_dict()
        if wl is not None:
            d["workload"] = wl
        if self.systems:
            d["systems"] = list(self.systems)
        d["tasks"] = [t.to_dict() for t in (self.templates or self.tasks)]
        return d

    def with_system(self, name: str) -> "RunConfig":
        """The same config under system ``name``, keeping this config's system knobs.

        ``name`` is a preset (``spatial``, ``colocate``, ``fmplex``) or ``PLACEMENT-SCHEDULER``
        (for example ``fmplex-wfq``), or this config's own system's name, custom names included
        (then it is this config). Raises InputError for anything else.
        """
        if name == self.system.name:
            return self
        parts = system_parts(name)
        if parts is None:
            raise InputError("--systems", name, f"unknown system ({UNKNOWN_SYSTEM_HINT})")
        return replace(self, system=replace(self.system, name=name, **parts))


# ----------------------------------------------------------------------------- loading
def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read ``path``, apply ``key=value`` overrides, validate. Raises InputError."""
    p = Path(path)
    src = str(path)
    if not src.strip():
        raise InputError("CONFIG", "", "name a config file (got an empty path)")
    raw = read_yaml_file(p, src)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(src, "", f"must be a mapping of keys, got {_kind(raw)}")
    for item in overrides:
        apply_override(raw, item)
    return parse_config(raw, src, base_dir=p.parent)


def read_yaml_file(p: Path, src: str) -> Any:
    """The YAML document in file ``p`` (named ``src`` in errors); InputError if it is missing,
    a folder, a device or pipe, too large, binary, not UTF-8 or not YAML."""
    try:
        if p.exists() and not p.is_dir() and not p.is_file():
            raise InputError(src, "", "is not a regular file (a device, pipe or socket?)")
        if p.is_file() and p.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(src, "", f"is {p.stat().st_size:,} bytes; a YAML file here is at most {MAX_CONFIG_BYTES:,}")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(src, "", "no such file") from None
    except IsADirectoryError:
        raise InputError(src, "", "is a directory, not a YAML file") from None
    except UnicodeDecodeError as e:
        raise InputError(src, "", f"not a UTF-8 text file (byte {e.start}); is it binary?") from None
    except OSError as e:
        raise InputError(src, "", f"cannot read: {e.strerror or e.__class__.__name__}") from None
    if "\x00" in text:
        raise InputError(src, "", "not a text file (contains NUL bytes); is it binary?")
    return _load_yaml(text, src)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (the second would silently win)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    # Duplicates among the keys written here; keys a merge (``<<: *anchor``) brings in may be
    # overridden by them, as YAML's merge means.
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {first.line + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _construct_int(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> int:
    # Python refuses to convert integers of more than 4300 digits (ValueError): name the line.
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"the number {node.value[:12]}... has too many digits", node.start_mark
        ) from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


MAX_YAML_VALUES = 1_000_000  # values a config may expand to through aliases (``*anchor``)


def _expanded_size(obj: Any, limit: int) -> int:
    """How many values ``obj`` holds once every alias is expanded (shared lists and mappings
    counted each time they are used), or more than ``limit`` when it holds more; linear in the
    distinct objects, so a few hundred bytes of nested aliases ("billion laughs") cost nothing."""
    memo: dict[int, int] = {}

    def size(o: Any) -> int:
        if not isinstance(o, (list, dict)):
            return 1
        got = memo.get(id(o))
        if got is None:
            items = [*o.keys(), *o.values()] if isinstance(o, dict) else o
            memo[id(o)] = 0  # a recursive alias counts once
            got = 1
            for x in items:
                got += size(x)
                if got > limit:
                    break
            memo[id(o)] = got
        return got

    try:
        return size(obj)
    except RecursionError:
        return limit + 1


def _load_yaml(text: str, src: str) -> Any:
    """Parse YAML text; any syntax problem becomes one InputError naming the line."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
        if _expanded_size(data, MAX_YAML_VALUES) > MAX_YAML_VALUES:
            raise InputError(src, "", f"its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; "
                             "is it a config?")
        return data
    except yaml.reader.ReaderError as e:  # a control character: binary data or a stray byte
        raise InputError(src, f"line {text.count(chr(10), 0, e.position) + 1}", f"invalid YAML: {e.reason}"
                         f" (character {e.character:#x}); is it a text file?") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise InputError(src, where, f"invalid YAML: {problem}") from None
    except RecursionError:
        raise InputError(src, _deepest_line(text), "invalid YAML: nested too deeply") from None


def _deepest_line(text: str) -> str:
    """``line N`` where flow brackets (``[``, ``{``) first nest deepest in ``text``, or ``""``."""
    depth = best = 0
    line = at = 1
    for ch in text:
        if ch == "\n":
            line += 1
        elif ch in "[{":
            depth += 1
            if depth > best:
                best, at = depth, line
        elif ch in "]}":
            depth -= 1
    return f"line {at}" if best else ""


_KEY_RE = re.compile(r"[A-Za-z_][\w-]*(?:\[\d+\])*(?:\.[A-Za-z_][\w-]*(?:\[\d+\])*)*")


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``--set key.path=value`` (value parsed as YAML) to ``raw`` in place."""
    if "=" not in item:
        raise InputError("--set", item, "expected key=value, e.g. cluster.gpus=4")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key:
        raise InputError("--set", item, "empty key (expected key=value)")
    if not _KEY_RE.fullmatch(key):
        raise InputError(
            "--set", key, "bad key syntax (expected names joined by dots with [N] list indexes, "
            "e.g. tasks[0].arrival.rate_rps)"
        )
    if value == "":
        parsed: Any = ""
    else:
        try:
            parsed = yaml.load(value, Loader=_UniqueKeyLoader)  # noqa: S506
            if _expanded_size(parsed, MAX_YAML_VALUES) > MAX_YAML_VALUES:
                raise InputError("--set", key, f"value expands to more than {MAX_YAML_VALUES:,} values")
        except (yaml.YAMLError, RecursionError):
            shown = repr(value) if len(value) <= 60 else repr(value[:40]) + f"... ({len(value)} characters)"
            raise InputError("--set", key, f"value {shown} is not valid YAML") from None
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", key)
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part.startswith("["):
            idx = int(part[1:-1])
            if not isinstance(node, list):
                raise InputError("--set", key, f"{part} indexes something that is not a list")
            if idx >= len(node):
                raise InputError("--set", key, f"no list element {part} (the list has {len(node)})")
            if last:
                node[idx] = parsed
            else:
                node = node[idx]
        else:
            if not isinstance(node, dict):
                raise InputError("--set", key, f"{part!r} is not inside a mapping")
            if last:
                node[part] = parsed
            else:
                nxt = node.get(part)
                if not isinstance(nxt, (dict, list)):
                    # e.g. --set system.max_batch=8 when system is a preset name
                    nxt = {"name": nxt} if isinstance(nxt, str) and part == "system" else {}
                    node[part] = nxt
                node = nxt


class _Ctx:
    def __init__(self, source: str, base_dir: Path | None = None) -> None:
        self.source = source
        self.base_dir = base_dir

    def err(self, where: str, problem: str) -> InputError:
        return InputError(self.source, where, problem)


def parse_config(raw: dict, source: str = "<config>", base_dir: Path | None = None) -> RunConfig:
    """Validate a raw mapping into a RunConfig. Raises InputError naming the key path."""
    c = _Ctx(source, base_dir)
    _known(raw, c, "", {"seed", "duration_s", "drain_s", "cluster", "latency_model", "system",
                        "systems", "tasks", "workload"})
    seed = _int(raw.get("seed", 0), c, "seed", lo=0)
    workload = _workload(raw.get("workload"), c)
    if workload.trace is not None and raw.get("duration_s") is None:
        duration = None  # the shaped trace's span, set when the trace is read
    else:
        duration = _num(raw.get("duration_s", 60.0), c, "duration_s", positive=True)
    drain = _num(raw.get("drain_s", 30.0), c, "drain_s", lo=0.0)
    cluster = _cluster(raw.get("cluster", {}), c)
    latency = _latency(raw.get("latency_model", "roofline"), c)
    system = _system(raw.get("system", "fmplex"), c, "system", cluster.device)
    if "tasks" not in raw:
        raise c.err("tasks", "missing: list at least one task")
    tasks_raw = raw["tasks"]
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise c.err("tasks", f"must be a non-empty list of tasks, got {_kind(tasks_raw)}")
    templates = tuple(_task(t, c, f"tasks[{i}]") for i, t in enumerate(tasks_raw))
    seen: dict[str, int] = {}
    for i, t in enumerate(templates):
        if t.name in seen:
            raise c.err(f"tasks[{i}].name", f"duplicate task name {t.name!r} (also tasks[{seen[t.name]}])")
        seen[t.name] = i
    tasks = expand_tasks(templates, workload)
    if workload.task_count is not None:
        names = {t.name for t in tasks}
        for i, t in enumerate(templates):
            if t.name in names:
                raise c.err(f"tasks[{i}].name", f"{t.name!r} clashes with a generated task name")
    if duration is not None:
        check_updates(tasks, duration, source)
    if workload.trace is None:
        _check_volume(tasks, duration, c)
    if latency.kind == "profile":
        _check_profile(latency.path, tasks, cluster.device, c)
    systems = _systems(raw.get("systems"), c)
    return RunConfig(seed, duration, drain, cluster, latency, system, tasks, source, workload, templates,
                     systems)


def _systems(v: Any, c: _Ctx) -> tuple[str, ...]:
    """``systems``: the systems ``compare`` and ``validate`` run when none are named."""
    if v is None:
        return ()
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise c.err("systems", f"must be a non-empty list of system names, got {_kind(v)}")
    for i, name in enumerate(v):
        if name in v[:i]:
            raise c.err(f"systems[{i}]", f"{name!r} is listed twice")
        if system_parts(name) is None:
            raise c.err(f"systems[{i}]", f"unknown system {name!r} ({UNKNOWN_SYSTEM_HINT})")
    return tuple(v)


def check_updates(tasks: tuple[TaskSpec, ...], duration: float, source: str) -> None:
    """A task's start and update must fall within the run: before ``duration_s``, while
    requests still arrive (a trace config is checked once the trace has set its duration)."""
    for i, t in enumerate(tasks):
        if t.start_s > 0 and t.start_s >= duration:
            raise InputError(source, f"tasks[{i}].start_s", f"must be before duration_s ({duration:g}), got "
                             f"{t.start_s:g}: the task would never receive a request")
        if t.update_s is not None and t.update_s >= duration:
            raise InputError(source, f"tasks[{i}].update_s",
                             f"must be before duration_s ({duration:g}), got {t.update_s:g}")


def _check_volume(tasks: tuple[TaskSpec, ...], duration: float, c: _Ctx) -> None:
    """Refuse a load whose request stream could not be held in memory."""
    total = 0.0
    for i, t in enumerate(tasks):
        active = max(0.0, min(duration, t.end_s if t.end_s is not None else duration) - t.start_s)
        n = t.arrival.rate_rps * active
        a = t.arrival
        if a.process == "onoff" and a.rate_rps > 0 and active / (a.on_s + a.off_s) > MAX_ONOFF_CYCLES:
            raise c.err(
                f"tasks[{i}].arrival.on_s",
                f"on_s + off_s = {a.on_s + a.off_s:g} s cuts {active:g} s into about "
                f"{active / (a.on_s + a.off_s):.3g} cycles (at most {MAX_ONOFF_CYCLES:,}); lengthen on_s or off_s",
            )
        if n > MAX_EXPECTED_REQUESTS:
            raise c.err(
                f"tasks[{i}].arrival.rate_rps",
                f"{t.arrival.rate_rps:g} req/s over {active:g} s is about {n:.3g} requests "
                f"(at most {MAX_EXPECTED_REQUESTS:,} per run); lower rate_rps or duration_s",
            )
        total += n
    if total > MAX_EXPECTED_REQUESTS:
        raise c.err(
            "tasks", f"together expect about {total:.3g} requests in duration_s={duration:g} "
            f"(at most {MAX_EXPECTED_REQUESTS:,} per run); lower rates or duration_s",
        )


def _check_profile(path: str, tasks: tuple[TaskSpec, ...], device: str, c: _Ctx) -> None:
    """Read the profile now, so a malformed file or a missing backbone fails before any work."""
    from fmplex_sim.latency.profile import ProfileModel

    try:
        model = ProfileModel(path)
    except (ValueError, KeyError) as e:
        msg = str(e).strip("'\"")
        raise c.err("latency_model.profile", msg if path in msg else f"{path}: {msg}") from None
    except OSError as e:
        raise c.err("latency_model.profile", f"{path}: cannot read: {e.strerror or e}") from None
    have = {(r.backbone, r.device) for r in model.rows if r.kind == "forward"}
    for i, t in enumerate(tasks):
        if (t.backbone, device) not in have:
            raise c.err(
                f"tasks[{i}].backbone",
                f"profile {path} has no forward rows for {t.backbone} on {device}",
            )


# ----------------------------------------------------------------------------- sections
def _cluster(v: Any, c: _Ctx) -> ClusterSpec:
    if not isinstance(v, dict):
        raise c.err("cluster", f"must be a mapping like {{device: H100-80GB, gpus: 2}}, got {_kind(v)}")
    _known(v, c, "cluster", {"device", "gpus"})
    device = v.get("device", "H100-80GB")
    if not isinstance(device, str) or device not in DEVICES:
        raise c.err("cluster.device", f"unknown device {device!r} (known: {', '.join(DEVICES)})")
    gpus = _int(v.get("gpus", 1), c, "cluster.gpus", lo=1)
    if gpus > MAX_GPUS:
        raise c.err("cluster.gpus", f"must be at most {MAX_GPUS}, got {gpus}")
    return ClusterSpec(device, gpus)


def _latency(v: Any, c: _Ctx) -> LatencyConfig:
    if v == "roofline":
        return LatencyConfig()
    if isinstance(v, dict) and len(v) == 1 and "profile" in v:
        p = v["profile"]
        if not isinstance(p, str) or not p:
            raise c.err("latency_model.profile", "must be a path to a profile CSV")
        path = Path(p)
        if not path.is_absolute() and c.base_dir is not None and not path.exists():
            if (c.base_dir / path).exists():
                path = c.base_dir / path
        if not path.exists():
            raise c.err("latency_model.profile", f"no such file {p!r}")
        if not path.is_file():
            raise c.err("latency_model.profile", f"{p!r} is not a file")
        return LatencyConfig("profile", str(path.resolve()))
    if isinstance(v, dict) and len(v) == 1 and "roofline" in v:
        opts = v["roofline"] or {}
        if not isinstance(opts, dict):
            raise c.err("latency_model.roofline", "must be a mapping of efficiency overrides")
        allowed = {"compute_eff", "memory_eff", "kernel_launch_us", "batch_overhead_ms", "lora_kernel"}
        _known(opts, c, "latency_model.roofline", allowed)
        vals = []
        for k in sorted(opts):
            if k == "lora_kernel":
                if opts[k] not in ("auto", "segmented", "loop"):
                    raise c.err("latency_model.roofline.lora_kernel",
                                f"must be auto, segmented or loop, got {opts[k]!r}")
                vals.append((k, opts[k]))
            else:
                x = _num(opts[k], c, f"latency_model.roofline.{k}", lo=0.0)
                if k.endswith("_eff") and not 0 < x <= 1:
                    raise c.err(f"latency_model.roofline.{k}", f"must be in (0, 1], got {x}")
                vals.append((k, x))
        vals = tuple(vals)
        return LatencyConfig("roofline", "", vals)
    raise c.err("latency_model", f"must be 'roofline' or {{profile: PATH}}, got {v!r}")


def _system(v: Any, c: _Ctx, where: str, device: str = "H100-80GB") -> SystemConfig:
    max_slices = DEVICES[device].max_slices
    if isinstance(v, str):
        parts = system_parts(v)
        if parts is None:
            raise c.err(where, f"unknown system {v!r} ({UNKNOWN_SYSTEM_HINT})")
        return SystemConfig(name=v, slices_per_gpu=max_slices, **parts)
    if not isinstance(v, dict):
        raise c.err(where, f"must be a system name or a mapping, got {_kind(v)}")
    _known(v, c, where, set(SystemConfig.__dataclass_fields__))
    base: dict[str, Any] = {}
    name = v.get("name")
    if name is not None:
        bad = _name_problem(name)
        if bad:
            raise c.err(f"{where}.name", bad)
        base = system_parts(name) or {}  # a preset or PLACEMENT-SCHEDULER: its parts
    placement = v.get("placement", base.get("placement", "fmplex"))
    if placement not in PLACEMENTS:
        raise c.err(f"{where}.placement", f"unknown placement {placement!r} (known: {', '.join(PLACEMENTS)})")
    scheduler = v.get("scheduler", base.get("scheduler", SYSTEM_PRESETS[placement]["scheduler"]))
    if scheduler not in SCHEDULER_NAMES:
        raise c.err(f"{where}.scheduler", f"unknown scheduler {scheduler!r} (known: {', '.join(SCHEDULER_NAMES)})")
    if name is None:
        name = placement if scheduler == SYSTEM_PRESETS[placement]["scheduler"] else f"{placement}-{scheduler}"
    elif base and (placement, scheduler) != (base["placement"], base["scheduler"]):
        raise c.err(f"{where}.name", f"{name!r} names the {base['placement']} placement with "
                    f"{base['scheduler']}, not {placement} with {scheduler}; results would carry the "
                    "wrong label: choose another name")
    cross = v.get("cross_task")
    if cross is not None and not isinstance(cross, bool):
        raise c.err(f"{where}.cross_task", f"must be true or false, got {cross!r}")
    on_end = v.get("on_task_end", "drain")
    if on_end not in ("drain", "reject"):
        raise c.err(f"{where}.on_task_end", f"must be 'drain' or 'reject', got {on_end!r}")
    light_first = _bool(v.get("light_first", False), c, f"{where}.light_first")
    if light_first and scheduler != "bfq":
        raise c.err(f"{where}.light_first", f"only the bfq scheduler has it, this system uses {scheduler!r}")
    cs = v.get("context_switch_ms")
    target = _num(v.get("target_util", 0.7), c, f"{where}.target_util", positive=True)
    if target > 1.0:
        raise c.err(f"{where}.target_util", f"must be in (0, 1], got {target}")
    slices = _int(v.get("slices_per_gpu", max_slices), c, f"{where}.slices_per_gpu", lo=1)
    slicing = v.get("slicing", "mig")
    if slicing not in SLICINGS:
        raise c.err(f"{where}.slicing", f"must be one of {', '.join(SLICINGS)}, got {slicing!r}")
    if slices > max_slices:
        raise c.err(f"{where}.slices_per_gpu", f"{device} can be cut into at most {max_slices} slice(s), got {slices}")
    return SystemConfig(
        name=name,
        placement=placement,
        scheduler=scheduler,
        max_batch=_int(v.get("max_batch", 32), c, f"{where}.max_batch", lo=1),
        max_wait_ms=_num(v.get("max_wait_ms", 0.0), c, f"{where}.max_wait_ms", lo=0.0),
        cross_task=cross,
        slices_per_gpu=slices,
        slicing=slicing,
        context_switch_ms=None if cs is None else _num(cs, c, f"{where}.context_switch_ms", lo=0.0),
        target_util=target,
        on_task_end=on_end,
        pipeline_depth=_int(v.get("pipeline_depth", 2), c, f"{where}.pipeline_depth", lo=1),
        spread_idle=_bool(v.get("spread_idle", True), c, f"{where}.spread_idle"),
        light_first=light_first,
    )


_TASK_KEYS = {
    "name", "backbone", "extensions", "weight", "slo_ms", "input_len", "output_len",
    "arrival", "start_s", "end_s", "update_s", "max_queue_ms",
}


MAX_NAME_CHARS = 100  # task and system names: they name results folders and CSV fields
MAX_NAME_BYTES = 200  # the same in UTF-8 bytes (100 CJK characters take 300; a folder name 255 at most)


def _name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a task or system (it becomes a folder name and a CSV field),
    or None."""
    if not isinstance(name, str) or not name.strip():
        return f"must be a non-empty name, got {name!r}"
    if len(name) > MAX_NAME_CHARS:
        return f"is {len(name)} characters long; a name is at most {MAX_NAME_CHARS}"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        return (f"takes {size} bytes in UTF-8; a name is at most {MAX_NAME_BYTES} (it names a folder, "
                "and file systems allow 255)")
    if name in (".", ".."):
        return f"{name!r} cannot name a results folder; choose another name"
    for ch in name:
        if ch in ",/\\" or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return (f"{ascii(name)} holds {ascii(ch)}; a name has no commas, slashes, control "
                    "characters, line breaks or unpaired surrogates")
    return None


def _task(v: Any, c: _Ctx, where: str) -> TaskSpec:
    if not isinstance(v, dict):
        raise c.err(where, f"must be a mapping, got {_kind(v)}")
    _known(v, c, where, _TASK_KEYS)
    name = v.get("name")
    bad = _name_problem(name)
    if bad:
        raise c.err(f"{where}.name", bad)
    if "backbone" not in v:
        raise c.err(f"{where}.backbone", "missing: name the shared backbone (see `fmplex-sim catalog`)")
    bb = v.get("backbone")
    if not isinstance(bb, str) or bb not in BACKBONES:
        raise c.err(f"{where}.backbone", f"unknown backbone {bb!r} (see `fmplex-sim catalog`)")
    exts_raw = v.get("extensions", [])
    if exts_raw is None:
        exts_raw = []
    if not isinstance(exts_raw, list):
        raise c.err(f"{where}.extensions", f"must be a list, got {_kind(exts_raw)}")
    exts = tuple(_extension(e, c, f"{where}.extensions[{i}]", bb) for i, e in enumerate(exts_raw))
    kinds = [e.kind for e in exts]
    for k in set(kinds):
        if kinds.count(k) > 1:
            raise c.err(f"{where}.extensions", f"more than one {k!r} extension")
    start = _num(v.get("start_s", 0.0), c, f"{where}.start_s", lo=0.0)
    end = v.get("end_s")
    if end is not None:
        end = _num(end, c, f"{where}.end_s", lo=0.0)
        if end <= start:
            raise c.err(f"{where}.end_s", f"must be after start_s ({start}), got {end}")
    update = v.get("update_s")  # None: the task keeps its first version
    if update is not None:
        update = _num(update, c, f"{where}.update_s", positive=True)
        if update <= start:
            raise c.err(f"{where}.update_s", f"must be after start_s ({start}), got {update}")
        if end is not None and update >= end:
            raise c.err(f"{where}.update_s", f"must be before end_s ({end}), got {update}")
    mq = v.get("max_queue_ms")  # None: the default, 10 x slo_ms (TaskSpec.queue_limit_ms)
    backbone = BACKBONES[bb]
    input_len = _int(v.get("input_len", backbone.default_input_len), c, f"{where}.input_len", lo=1)
    if input_len > backbone.max_positions:
        raise c.err(f"{where}.input_len", f"{input_len} exceeds {bb}'s {backbone.max_positions} positions")
    output_len = _int(v.get("output_len", 0), c, f"{where}.output_len", lo=0)
    if output_len and not backbone.decoder:
        raise c.err(f"{where}.output_len", f"{bb} is not a decoder and generates no tokens; use 0, got {output_len}")
    if input_len + output_len > backbone.max_positions:
        raise c.err(
            f"{where}.output_len",
            f"input_len + output_len = {input_len + output_len} exceeds {bb}'s {backbone.max_positions} positions",
        )
    prefix = prefix_tokens(exts)
    if prefix and input_len + output_len + prefix > backbone.max_positions:
        raise c.err(f"{where}.extensions", f"a prefix of {prefix} virtual tokens before input_len + output_len = "
                    f"{input_len + output_len} exceeds {bb}'s {backbone.max_positions} positions")
    return TaskSpec(
        name=name,
        backbone=bb,
        extensions=exts,
        weight=_num(v.get("weight", 1.0), c, f"{where}.weight", positive=True, lo=MIN_WEIGHT, hi=1 / MIN_WEIGHT),
        slo_ms=_num(v.get("slo_ms", 100.0), c, f"{where}.slo_ms", positive=True),
        input_len=input_len,
        output_len=output_len,
        arrival=_arrival(v.get("arrival", {}), c, f"{where}.arrival"),
        start_s=start,
        end_s=end,
        update_s=update,
        max_queue_ms=None if mq is None else _num(mq, c, f"{where}.max_queue_ms", positive=True),
    )


_EXT_KEYS = {
    "lora": {"kind", "rank", "targets", "alpha", "version"},
    "prefix": {"kind", "virtual_tokens", "version"},
    "head": {"kind", "outputs", "version"},
    "encoder": {"kind", "params", "version"},
}
_LORA_TARGETS = {"q", "k", "v", "o", "gate", "up", "down"}


def _extension(v: Any, c: _Ctx, where: str, backbone: str) -> ExtensionSpec:
    if not isinstance(v, dict):
        raise c.err(where, f"must be a mapping like {{kind: lora, rank: 8}}, got {_kind(v)}")
    kind = v.get("kind")
    if not isinstance(kind, str) or kind not in _EXT_KEYS:
        raise c.err(f"{where}.kind", f"unknown extension {kind!r} (known: {', '.join(_EXT_KEYS)})")
    _known(v, c, where, _EXT_KEYS[kind])
    version = _int(v.get("version", 1), c, f"{where}.version", lo=1)
    if kind == "lora":
        targets = v.get("targets", ["q", "v"])
        if not isinstance(targets, list) or not targets or not all(
            isinstance(t, str) and t in _LORA_TARGETS for t in targets
        ):
            raise c.err(f"{where}.targets", f"must be a list from {sorted(_LORA_TARGETS)}, got {targets!r}")
        if len(set(targets)) != len(targets):
            raise c.err(f"{where}.targets", f"lists a projection twice: {targets!r}")
        for t in targets:
            try:
                costs.lora_shape(BACKBONES[backbone], t)
            except ValueError as e:
                raise c.err(f"{where}.targets", str(e)) from None
        return ExtensionSpec(
            "lora",
            rank=_int(v.get("rank", 8), c, f"{where}.rank", lo=1),
            targets=tuple(targets),
            alpha=_num(v.get("alpha", 16.0), c, f"{where}.alpha", positive=True),
            version=version,
        )
    if kind == "prefix":
        vt = _int(v.get("virtual_tokens", 16), c, f"{where}.virtual_tokens", lo=1)
        return ExtensionSpec("prefix", virtual_tokens=vt, version=version)
    if kind == "head":
        return ExtensionSpec("head", outputs=_int(v.get("outputs", 2), c, f"{where}.outputs", lo=1), version=version)
    return ExtensionSpec("encoder", params=_int(v.get("params", 0), c, f"{where}.params", lo=1), version=version)


_ARRIVAL_KEYS = {
    "poisson": {"process", "rate_rps"},
    "gamma": {"process", "rate_rps", "cv"},
    "onoff": {"process", "rate_rps", "cv", "on_s", "off_s"},
    "diurnal": {"process", "rate_rps", "amplitude", "period_s", "phase_s"},
}


def _arrival(v: Any, c: _Ctx, where: str) -> ArrivalSpec:
    if not isinstance(v, dict):
        raise c.err(where, f"must be a mapping like {{process: poisson, rate_rps: 10}}, got {_kind(v)}")
    process = v.get("process", "poisson")
    if not isinstance(process, str) or process not in _ARRIVAL_KEYS:
        raise c.err(f"{where}.process", f"unknown process {process!r} (known: {', '.join(_ARRIVAL_KEYS)})")
    _known(v, c, where, _ARRIVAL_KEYS[process])
    amplitude = _num(v.get("amplitude", 0.5), c, f"{where}.amplitude", lo=0.0)
    if amplitude > 1.0:
        raise c.err(f"{where}.amplitude", f"must be in [0, 1], got {amplitude}")
    return ArrivalSpec(
        process=process,
        rate_rps=_num(v.get("rate_rps", 1.0), c, f"{where}.rate_rps", lo=0.0),
        cv=_num(v.get("cv", 1.0), c, f"{where}.cv", positive=True, lo=1 / MAX_CV, hi=MAX_CV),
        on_s=_num(v.get("on_s", 10.0), c, f"{where}.on_s", positive=True, hi=MAX_PHASE_S),
        off_s=_num(v.get("off_s", 10.0), c, f"{where}.off_s", lo=0.0, hi=MAX_PHASE_S),
        amplitude=amplitude,
        period_s=_num(v.get("period_s", 86400.0), c, f"{where}.period_s", positive=True),
        phase_s=_num(v.get("phase_s", 0.0), c, f"{where}.phase_s"),
    )


# ----------------------------------------------------------------------------- workload
TRACE_FORMAT_ALIASES = {
    "azure-llm-2023": "azure", "azure": "azure",
    "alibaba-genai-2026": "alibaba", "alibaba": "alibaba",
    "mooncake": "mooncake", "mooncake-2025": "mooncake",
    "servegen": "servegen", "native": "native",
}


def _workload(v: Any, c: _Ctx) -> WorkloadSpec:
    if v is None:
        return WorkloadSpec()
    if not isinstance(v, dict):
        raise c.err("workload", f"must be a mapping, got {_kind(v)}")
    _known(v, c, "workload", {"trace", "tasks", "total_rps", "rate_scale", "burstiness_scale",
                              "window", "max_requests"})
    trace = None
    if "trace" in v:
        t = v["trace"]
        if not isinstance(t, dict):
            raise c.err("workload.trace", f"must be a mapping like {{format: azure-llm-2023, path: FILE}}, got {_kind(t)}")
        _known(t, c, "workload.trace", {"format", "path", "input_len"})
        fmt = t.get("format")
        if not isinstance(fmt, str) or fmt not in TRACE_FORMAT_ALIASES:
            raise c.err("workload.trace.format",
                        f"unknown format {fmt!r} (known: {', '.join(TRACE_FORMAT_ALIASES)})")
        path = t.get("path")
        if not isinstance(path, str) or not path:
            raise c.err("workload.trace.path", "missing: the trace file (or ServeGen folder)")
        p = Path(path)
        if not p.is_absolute() and c.base_dir is not None and not p.exists() and (c.base_dir / p).exists():
            p = c.base_dir / p
        if not p.exists():
            raise c.err("workload.trace.path", f"no such file or folder {path!r}")
        il = t.get("input_len")
        if il is not None and TRACE_FORMAT_ALIASES[fmt] != "servegen":
            raise c.err("workload.trace.input_len", f"only for servegen traces; {fmt} traces carry their own lengths")
        trace = TraceSource(TRACE_FORMAT_ALIASES[fmt], str(p),
                            None if il is None else _int(il, c, "workload.trace.input_len", lo=1))
    count, zipf, map_bb = None, None, False
    if "tasks" in v:
        tv = v["tasks"]
        if not isinstance(tv, dict):
            raise c.err("workload.tasks", f"must be a mapping like {{count: 16, popularity: {{zipf: 1.1}}}}, got {_kind(tv)}")
        _known(tv, c, "workload.tasks", {"count", "popularity", "map_backbones"})
        if "count" in tv:
            count = _int(tv["count"], c, "workload.tasks.count", lo=1)
            if count > MAX_TASKS:
                raise c.err("workload.tasks.count", f"at most {MAX_TASKS} tasks, got {count}")
        pop = tv.get("popularity", "uniform")
        if pop != "uniform":
            if not isinstance(pop, dict) or set(pop) != {"zipf"}:
                raise c.err("workload.tasks.popularity", f"must be 'uniform' or {{zipf: S}}, got {pop!r}")
            zipf = _num(pop["zipf"], c, "workload.tasks.popularity.zipf", lo=0.0)
        map_bb = _bool(tv.get("map_backbones", False), c, "workload.tasks.map_backbones")
        if map_bb and (trace is None or trace.format != "alibaba"):
            raise c.err("workload.tasks.map_backbones", "only for traces with base-model ids (alibaba-genai-2026)")
    total = None
    if "total_rps" in v:
        if trace is not None:
            raise c.err("workload.total_rps", "a trace sets its own rate; use rate_scale")
        total = _num(v["total_rps"], c, "workload.total_rps", lo=0.0)
    shaping = {k for k in ("rate_scale", "burstiness_scale", "window", "max_requests") if k in v}
    if shaping and trace is None:
        raise c.err(f"workload.{sorted(shaping)[0]}", "shapes a trace: only with workload.trace")
    start, dur = 0.0, None
    if "window" in v:
        w = v["window"]
        if not isinstance(w, dict):
            raise c.err("workload.window", f"must be a mapping like {{start_s: 0, duration_s: 600}}, got {_kind(w)}")
        _known(w, c, "workload.window", {"start_s", "duration_s"})
        start = _num(w.get("start_s", 0.0), c, "workload.window.start_s", lo=0.0)
        if w.get("duration_s") is not None:
            dur = _num(w["duration_s"], c, "workload.window.duration_s", positive=True)
    mr = v.get("max_requests")
    return WorkloadSpec(
        trace=trace,
        task_count=count,
        zipf=zipf,
        map_backbones=map_bb,
        total_rps=total,
        rate_scale=_num(v.get("rate_scale", 1.0), c, "workload.rate_scale", positive=True,
                        lo=1 / MAX_RATE_SCALE, hi=MAX_RATE_SCALE),
        burstiness_scale=_num(v.get("burstiness_scale", 1.0), c, "workload.burstiness_scale", positive=True,
                              lo=1 / MAX_CV, hi=MAX_CV),
        window_start_s=start,
        window_duration_s=dur,
        max_requests=None if mr is None else _int(mr, c, "workload.max_requests", lo=1),
    )


def expand_tasks(
    templates: tuple[TaskSpec, ...], wl: WorkloadSpec, template_of: list[int] | None = None
) -> tuple[TaskSpec, ...]:
    """The run's tasks: the templates themselves, or ``wl.task_count`` tasks made from them.

    Task k takes template ``k mod len(templates)`` (or ``template_of[k]``) and is named
    ``<template name>-<k>``. With ``total_rps`` (synthetic), the total is split over the tasks
    by popularity (task 0 most popular) and replaces each task's rate.
    """
    tasks = templates
    if wl.task_count is not None:
        tasks = tuple(
            replace(templates[k % len(templates) if template_of is None else template_of[k]],
                    name=f"{templates[k % len(templates) if template_of is None else template_of[k]].name}-{k}")
            for k in range(wl.task_count)
        )
    if wl.total_rps is not None:
        from fmplex_sim.arrivals import split_rate

        rates = split_rate(wl.total_rps, len(tasks), "uniform" if wl.zipf is None else wl.zipf)
        tasks = tuple(replace(t, arrival=replace(t.arrival, rate_rps=float(r))) for t, r in zip(tasks, rates))
    return tasks


# ----------------------------------------------------------------------------- scalars
def _number_hint(text: str) -> str:
    """Why YAML read ``text``, which Python reads as a number, as text, and how to write it."""
    t = text.strip()
    try:
        x = float(t)
    except ValueError:
        return ""
    if not math.isfinite(x):
        return ""  # nan, inf: refused as numbers anyway
    mantissa, e, exp = t.lower().partition("e")
    if not e:
        return f" (quoted, so YAML reads it as text: write {t} without quotes)"
    if "." not in mantissa:
        mantissa += ".0"
    if exp[:1] not in ("+", "-"):
        exp = "+" + exp
    return f" (YAML 1.1 reads {t} as text: a number in exponent form needs a dot and a signed exponent, e.g. {mantissa}e{exp})"


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, (list, dict)) and not v:
        return f"an empty {'list' if isinstance(v, list) else 'mapping'}"
    return {dict: "a mapping", list: "a list", str: f"the text {v!r}", bool: f"{v}"}.get(type(v), repr(v))


def _known(v: dict, c: _Ctx, where: str, allowed: set[str]) -> None:
    for k in v:
        if k not in allowed:
            shown = str(k) if str(k).isprintable() else repr(k)  # a tab or line break stays visible
            if k is None or isinstance(k, (bool, int, float)):  # `~:`, `1:` or `yes:` read as YAML values
                shown = f"{'~' if k is None else k} (a key YAML reads as {_kind(k)}, not text)"
            path = f"{where}.{shown}" if where else shown
            raise c.err(path, f"unknown key (known: {', '.join(sorted(allowed))})")


def _num(v: Any, c: _Ctx, where: str, *, lo: float | None = None, positive: bool = False,
         hi: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        hint = _number_hint(v) if isinstance(v, str) else ""
        raise c.err(where, f"must be a number, got {_kind(v)}{hint}")
    try:
        x = float(v)
    except OverflowError:  # an integer beyond the float range
        x = math.inf
    if not math.isfinite(x):
        raise c.err(where, f"must be a finite number, got {_show(v)}")
    if positive and x <= 0:
        raise c.err(where, f"must be > 0, got {v}")
    if lo is not None and x < lo:
        raise c.err(where, f"must be >= {lo:g}, got {v}")
    if hi is not None and x > hi:
        raise c.err(where, f"must be at most {hi:g}, got {_show(v)}")
    return x


def _bool(v: Any, c: _Ctx, where: str) -> bool:
    if not isinstance(v, bool):
        raise c.err(where, f"must be true or false, got {_kind(v)}")
    return v


MAX_INT = 2**53  # no count in a config is larger; past it, the cost model's floats overflow or lose it


def _int(v: Any, c: _Ctx, where: str, *, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise c.err(where, f"must be an integer, got {_kind(v)}")
    if lo is not None and v < lo:
        raise c.err(where, f"must be >= {lo}, got {_show(v)}")
    if v > MAX_INT:
        raise c.err(where, f"must be at most 2**53, got {_show(v)}")
    return int(v)


def _show(v: Any) -> str:
    """A number for an error message, a huge integer abbreviated."""
    if isinstance(v, int) and not -(10**20) < v < 10**20:
        return f"an integer of {len(str(abs(v)))} digits"
    return str(v)
