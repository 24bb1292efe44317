"""fmplex_sim: a discrete-event simulator for serving many tasks on shared foundation-model backbones."""

__version__ = "0.1.0"
