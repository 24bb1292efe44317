"""How much two forwards at once slow each other, by batch shape, against what the model charges.

    python experiments/validation/contention_shapes.py [--backbone minilm-l6]
        [--shapes 1x8,1x24,1x64,4x64,1x128] [--repeats 24] [--profile FILE]

For each shape, the profiler's own ``contention`` measurement (``k`` threads of this process
running forwards of that shape together, each timing its own) at ``k`` = 1 and 2: the median
forward alone, two at once, and their ratio. The profiler measures it at one shape; the model
scales that slowdown to other shapes by how much each gains from more cores
(``ProfileModel.contention_for``). With ``--profile``, the model's slowdown for the same shape
is printed beside the measured one. Nothing is written; the host must be otherwise idle.
"""

from __future__ import annotations

import argparse
import sys


def _shapes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        b, _, s = part.strip().partition("x")
        if not (b.isdigit() and s.isdigit() and int(b) > 0 and int(s) > 0):
            raise SystemExit(f"--shapes: {part!r} is not BATCHxSEQ_LEN, e.g. 1x64")
        out.append((int(b), int(s)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--shapes", default="1x8,1x24,1x64,4x64,1x128")
    ap.add_argument("--repeats", type=int, default=24)
    ap.add_argument("--profile", help="a CPU profile of the backbone: print the model's slowdown too")
    args = ap.parse_args()
    shapes = _shapes(args.shapes)

    import torch

    from fmplex_exec.backbones import load_backbone
    from fmplex_exec.profiler import _contention_rows, _Gate
    from fmplex_sim.catalog.backbones import get_backbone
    from fmplex_sim.catalog.devices import get_device

    model = None
    if args.profile:
        from fmplex_sim.latency.profile import ProfileModel

        model = ProfileModel(args.profile)
    bb = load_backbone(args.backbone)
    spec, dev = get_backbone(args.backbone), get_device("CPU")
    gen = torch.Generator().manual_seed(0)
    print(f"{args.backbone}, {torch.get_num_threads()} threads per forward; medians of {args.repeats} forwards")
    print(f"{'shape':>8}  {'alone ms':>9}  {'2 at once ms':>12}  {'slowdown':>8}" + ("  model" if model else ""))
    for b, s in shapes:
        rows = _contention_rows(bb, {"backbone": args.backbone}, (1, 2), (b, s), gen, _Gate(False),
                                args.repeats, lambda msg: None)
        one, two = (next(r["median_ms"] for r in rows if r["batch"] == k) for k in (1, 2))
        line = f"{f'{b}x{s}':>8}  {one:9.2f}  {two:12.2f}  {two / one:8.2f}"
        if model is not None:
            line += f"  {model.contention_for(spec, dev, 2, b, s):5.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
