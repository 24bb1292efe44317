"""fmplex_exec: the real execution harness (torch, transformers, peft) for FMplex policies.

It imports the simulator's policies and specs; the simulator never imports it.
"""

import warnings

__version__ = "0.1.0"

# peft asks transformers about gradient checkpointing through a name transformers 5 deprecated;
# harmless for inference and not ours to fix, so keep it out of every replay's output.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
