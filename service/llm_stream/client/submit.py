"""Submit a batch whose manifest is already built, with a process's full ``Settings``.

For callers that hold both (tests, embedded pipelines): the topics are created first, then
``BatchClient.submit`` publishes. Services use ``BatchClient`` directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llm_stream.client.batch_client import BatchClient
from llm_stream.client.publishing import OnPublished
from llm_stream.contracts import BatchManifest
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings


async def publish_batch(
    settings: Settings,
    manifest: BatchManifest,
    lines: Iterable[Mapping[str, Any]],
    on_published: OnPublished | None = None,
) -> int:
    """Publish the manifest, then every request line with ``batch_id`` added; return the count."""
    await ensure_topics(settings)
    async with BatchClient.from_settings(settings) as client:
        await client.submit(
            lines,
            batch_id=manifest.batch_id,
            endpoint=manifest.endpoint,
            metadata=manifest.metadata,
            completion_window=manifest.completion_window,
            request_count=manifest.request_count,
            on_published=on_published,
        )
    return manifest.request_count
