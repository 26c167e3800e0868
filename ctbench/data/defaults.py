"""Defaults of the data commands, kept free of heavy imports so ``ctbench data ... --help`` starts fast."""

DEFAULT_WORKERS = 1
"""Processes ``ctbench data prepare`` runs cases in."""
DEFAULT_N = 8
"""Phantoms ``ctbench data synth`` writes."""
DEFAULT_SEED = 0
"""Seed of ``ctbench data synth``."""
