"""Where batch files are stored, by which id, and how (atomically)."""
