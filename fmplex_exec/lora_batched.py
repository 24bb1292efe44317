"""Batched multi-adapter LoRA: every adapter of a mixed batch in two batched multiplies per layer.

peft's mixed-adapter inference (``adapter_names=[...]``) loops over the distinct adapters in
every adapted layer, with a Python-level row selection each time. Here, each adapted layer
keeps its adapters stacked (ranks zero-padded to the largest, which changes no product; the
scaling alpha/r folded into B), each row gathers its adapter's A and B, and the update is two
``bmm`` calls, as Punica's SGMV kernel does on GPUs. The base projection runs through peft
with adapters disabled, and a forward hook on each LoRA layer adds the update.

peft still owns the adapters (creation, state dicts, deletion); :meth:`BatchedLoRA.refresh`
restacks after any change. peft's own adapter path stays disabled between batches rather than
toggled around each one: peft's ``disable_adapter()`` walks every resident adapter's weights
twice per batch, about 0.8 ms per resident adapter on a 2-core host, a cost that grew with the
tasks hosted and that no profile of the batch itself could see.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class BatchedLoRA:
    """Hooks a peft model's LoRA layers to apply per-row adapters with batched multiplies."""

    def __init__(self, peft_model: nn.Module) -> None:
        self.model = peft_model
        self.layers: list[nn.Module] = []
        self.slots: dict[str, int] = {}  # adapter name -> slot (0 is "no adapter")
        self._stacks: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(layer) -> (A, B)
        self._rows: torch.Tensor | None = None  # slot of each row of the running batch
        self._hooks: list = []
        self.refresh()

    def refresh(self) -> None:
        """Re-find the LoRA layers and restack their adapters (after any adapter change: a new
        adapter may have wrapped more layers)."""
        from peft.tuners.lora import LoraLayer

        self.close()
        self.layers = [m for m in self.model.modules() if isinstance(m, LoraLayer)]
        self._hooks = [layer.register_forward_hook(self._hook) for layer in self.layers]
        names = sorted({n for layer in self.layers for n in layer.lora_A.keys()})
        self.slots = {n: i + 1 for i, n in enumerate(names)}
        self._stacks = {}
        for layer in self.layers:
            if not layer.lora_A:
                continue
            w = layer.get_base_layer().weight
            r_max = max(layer.lora_A[n].weight.shape[0] for n in layer.lora_A.keys())
            d_in = next(iter(layer.lora_A.values())).weight.shape[1]
            d_out = next(iter(layer.lora_B.values())).weight.shape[0]
            a = torch.zeros(len(names) + 1, r_max, d_in, dtype=w.dtype, device=w.device)
            b = torch.zeros(len(names) + 1, d_out, r_max, dtype=w.dtype, device=w.device)
            for n in layer.lora_A.keys():
                s = self.slots[n]
                la, lb = layer.lora_A[n].weight, layer.lora_B[n].weight
                r = la.shape[0]
                a[s, :r] = la.detach()
                b[s, :, :r] = lb.detach() * layer.scaling[n]
            self._stacks[id(layer)] = (a, b)
        self._disable_peft()

    def _disable_peft(self) -> None:
        """Keep peft's per-adapter path off: the hooks add every row's update themselves."""
        if any(not layer.disable_adapters for layer in self.layers):
            self.model.base_model.disable_adapter_layers()

    @contextlib.contextmanager
    def rows(self, adapters: list[str | None]) -> Iterator[None]:
        """Within the block, forward passes apply ``adapters[i]`` (None: none) to row i."""
        dev = next(iter(self._stacks.values()))[0].device if self._stacks else "cpu"
        self._rows = torch.tensor([self.slots.get(a, 0) if a else 0 for a in adapters], device=dev)
        self._disable_peft()  # cheap check; peft re-enables its layers when adapters change
        try:
            yield
        finally:
            self._rows = None

    def _hook(self, layer, args, output):
        rows = self._rows
        stack = self._stacks.get(id(layer))
        if rows is None or stack is None:
            return output
        x = args[0]
        a, b = stack
        flat = x.dim() == 2
        if flat:
            x = x.unsqueeze(1)
        ar = a.index_select(0, rows)  # (rows, r, d_in)
        br = b.index_select(0, rows)  # (rows, d_out, r)
        delta = torch.bmm(torch.bmm(x.to(ar.dtype), ar.transpose(1, 2)), br.transpose(1, 2))
        if flat:
            delta = delta.squeeze(1)
        return output + delta.to(output.dtype)

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def detach(self) -> None:
        """Remove the hooks and hand the model back to peft with its adapter layers on."""
        self.close()
        self.model.base_model.enable_adapter_layers()
