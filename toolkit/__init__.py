"""The bottom floor every package stands on: errors and exit codes, atomic files and devices,
settings and the flags made from them, the command runner and progress. Imports nothing else of
the toolkit."""
