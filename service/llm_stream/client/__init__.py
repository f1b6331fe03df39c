"""The client library: submit batches to Kafka and read their status, or ask one request and
wait for its reply (``BatchClient``), and an in-memory ``FakeBatchClient`` for the tests of
code that uses one."""

from llm_stream.client.batch_client import BatchClient, SubmitError
from llm_stream.client.config import ClientConfig
from llm_stream.client.handle import BatchHandle
from llm_stream.client.manifests import new_batch_id
from llm_stream.client.request_reply import ReplyTimeoutError
from llm_stream.client.served_models import ModelNotServedError
from llm_stream.client.status_view import BatchStatusView, StatusViewStoppedError
from llm_stream.client.testing import FakeBatchClient
from llm_stream.client.writer import BatchWriter, EmptyBatchError, InvalidLineError

__all__ = [
    "BatchClient",
    "BatchHandle",
    "BatchStatusView",
    "BatchWriter",
    "ClientConfig",
    "EmptyBatchError",
    "FakeBatchClient",
    "InvalidLineError",
    "ModelNotServedError",
    "ReplyTimeoutError",
    "StatusViewStoppedError",
    "SubmitError",
    "new_batch_id",
]
