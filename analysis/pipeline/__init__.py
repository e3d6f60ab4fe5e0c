"""Pipelines of the toolkit's commands: jobs skipped when their outputs exist, the demo's stages."""
