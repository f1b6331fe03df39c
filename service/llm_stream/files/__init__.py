"""Where batch files are written, and how (atomically)."""
