"""The package's version, in a module of its own: every part may import it without
importing the package's public surface (which imports the client, which imports them)."""

__version__ = "0.1.0"
