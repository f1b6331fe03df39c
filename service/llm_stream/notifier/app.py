"""``llm-stream notifier``: signed webhooks for every batch that reaches a terminal status.

It reads the batch-status topic in its own consumer group through the shared consume loop
and runtime (so /metrics, /healthz, /readyz and a drain on SIGTERM come with it): one member
of the group delivers each batch's event, and a restart resumes at the first record whose
delivery was not settled. A delivery that fails every attempt is published to the
webhook-failures topic, keyed by batch id.
"""

from __future__ import annotations

import logging
import time

import httpx
import orjson

from llm_stream.contracts import WebhookFailure
from llm_stream.kafka.consume_loop import ConsumeLoop
from llm_stream.kafka.dead_letters import ERROR_HEADER, truncate
from llm_stream.notifier.core import WebhookNotifier
from llm_stream.notifier.delivery import DeliveryOutcome, RetryPolicy, webhook_client
from llm_stream.notifier.endpoints import configured_endpoints
from llm_stream.runtime.role import Role
from llm_stream.settings import Settings

logger = logging.getLogger(__name__)

#: Status records taken per poll: terminal ones become deliveries, the rest are skipped.
_RECORDS_PER_POLL = 500


def failure_record(outcome: DeliveryOutcome, failed_at: int) -> bytes:
    """The value published for a delivery that failed every attempt: enough to replay it."""
    failure = WebhookFailure(
        event=orjson.loads(outcome.event.body()),
        url=outcome.endpoint.display_url,
        attempts=outcome.attempts,
        error=truncate(outcome.last_error or ""),
        failed_at=failed_at,
    )
    return failure.model_dump_json().encode()


class NotifierApp(Role):
    """Final batch statuses into signed webhooks: one consumer-group member of the
    batch-status topic."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        """``transport`` replaces the HTTP transport (tests); WebhookConfigError when the
        webhook settings cannot be used."""
        endpoints = configured_endpoints(settings)
        super().__init__(settings)
        self.client = webhook_client(settings, transport)
        self.notifier = WebhookNotifier(
            endpoints,
            self.client,
            RetryPolicy.from_settings(settings),
            self._publish_failure,
            max_concurrent=settings.webhook_max_concurrent,
        )
        self.loop = ConsumeLoop(
            settings,
            settings.batch_status_topic,
            settings.notifier_group_id,
            self.notifier,
            max_records=_RECORDS_PER_POLL,
        )

    async def drain(self) -> bool:
        logger.info("stopping: finishing %d deliveries under way", self.notifier.in_flight())
        return await self.notifier.drain(self.settings.drain_timeout_s)

    async def _publish_failure(self, outcome: DeliveryOutcome) -> None:
        logger.error(
            "giving up on %s (%s of %s) to %s after %d attempts: %s",
            outcome.event.id,
            outcome.event.type,
            outcome.event.batch_id,
            outcome.endpoint.display_url,
            outcome.attempts,
            outcome.last_error,
        )
        await self.broker.publish(
            failure_record(outcome, int(time.time())),
            self.settings.webhook_failures_topic,
            key=outcome.event.batch_id.encode(),
            headers={
                "content-type": "application/json",
                ERROR_HEADER: truncate(outcome.last_error or ""),
            },
        )

    async def run(self) -> int:
        """Deliver until ``stopping`` is set; return the exit code."""
        try:
            drained = await self.serve()
        finally:
            await self.client.aclose()
        if not drained:
            logger.warning("drain timed out: deliveries under way will be made again")
        return 0


async def serve_notifier(settings: Settings) -> int:
    app = NotifierApp(settings)
    app.stop_on_signals()
    return await app.run()
