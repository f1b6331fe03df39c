"""llm-stream: Kafka as an LLM batch-inference bus built on vLLM.

The public surface, pinned by a test: the client library and its fake for tests, the errors
it raises (all under ``LlmStreamError``), the message contracts, the batch statuses and the
settings. Everything else (the roles, the engine, the Kafka plumbing) is
importable by its module path but may change between releases.

Names load on first use (PEP 562): every command imports this package, and ``run-batch`` must
not spend the client library's import (Kafka clients, half a second) before vLLM's engine
starts; it loads it while the engine does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llm_stream._version import __version__

if TYPE_CHECKING:
    from llm_stream.batch.status import TERMINAL_STATUSES
    from llm_stream.client import (
        BatchClient,
        BatchHandle,
        BatchStatusView,
        BatchWriter,
        ClientConfig,
        EmptyBatchError,
        FakeBatchClient,
        InvalidLineError,
        ModelNotServedError,
        ReplyTimeoutError,
        StatusViewStoppedError,
        SubmitError,
    )
    from llm_stream.contracts import (
        BatchManifest,
        BatchObject,
        BatchStatus,
        BatchUsage,
        ReplyMessage,
        RequestCounts,
        RequestMessage,
        ResponseData,
        ResultMessage,
    )
    from llm_stream.errors import LlmStreamError
    from llm_stream.kafka.connection import KafkaSecurityConfigError, KafkaTlsError
    from llm_stream.kafka.oauth import OAuthTokenError
    from llm_stream.settings import Settings, SettingsRefusedError

_HOMES = {
    "TERMINAL_STATUSES": "llm_stream.batch.status",
    "BatchStatus": "llm_stream.contracts",
    "BatchClient": "llm_stream.client",
    "BatchHandle": "llm_stream.client",
    "BatchStatusView": "llm_stream.client",
    "BatchWriter": "llm_stream.client",
    "ClientConfig": "llm_stream.client",
    "EmptyBatchError": "llm_stream.client",
    "FakeBatchClient": "llm_stream.client",
    "InvalidLineError": "llm_stream.client",
    "ModelNotServedError": "llm_stream.client",
    "ReplyTimeoutError": "llm_stream.client",
    "StatusViewStoppedError": "llm_stream.client",
    "SubmitError": "llm_stream.client",
    "LlmStreamError": "llm_stream.errors",
    "KafkaSecurityConfigError": "llm_stream.kafka.connection",
    "KafkaTlsError": "llm_stream.kafka.connection",
    "OAuthTokenError": "llm_stream.kafka.oauth",
    "SettingsRefusedError": "llm_stream.settings",
    "BatchManifest": "llm_stream.contracts",
    "BatchObject": "llm_stream.contracts",
    "BatchUsage": "llm_stream.contracts",
    "ReplyMessage": "llm_stream.contracts",
    "RequestCounts": "llm_stream.contracts",
    "RequestMessage": "llm_stream.contracts",
    "ResponseData": "llm_stream.contracts",
    "ResultMessage": "llm_stream.contracts",
    "Settings": "llm_stream.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'llm_stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
    "EmptyBatchError",
    "FakeBatchClient",
    "InvalidLineError",
    "KafkaSecurityConfigError",
    "KafkaTlsError",
    "LlmStreamError",
    "ModelNotServedError",
    "OAuthTokenError",
    "ReplyMessage",
    "ReplyTimeoutError",
    "RequestCounts",
    "RequestMessage",
    "ResponseData",
    "ResultMessage",
    "Settings",
    "SettingsRefusedError",
    "StatusViewStoppedError",
    "SubmitError",
    "__version__",
]
