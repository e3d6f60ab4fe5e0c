"""The loss-surface feature: a surface's settings and grid, its directions, and its resumable,
shareable computation on the engine's ``SurfaceEvaluator``."""
