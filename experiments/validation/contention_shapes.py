"""How much two forwards at once slow each other, by batch shape, against what the model charges.

    python experiments/validation/contention_shapes.py [--backbone minilm-l6]
        [--shapes 1x8,1x24,1x64,4x64,1x128] [--streams 1,2] [--repeats 24] [--profile FILE]

For each shape, the profiler's own ``contention`` measurement (``k`` threads of this process
running forwards of that shape together, each timing its own) at each ``k`` of ``--streams``
(1 first): the median forward alone, then at each ``k`` its median and its ratio to alone. The profiler measures it at one shape; the model
scales that slowdown to other shapes by how much each gains from more cores
(``ProfileModel.contention_for``). With ``--profile``, the model's slowdown for the same shape
is printed beside the measured one. Nothing is written; the host must be otherwise idle.
"""

from __future__ import annotations

import argparse
import sys


def _shapes(text: str) -> list[tuple[int, int]]:
    """``"1x16,4x32"`` as ``[(1, 16), (4, 32)]``: an argparse ``type``, so a bad part is a
    usage error naming its flag (exit 2)."""
    out = []
    for part in text.split(","):
        b, _, s = part.strip().partition("x")
        if not (b.isdigit() and s.isdigit() and int(b) > 0 and int(s) > 0):
            raise argparse.ArgumentTypeError(f"{part!r} is not BATCHxSEQ_LEN, e.g. 1x64")
        out.append((int(b), int(s)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--shapes", type=_shapes, default="1x8,1x24,1x64,4x64,1x128")
    ap.add_argument("--streams", default="1,2", help="threads running at once, 1 first (default 1,2)")
    ap.add_argument("--repeats", type=int, default=24)
    ap.add_argument("--profile", help="a CPU profile of the backbone: print the model's slowdown too")
    args = ap.parse_args()
    shapes = args.shapes
    streams = [int(k) for k in args.streams.split(",") if k.strip().isdigit()]
    if not streams or streams[0] != 1 or sorted(set(streams)) != streams:
        ap.error(f"--streams: {args.streams!r} is not increasing thread counts from 1, e.g. 1,2,3")

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
    print(f"{'shape':>8}  {'alone ms':>9}" + "".join(f"  {f'k={k} ms':>9}  {'slowdown':>8}" + ("  model" if model else "")
                                                   for k in streams[1:]))
    for b, s in shapes:
        rows = _contention_rows(bb, {"backbone": args.backbone}, tuple(streams), (b, s), gen, _Gate(False),
                                args.repeats, lambda msg: None)
        ms = {k: next(r["median_ms"] for r in rows if r["batch"] == k) for k in streams}
        line = f"{f'{b}x{s}':>8}  {ms[1]:9.2f}"
        for k in streams[1:]:
            line += f"  {ms[k]:9.2f}  {ms[k] / ms[1]:8.2f}"
            if model is not None:
                line += f"  {model.contention_for(spec, dev, k, b, s):5.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
