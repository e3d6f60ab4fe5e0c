"""The analysis commands' runner: checkpoint inputs, the shared data flags and output handling."""
