"""SNN training core: LIF neurons, models, SDT/TET losses, data, trainer and checkpoints.

Produces checkpoints; imports neither ``landscape`` nor ``analysis``.
"""
