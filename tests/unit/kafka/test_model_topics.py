from __future__ import annotations

import re

import pytest

from llm_stream.kafka.model_topics import model_group, model_requests_topic, model_suffix

_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def test_a_legal_name_is_its_own_suffix() -> None:
    assert (
        model_requests_topic("llm-stream.requests", "tiny-1.5b") == "llm-stream.requests.tiny-1.5b"
    )
    assert model_group("llm-stream-workers", "tiny") == "llm-stream-workers.tiny"


@pytest.mark.parametrize(
    "model", ["org/model", "org_model", "a:b", "ü", "..", "x" * 300, "x" * 121, "a b"]
)
def test_any_name_gives_a_legal_topic(model: str) -> None:
    assert _LEGAL_TOPIC.fullmatch(model_requests_topic("llm-stream.requests", model))


def test_names_that_read_alike_once_made_legal_get_distinct_topics() -> None:
    names = ["org/model", "org_model", "org:model", "x" * 200, "x" * 201]
    assert len({model_suffix(name) for name in names}) == len(names)
