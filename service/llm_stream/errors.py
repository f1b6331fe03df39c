"""The root of the project's own exceptions.

Every error the library raises on purpose derives from ``LlmStreamError``, so a caller can
catch them all in one ``except``; each also keeps the built-in base it had (``ValueError`` for
bad input, ``RuntimeError`` for a failed operation), so older ``except`` clauses still hold.
"""

from __future__ import annotations


class LlmStreamError(Exception):
    """Base of every exception llm-stream raises on purpose."""
