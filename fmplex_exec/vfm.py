"""Virtual foundation models (vFMs) over one physical backbone.

A :class:`PhysicalFM` loads nothing itself: it takes one :class:`~fmplex_exec.backbones.Backbone`
(loaded once) and serves many tasks over it. Each task (a :class:`~fmplex_sim.specs.TaskSpec`)
brings its own extensions:

* ``lora``: a named peft LoRA adapter on the shared model (exact module names resolved from the
  family's target mapping). Adapter weights A and B are both drawn from the task's seed, so an
  adapter really changes outputs (peft's default B = 0 would make every adapter a no-op).
* ``head``: ``nn.Linear(hidden, outputs)`` applied to ``backbone.pooled(...)``. A task without a
  head returns the pooled vector.
* ``encoder``: ``Linear(hidden, k) -> GELU -> Linear(k, hidden)`` applied *residually to the pooled
  vector, before the head* (not to the input embeddings), with ``k`` chosen so the parameter
  count is as close as possible to ``ext.params``. It is a per-task post-backbone block: it costs
  what an encoder of that size costs in memory, not what it would cost per token.
* ``prefix``: not implemented (``NotImplementedError``).

Mixed-task batches: :meth:`PhysicalFM.run_batch` right-pads all valid requests into one batch
and runs the backbone once with peft's per-row ``adapter_names`` (``"__base__"`` for rows of tasks
without LoRA): every LoRA layer computes the base projection for the whole batch and adds each
adapter's low-rank update to its own rows only. Each task's encoder/head then runs on its rows
of the pooled output, inside its own ``try`` so a failing task is quarantined without taking the
others down.

:func:`standalone_model` builds the reference a mixed batch must match: a fresh backbone copy
with the task's adapter merged into the weights by hand (``W += alpha/r * B @ A``), plus the same
head and encoder.
"""

from __future__ import annotations

import gc
import warnings
import zlib
from dataclasses import dataclass, field

import torch
from torch import nn

from fmplex_exec.backbones import Backbone, load_backbone, make_inputs
from fmplex_sim.specs import ExtensionSpec, TaskSpec

BASE_ADAPTER = "__base__"  # peft's name for "no adapter on this row"
LORA_B_STD = 0.05  # std of the random LoRA B entries (A: 1/sqrt(d_in)); big enough to matter


@dataclass(frozen=True)
class ExecRequest:
    """One request for the real harness.

    ``inputs``: one row as :func:`~fmplex_exec.backbones.make_inputs` makes it (tensors with a
    leading dimension of 1; right padding allowed, given by ``attention_mask``). When given, its
    real length must equal ``length`` (images: ``length`` is not checked). ``None``: random inputs
    of ``length`` tokens are drawn from the PhysicalFM's own generator.
    """

    task: str
    length: int
    inputs: dict[str, torch.Tensor] | None = None


@dataclass
class Result:
    """Outcome of one request: ``output`` (shape ``[outputs]``) when ``ok``, else ``error``."""

    task: str
    ok: bool
    output: torch.Tensor | None = None
    error: str | None = None


@dataclass
class _TaskState:
    spec: TaskSpec
    seed: int
    version: int  # bumped by update_task; part of the peft adapter name
    adapter: str | None  # peft adapter name, None without LoRA
    head: nn.Module | None
    encoder: nn.Module | None


@dataclass
class _ExtWeights:
    """Deterministic extension weights of one task (independent of which model they go in)."""

    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # name -> (A, B)
    lora_ext: ExtensionSpec | None = None
    conv1d: bool = False  # GPT-2 style Conv1D projections (weight stored as [in, out])
    head: nn.Linear | None = None
    encoder: nn.Sequential | None = None


@dataclass(frozen=True)
class PreparedTask:
    """A task's extension weights, built by :meth:`PhysicalFM.prepare`, not yet installed."""

    task: TaskSpec  # the version these weights are for
    seed: int  # the seed they were drawn from
    weights: _ExtWeights  # LoRA A/B, head and encoder


# ---------------------------------------------------------------------------------------------
# deterministic extension construction (shared by PhysicalFM and standalone_model)
# ---------------------------------------------------------------------------------------------


def default_seed(task: TaskSpec) -> int:
    """Seed used when none is given: from the task name and its extensions' highest version."""
    version = max((e.version for e in task.extensions), default=1)
    return zlib.crc32(f"{task.name}|v{version}".encode())


def _projection_shapes(model: nn.Module) -> dict[str, tuple[int, int, bool]]:
    """name -> (d_in, d_out, is_conv1d) of every Linear / transformers Conv1D in ``model``."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        Conv1D = ()  # type: ignore[assignment]
    shapes: dict[str, tuple[int, int, bool]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            shapes[name] = (mod.in_features, mod.out_features, False)
        elif Conv1D and isinstance(mod, Conv1D):
            d_in, d_out = mod.weight.shape
            shapes[name] = (d_in, d_out, True)
    return shapes


def lora_target_names(bb: Backbone, targets: tuple[str, ...], shapes: dict[str, tuple]) -> list[str]:
    """Exact module names adapted for ``targets``.

    Each projection is assigned to the *longest* family suffix it ends with, so BERT's
    ``attention.output.dense`` is the ``o`` projection only, never also ``down``
    (``output.dense``) as plain suffix matching would make it.
    """
    wanted = set(bb.lora_modules(targets))  # validates the targets
    suffixes = set(bb.lora_suffixes().values())
    names = []
    for name in shapes:
        hits = [s for s in suffixes if name == s or name.endswith("." + s)]
        if hits and max(hits, key=len) in wanted:
            names.append(name)
    if not names:
        raise ValueError(f"{bb.spec.name}: no modules found for LoRA targets {targets}")
    return sorted(names)


def _encoder_width(hidden: int, params: int) -> int:
    """k with ``2*hidden*k + k + hidden`` (two Linears with biases) closest to ``params``."""
    return max(1, round((params - hidden) / (2 * hidden + 1)))


def _check_task(bb: Backbone, task: TaskSpec) -> None:
    if task.backbone != bb.spec.name:
        raise ValueError(f"task {task.name!r} is for backbone {task.backbone!r}, not {bb.spec.name!r}")
    kinds = [e.kind for e in task.extensions]
    for k in set(kinds):
        if kinds.count(k) > 1:
            raise ValueError(f"task {task.name!r} has {kinds.count(k)} {k!r} extensions (at most one)")
    if "prefix" in kinds:
        raise NotImplementedError(
            f"task {task.name!r}: prefix extensions are not implemented by fmplex_exec.vfm "
            "(supported: lora, head, encoder)"
        )


def _make_weights(bb: Backbone, shapes: dict[str, tuple[int, int, bool]], task: TaskSpec,
                  seed: int) -> _ExtWeights:
    """All extension weights of ``task`` from ``seed``: same seed and architecture, same weights."""
    _check_task(bb, task)
    gen = torch.Generator().manual_seed(seed)
    w = _ExtWeights()
    dev, dt = bb.device, bb.dtype

    def randn(*shape: int, std: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float32) * std).to(dev, dt)

    lora = task.extension("lora")
    if lora is not None:
        if lora.rank < 1:
            raise ValueError(f"task {task.name!r}: LoRA rank must be >= 1, got {lora.rank}")
        w.lora_ext = lora
        for name in lora_target_names(bb, lora.targets, shapes):
            d_in, d_out, conv1d = shapes[name]
            w.conv1d = w.conv1d or conv1d
            a = randn(lora.rank, d_in, std=d_in ** -0.5)
            b = randn(d_out, lora.rank, std=LORA_B_STD)
            w.lora[name] = (a, b)
    hidden = bb.hidden
    enc = task.extension("encoder")
    if enc is not None:
        k = _encoder_width(hidden, enc.params)
        l1, l2 = nn.Linear(hidden, k), nn.Linear(k, hidden)
        with torch.no_grad():
            l1.weight.copy_(randn(k, hidden, std=hidden ** -0.5))
            l1.bias.copy_(randn(k, std=0.01))
            l2.weight.copy_(randn(hidden, k, std=k ** -0.5))
            l2.bias.copy_(randn(hidden, std=0.01))
        w.encoder = nn.Sequential(l1, nn.GELU(), l2).to(dev, dt).eval().requires_grad_(False)
    head = task.extension("head")
    if head is not None:
        if head.outputs < 1:
            raise ValueError(f"task {task.name!r}: head outputs must be >= 1, got {head.outputs}")
        lin = nn.Linear(hidden, head.outputs)
        with torch.no_grad():
            lin.weight.copy_(randn(head.outputs, hidden, std=hidden ** -0.5))
            lin.bias.copy_(randn(head.outputs, std=0.01))
        w.head = lin.to(dev, dt).eval().requires_grad_(False)
    return w


def _lora_config(w: _ExtWeights):
    from peft import LoraConfig

    ext = w.lora_ext
    assert ext is not None
    return LoraConfig(r=ext.rank, lora_alpha=ext.alpha, target_modules=list(w.lora), lora_dropout=0.0,
                      bias="none", fan_in_fan_out=w.conv1d, init_lora_weights=True)


def _apply_task_modules(pooled: torch.Tensor, encoder: nn.Module | None, head: nn.Module | None) -> torch.Tensor:
    x = pooled
    if encoder is not None:
        x = x + encoder(x)
    if head is not None:
        x = head(x)
    return x


def standalone_model(backbone_name: str, task: TaskSpec, seed: int | None = None, *, backbone_seed: int = 0,
                     device: str = "cpu", dtype: str = "float32"):
    """A dedicated model of ``task`` alone: its own backbone copy (``load_backbone`` with
    ``backbone_seed``) with the task's LoRA merged into the weights by hand, plus its encoder and
    head built from ``seed`` exactly as :meth:`PhysicalFM.add_task` builds them.

    Returns ``run(inputs) -> Tensor[rows, outputs]`` for inputs as ``make_inputs`` makes them
    (any number of rows); ``run.backbone`` is the merged backbone.
    """
    bb = load_backbone(backbone_name, device=device, dtype=dtype, seed=backbone_seed)
    shapes = _projection_shapes(bb.model)
    w = _make_weights(bb, shapes, task, default_seed(task) if seed is None else seed)
    if w.lora_ext is not None:
        scale = w.lora_ext.alpha / w.lora_ext.rank
        with torch.no_grad():
            for name, (a, b) in w.lora.items():
                delta = (b.float() @ a.float()) * scale  # [d_out, d_in]
                weight = bb.model.get_submodule(name).weight
                weight += (delta.T if shapes[name][2] else delta).to(weight.dtype)

    def run(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            out = bb.model(**inputs)
            pooled = bb.pooled(out, inputs.get("attention_mask"))
            return _apply_task_modules(pooled, w.encoder, w.head)

    run.backbone = bb  # type: ignore[attr-defined]
    run.head = w.head  # type: ignore[attr-defined]
    run.encoder = w.encoder  # type: ignore[attr-defined]
    return run


# ---------------------------------------------------------------------------------------------
# PhysicalFM
# ---------------------------------------------------------------------------------------------


def _param_bytes(mod: nn.Module | None) -> int:
    if mod is None:
        return 0
    return sum(p.numel() * p.element_size() for p in mod.parameters())


class PhysicalFM:
    """One loaded backbone serving many vFMs (tasks), with mixed-task batches.

    Not thread-safe. Forward passes run under ``torch.inference_mode()``.
    """

    def __init__(self, backbone: Backbone, *, input_seed: int = 0, lora_kernel: str = "batched") -> None:
        if lora_kernel not in ("batched", "peft"):
            raise ValueError(f"lora_kernel must be 'batched' or 'peft', got {lora_kernel!r}")
        self.lora_kernel = lora_kernel  # batched: two bmm per layer; peft: peft's per-adapter loop
        self._batched = None  # BatchedLoRA, (re)built lazily after adapter changes
        self.backbone = backbone
        backbone.model.eval()
        self._shapes = _projection_shapes(backbone.model)  # before peft wraps anything
        self._peft = None  # peft.PeftModel, created with the first LoRA task
        self._tasks: dict[str, _TaskState] = {}
        self.quarantined: dict[str, str] = {}  # task -> reason; its requests are refused
        self._gen = torch.Generator().manual_seed(input_seed)  # inputs of requests without any
        self._max_len = int(backbone.spec.max_positions)
        emb = backbone.model.get_input_embeddings() if backbone.inputs == "input_ids" else None
        self._vocab = int(emb.num_embeddings) if emb is not None else 0

    # ---- introspection -------------------------------------------------------------------

    def tasks(self) -> list[str]:
        """Deployed task names (quarantined ones included), in deployment order."""
        return list(self._tasks)

    def task_spec(self, name: str) -> TaskSpec:
        return self._state(name).spec

    def head(self, name: str) -> nn.Module | None:
        return self._state(name).head

    def encoder(self, name: str) -> nn.Module | None:
        return self._state(name).encoder

    def adapter_name(self, name: str) -> str | None:
        """The peft adapter name of a task's current LoRA version (None without LoRA)."""
        return self._state(name).adapter

    @property
    def peft_model(self):
        """The peft wrapper around the backbone's model (None until a LoRA task is added)."""
        return self._peft

    def backbone_bytes(self) -> int:
        """Bytes of the backbone's own parameters (LoRA adapter weights excluded), resident parts
        (a T5 decoder) included."""
        return sum(p.numel() * p.element_size() for n, p in self.backbone.model.named_parameters()
                   if "lora_" not in n) + self.backbone.resident_bytes()

    def extension_bytes(self, name: str, kind: str | None = None) -> int:
        """Real parameter bytes of a task's extensions (``kind``: only ``lora``, ``head`` or
        ``encoder``; None: all of them)."""
        st = self._state(name)
        total = 0
        if kind in (None, "lora") and st.adapter is not None:
            total += self._adapter_bytes(st.adapter)
        if kind in (None, "head"):
            total += _param_bytes(st.head)
        if kind in (None, "encoder"):
            total += _param_bytes(st.encoder)
        return total

    def _adapter_bytes(self, adapter: str) -> int:
        from peft.tuners.lora import LoraLayer

        total = 0
        for mod in self.backbone.model.modules():
            if isinstance(mod, LoraLayer):
                for d in (mod.lora_A, mod.lora_B):
                    if adapter in d:
                        total += _param_bytes(d[adapter])
        return total

    def _state(self, name: str) -> _TaskState:
        try:
            return self._tasks[name]
        except KeyError:
            raise KeyError(f"unknown task {name!r}") from None

    # ---- deployment ----------------------------------------------------------------------
    # Deploying or updating is two steps, so a serving thread need not wait for the slow one:
    # ``prepare`` draws the extension weights (it reads only the backbone's shapes, never the
    # model, and may run on another thread while batches run), then ``add_prepared`` /
    # ``update_prepared`` install them into the shared model (peft adapter, batched-LoRA
    # stacks), which must not overlap a batch. ``add_task`` / ``update_task`` do both.

    def prepare(self, task: TaskSpec, seed: int | None = None) -> "PreparedTask":
        """Build ``task``'s extension weights off the serving path (see above). Raises as
        :meth:`add_task` does for a wrong backbone or bad extensions."""
        seed = default_seed(task) if seed is None else int(seed)
        return PreparedTask(task, seed, _make_weights(self.backbone, self._shapes, task, seed))

    def add_prepared(self, prep: "PreparedTask") -> None:
        """Deploy a prepared task. Raises ValueError for a duplicate name."""
        if prep.task.name in self._tasks:
            raise ValueError(f"task {prep.task.name!r} is already deployed")
        self._tasks[prep.task.name] = self._install(prep, version=1)
        self.quarantined.pop(prep.task.name, None)

    def update_prepared(self, prep: "PreparedTask") -> None:
        """Swap in a prepared new version of a deployed task: its adapter (peft name
        ``"{name}@v{version}"``), encoder and head are installed before the task's entry is
        replaced in one assignment; the old adapter is deleted after. Clears a quarantine.
        Frees the old version's memory by reference counting (no ``gc.collect``, which would
        stall the caller for tens of ms)."""
        old = self._state(prep.task.name)
        new = self._install(prep, version=old.version + 1, refresh=old.adapter is None)
        self._tasks[prep.task.name] = new  # the swap: forward reads the entry once per batch
        self.quarantined.pop(prep.task.name, None)
        if old.adapter is not None:  # one restack of the batched LoRA path for both changes
            self._delete_adapter(old.adapter)

    def add_task(self, task: TaskSpec, seed: int | None = None) -> None:
        """Deploy ``task``: build its adapter, encoder and head on the shared backbone (no reload).

        Raises ValueError for a duplicate name, a wrong backbone or bad extensions;
        NotImplementedError for prefix extensions.
        """
        if task.name in self._tasks:
            raise ValueError(f"task {task.name!r} is already deployed")
        self.add_prepared(self.prepare(task, seed))

    def update_task(self, task: TaskSpec, seed: int | None = None) -> None:
        """Swap in a new version of a deployed task (:meth:`prepare`, then
        :meth:`update_prepared`). Clears a quarantine."""
        self._state(task.name)
        self.update_prepared(self.prepare(task, seed))
        gc.collect()

    def remove_task(self, name: str, collect: bool = True) -> None:
        """Undeploy a task: delete its peft adapter, encoder and head (``collect``: then run
        ``gc.collect``; a serving runtime passes False and leaves it to reference counting)."""
        st = self._tasks.pop(name, None)
        if st is None:
            raise KeyError(f"unknown task {name!r}")
        self.quarantined.pop(name, None)
        if st.adapter is not None:
            self._delete_adapter(st.adapter)
        st.head = st.encoder = None
        del st
        if collect:
            gc.collect()

    def _install(self, prep: "PreparedTask", version: int, refresh: bool = True) -> _TaskState:
        task, w = prep.task, prep.weights
        adapter = None
        if w.lora_ext is not None:
            adapter = f"{task.name}@v{version}".replace(".", "_")
            self._add_adapter(adapter, w, refresh)
        return _TaskState(task, prep.seed, version, adapter, w.head, w.encoder)

    def _add_adapter(self, adapter: str, w: _ExtWeights, refresh: bool = True) -> None:
        import peft

        config = _lora_config(w)
        try:
            if self._peft is None:
                self._peft = peft.get_peft_model(self.backbone.model, config, adapter_name=adapter)
            else:
                self._peft.add_adapter(adapter, config)
            model = self.backbone.model  # peft injects in place: same object, LoRA layers inside
            with torch.no_grad():
                for name, (a, b) in w.lora.items():
                    layer = model.get_submodule(name)
                    layer.lora_A[adapter].weight.copy_(a)
                    layer.lora_B[adapter].weight.copy_(b)
            self._fix_active()
            self._peft.eval()
            if refresh:
                self._adapters_changed()
        except Exception:
            if self._peft is not None and adapter in self._peft.peft_config:
                self._delete_adapter(adapter)
            raise

    def _delete_adapter(self, adapter: str) -> None:
        assert self._peft is not None
        with warnings.catch_warnings():  # "Adapter X was active which is now deleted": expected here
            warnings.filterwarnings("ignore", message=".*was active which is now deleted.*")
            self._peft.delete_adapter(adapter)
        self._fix_active()
        self._adapters_changed()

    def _adapters_changed(self) -> None:
        """Restack the batched LoRA path after an adapter was added, replaced or removed."""
        if self._batched is not None:
            self._batched.refresh()

    def _fix_active(self) -> None:
        """Keep peft's notion of the active adapter valid. Rows always name their adapter, so
        which one is "active" does not matter for results, but peft 0.21's PeftModel keeps a stale
        ``active_adapter`` after its last adapter is deleted, and then every forward (and every
        adapter added later) fails with a KeyError in ``has_active_enabled_adapter``."""
        peft_model = self._peft
        if peft_model is None or not peft_model.peft_config:
            return
        if peft_model.active_adapter not in peft_model.peft_config:
            peft_model.set_adapter(next(iter(peft_model.peft_config)), inference_mode=True)

    # ---- serving -------------------------------------------------------------------------

    def _validate(self, req: ExecRequest) -> tuple[dict[str, torch.Tensor], int] | str:
        """(single-row tensors without padding, real length), or an error string."""
        bb = self.backbone
        kind = bb.inputs
        if not isinstance(req.task, str) or req.task not in self._tasks:
            return f"unknown task {req.task!r}"
        if req.task in self.quarantined:
            return f"task {req.task!r} is quarantined: {self.quarantined[req.task]}"
        inputs = req.inputs
        if inputs is None:
            if kind != "pixel_values" and not 1 <= req.length <= self._max_len:
                return f"input length {req.length} outside 1..{self._max_len} (backbone max positions)"
            inputs = make_inputs(bb, [max(1, req.length)], self._gen)
        if not isinstance(inputs, dict) or kind not in inputs:
            return f"inputs must be a dict with {kind!r}"
        extra = set(inputs) - {kind, "attention_mask"}
        if extra:
            return f"unexpected input keys {sorted(extra)}"
        x = inputs[kind]
        if not isinstance(x, torch.Tensor):
            return f"{kind} must be a tensor, got {type(x).__name__}"
        if kind == "pixel_values":
            size = getattr(bb.model.config, "image_size", 224)
            if x.dim() == 3:
                x = x.unsqueeze(0)
            if tuple(x.shape) != (1, 3, size, size):
                return f"pixel_values shape {tuple(x.shape)}, expected (1, 3, {size}, {size})"
            if x.dtype != bb.dtype:
                return f"pixel_values dtype {x.dtype}, expected {bb.dtype}"
            if not torch.isfinite(x).all():
                return "pixel_values has non-finite values"
            return {kind: x.to(bb.device)}, 0
        # token ids or patch embeddings: [1, L] / [1, L, hidden] (leading 1 optional)
        want_dim = 2 if kind == "input_ids" else 3
        if x.dim() == want_dim - 1:
            x = x.unsqueeze(0)
        if x.dim() != want_dim or x.shape[0] != 1 or (kind == "inputs_embeds" and x.shape[2] != bb.hidden):
            exp = "(1, L)" if kind == "input_ids" else f"(1, L, {bb.hidden})"
            return f"{kind} shape {tuple(x.shape)}, expected {exp}"
        L = x.shape[1]
        mask = inputs.get("attention_mask")
        n = L
        if mask is not None:
            if not isinstance(mask, torch.Tensor):
                return "attention_mask must be a tensor"
            if mask.dim() == 1:
                mask = mask.unsqueeze(0)
            if tuple(mask.shape) != (1, L):
                return f"attention_mask shape {tuple(mask.shape)}, expected (1, {L})"
            if mask.is_floating_point() or mask.is_complex():
                return f"attention_mask dtype {mask.dtype}, expected an integer or bool type"
            m = mask[0].to(torch.long).cpu()
            n = int(m.sum())
            if not bool(((m == 0) | (m == 1)).all()) or not bool((m[:n] == 1).all()):
                return "attention_mask must be ones then zeros (right padding)"
        if n < 1:
            return "empty input (no real tokens)"
        if n > self._max_len:
            return f"input length {n} exceeds the backbone's max positions {self._max_len}"
        if req.inputs is not None and kind != "pixel_values" and req.length != n:
            return f"declared length {req.length} != actual input length {n}"
        x = x[:, :n]
        if kind == "input_ids":
            if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                return f"input_ids dtype {x.dtype}, expected an integer type"
            x = x.to(torch.long)
            lo, hi = int(x.min()), int(x.max())
            if lo < 0 or hi >= self._vocab:
                return f"token ids out of range 0..{self._vocab - 1} (got {lo}..{hi})"
        else:
            if x.dtype != bb.dtype:
                return f"inputs_embeds dtype {x.dtype}, expected {bb.dtype}"
            if not torch.isfinite(x).all():
                return "inputs_embeds has non-finite values"
        return {kind: x.to(bb.device)}, n

    def _pad(self, rows: list[dict[str, torch.Tensor]], lengths: list[int]) -> dict[str, torch.Tensor]:
        bb = self.backbone
        kind = bb.inputs
        if kind == "pixel_values":
            return {kind: torch.cat([r[kind] for r in rows])}
        B, L = len(rows), max(lengths)
        mask = torch.zeros(B, L, dtype=torch.long, device=bb.device)
        if kind == "input_ids":
            x = torch.zeros(B, L, dtype=torch.long, device=bb.device)
        else:
            x = torch.zeros(B, L, bb.hidden, dtype=bb.dtype, device=bb.device)
        for i, (r, n) in enumerate(zip(rows, lengths)):
            x[i, :n] = r[kind][0]
            mask[i, :n] = 1
        return {kind: x, "attention_mask": mask}

    def run_batch(self, requests: list[ExecRequest]) -> list[Result]:
        """Run requests of any deployed tasks as ONE backbone pass; one Result per request, in order.

        Invalid requests (unknown/quarantined task, too long, wrong shape or dtype, ...) get an
        error and are left out of the batch. A task whose encoder/head raises or returns
        non-finite values is quarantined; its rows get errors, the other tasks' rows are returned.
        """
        results: list[Result | None] = [None] * len(requests)
        rows: list[dict[str, torch.Tensor]] = []
        lengths: list[int] = []
        where: list[int] = []  # batch row -> request index
        states: list[_TaskState] = []
        for i, req in enumerate(requests):
            task = getattr(req, "task", None)
            try:
                v = self._validate(req)
            except Exception as e:  # a malformed request must not take the batch down
                v = f"invalid request: {type(e).__name__}: {e}"
            if isinstance(v, str):
                results[i] = Result(str(task), False, error=v)
                continue
            rows.append(v[0])
            lengths.append(v[1])
            where.append(i)
            states.append(self._tasks[req.task])  # the entry read once: update_task swaps it
        if rows:
            self._forward(rows, lengths, where, states, requests, results)
        return [r if r is not None else Result(str(q.task), False, error="not run") for r, q in zip(results, requests)]

    def _forward(self, rows, lengths, where, states, requests, results) -> None:
        bb = self.backbone
        batch = self._pad(rows, lengths)
        try:
            with torch.inference_mode():
                if self._peft is not None and self._peft.peft_config and self.lora_kernel == "batched":
                    if self._batched is None:
                        from fmplex_exec.lora_batched import BatchedLoRA

                        self._batched = BatchedLoRA(self._peft)
                    with self._batched.rows([st.adapter for st in states]):
                        out = self._peft(**batch)
                elif self._peft is not None and self._peft.peft_config:
                    if self._batched is not None:  # switched from the batched kernel, which
                        self._batched.detach()  # keeps peft's own adapter layers off
                        self._batched = None
                    names = [st.adapter or BASE_ADAPTER for st in states]
                    out = self._peft(**batch, adapter_names=names)
                else:
                    out = bb.model(**batch)
                pooled = bb.pooled(out, batch.get("attention_mask"))
        except Exception as e:
            msg = f"backbone forward failed: {type(e).__name__}: {e}"
            for i in where:
                results[i] = Result(requests[i].task, False, error=msg)
            return
        groups: dict[str, list[int]] = {}
        for r, st in enumerate(states):
            groups.setdefault(st.spec.name, []).append(r)
        for name, idx in groups.items():
            st = states[idx[0]]
            try:
                with torch.inference_mode():
                    y = _apply_task_modules(pooled[idx], st.encoder, st.head)
                    head_ext = st.spec.extension("head")
                    width = head_ext.outputs if head_ext is not None else bb.hidden
                    if tuple(y.shape) != (len(idx), width):
                        raise ValueError(f"task modules returned shape {tuple(y.shape)}, expected {(len(idx), width)}")
                    if not bool(torch.isfinite(y).all()):
                        raise FloatingPointError("task modules returned non-finite values")
                    y = y.clone()
            except Exception as e:
                reason = f"{type(e).__name__}: {e}"
                self.quarantined[name] = reason
                for r in idx:
                    results[where[r]] = Result(name, False, error=f"task {name!r} quarantined: {reason}")
                continue
            for k, r in enumerate(idx):
                results[where[r]] = Result(name, True, output=y[k])
