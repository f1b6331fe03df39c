"""The AsyncAPI document describes the whole bus: every topic, with its message's schema."""

from __future__ import annotations

import json

from llm_stream.kafka.asyncapi import build_specification
from llm_stream.kafka.contract_files import render
from llm_stream.settings import Settings


def test_asyncapi_documents_every_topic_with_its_message() -> None:
    document = json.loads(render()["asyncapi.json"])
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {
        "llm-stream.requests",
        "llm-stream.results",
        "llm-stream.batches",
        "llm-stream.dead-letter",
        "llm-stream.batch-status",
        "llm-stream.webhook-failures",
        "llm-stream.workers",
        "llm-stream.rate-counts",
        "llm-stream.judgements",
        "llm-stream.requests.{model}",
        "{reply_to}",
    }
    schemas = document["components"]["schemas"]
    expected = {"Request", "Result", "BatchManifest", "Batch", "WebhookFailure"}
    assert expected | {
        "WorkerAnnouncement",
        "RateCount",
        "SingleRequest",
        "Reply",
        "Judgement",
    } <= set(schemas)


def test_the_document_names_the_topics_a_deployment_configures() -> None:
    settings = Settings(requests_topic="acme.requests", results_topic="acme.results")
    document = json.loads(build_specification(settings).to_specification().to_json())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"acme.requests", "acme.results"} <= addresses
    assert not {"llm-stream.requests", "llm-stream.results"} & addresses
