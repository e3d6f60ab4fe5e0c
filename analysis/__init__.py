"""Analysis commands: checkpoints in, result files and figures out."""
