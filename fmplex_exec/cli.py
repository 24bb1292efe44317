"""``fmplex-exec``: the real-execution harness's command line.

``env`` reports whether the optional execution stack (torch, transformers, peft) is installed
and which devices it can use; the harness commands build on it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from fmplex_exec import __version__


def cmd_env(args) -> int:
    info: dict = {"fmplex_exec": __version__, "python": sys.version.split()[0], "packages": {}}
    for name in ("torch", "transformers", "peft"):
        try:
            mod = importlib.import_module(name)
            info["packages"][name] = getattr(mod, "__version__", "unknown")
        except ImportError:
            info["packages"][name] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        info["cuda"] = bool(torch.cuda.is_available())
        info["devices"] = ["cpu"] + [
            f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
        ]
        info["cpu_threads"] = torch.get_num_threads()
    missing = [k for k, v in info["packages"].items() if v is None]
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
        if missing:
            print(f"missing: {', '.join(missing)} (install with: pip install -e '.[exec]')")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fmplex-exec", description="Run FMplex policies on real models.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("env", help="report the execution stack and devices")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_env)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
