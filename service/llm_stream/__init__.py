"""llm-stream: Kafka as an LLM batch-inference bus built on vLLM.

The public surface, pinned by a test: the client library, the message contracts, the batch
statuses and the settings. Everything else (the roles, the engine, the Kafka plumbing) is
importable by its module path but may change between releases.
"""

__version__ = "0.1.0"

from llm_stream.batch.status import TERMINAL_STATUSES, BatchStatus
from llm_stream.client import (
    BatchClient,
    BatchHandle,
    BatchStatusView,
    BatchWriter,
    ClientConfig,
    InvalidLineError,
    SubmitError,
)
from llm_stream.contracts import (
    BatchManifest,
    BatchObject,
    BatchUsage,
    RequestCounts,
    RequestMessage,
    ResponseData,
    ResultMessage,
)
from llm_stream.settings import Settings

__all__ = [
    "TERMINAL_STATUSES",
    "BatchClient",
    "BatchHandle",
    "BatchManifest",
    "BatchObject",
    "BatchStatus",
    "BatchStatusView",
    "BatchUsage",
    "BatchWriter",
    "ClientConfig",
    "InvalidLineError",
    "RequestCounts",
    "RequestMessage",
    "ResponseData",
    "ResultMessage",
    "Settings",
    "SubmitError",
    "__version__",
]
