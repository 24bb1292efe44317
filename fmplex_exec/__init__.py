"""fmplex_exec: the real execution harness (torch, transformers, peft) for FMplex policies.

It imports the simulator's policies and specs; the simulator never imports it.
"""

__version__ = "0.1.0"
