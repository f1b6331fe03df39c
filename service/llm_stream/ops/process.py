"""What a role's process sets up once: logging and tracing, the garbage collector's pace, and
whether Ctrl-C stopped it (for the exit code)."""

from __future__ import annotations

import gc
import threading

from llm_stream.ops.logs import configure_logging
from llm_stream.ops.telemetry import configure_tracing
from llm_stream.settings import Settings

#: Set when Ctrl-C (SIGINT) stopped a role of this process: after its clean stop, the command
#: exits 130 as an interrupted one does (SIGTERM, an orchestrator's stop, exits 0).
_INTERRUPTED = threading.Event()


def interrupted() -> bool:
    """Whether Ctrl-C stopped a role of this process (a signal is the process's)."""
    return _INTERRUPTED.is_set()


def mark_interrupted() -> None:
    _INTERRUPTED.set()


#: Container allocations between young-generation collections (CPython's default is 700).
#: A poll's thousand records, each a dozen objects, outlive many collections at 700, get
#: promoted, and soon make every collection a full one over the whole heap: that was a third of
#: the aggregator's CPU. Our records hold no cycles; refcounting frees them either way.
YOUNG_COLLECTION_THRESHOLD = 20_000


def collect_garbage_less_often() -> None:
    """Raise the young generation's threshold (process-wide; never lowers it)."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_COLLECTION_THRESHOLD), middle, old)


def start_process(settings: Settings, service_name: str) -> None:
    """Logging and tracing of a role's process, before its event loop starts."""
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing(settings, service_name)
