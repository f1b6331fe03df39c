"""The command line and the local tools (run-batch, bench, broker, tiny model)."""
