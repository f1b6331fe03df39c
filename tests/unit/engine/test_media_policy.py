"""The media rule: which URLs in a request the engine may fetch (none by default)."""

from __future__ import annotations

import argparse
import os
from typing import Any

import pytest

from llm_stream.engine.media_policy import (
    NO_HOST_ALLOWED,
    REDIRECTS_VARIABLE,
    MediaPolicy,
    MediaUrl,
    media_urls,
)

PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="


def _chat(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": [*parts]}]}


def _image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def _message(body: dict[str, Any], policy: MediaPolicy) -> str:
    refusal = policy.refusal(body)
    assert refusal is not None
    assert refusal.status_code == 400
    assert refusal.body is not None
    error = refusal.body["error"]
    assert (error["code"], error["type"], error["param"]) == (400, "BadRequestError", "messages")
    return str(error["message"])


def test_every_media_part_vllm_reads_is_found() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "plain text is no media"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see http://example.com/in-text"},
                    _image("http://a.example/1.png"),
                    {"type": "audio_url", "audio_url": {"url": "https://b.example/2.wav"}},
                    {"type": "video_url", "video_url": {"url": "file:///srv/3.mp4"}},
                    {"type": "input_image", "image_url": "http://c.example/4.png"},
                    {"image_url": "http://d.example/5.png", "uuid": "u"},  # vLLM's typeless form
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            },
        ]
    }
    assert list(media_urls(body)) == [
        MediaUrl("messages[1].content[1].image_url", "http://a.example/1.png"),
        MediaUrl("messages[1].content[2].audio_url", "https://b.example/2.wav"),
        MediaUrl("messages[1].content[3].video_url", "file:///srv/3.mp4"),
        MediaUrl("messages[1].content[4].image_url", "http://c.example/4.png"),
        MediaUrl("messages[1].content[5].image_url", "http://d.example/5.png"),
    ]


@pytest.mark.parametrize(
    "body",
    [{"prompt": "x"}, {"messages": "not a list"}, {"messages": [None, {"content": [None, 3]}]}],
)
def test_bodies_without_media_parts_have_no_urls(body: dict[str, Any]) -> None:
    assert list(media_urls(body)) == []
    assert MediaPolicy().refusal(body) is None


def test_by_default_no_url_is_fetched_and_inline_data_still_works() -> None:
    policy = MediaPolicy()
    assert policy.refusal(_chat(_image(PNG_DATA_URL))) is None
    assert policy.refusal(_chat(_image("DATA:image/png;base64,AAAA"))) is None
    message = _message(_chat(_image("http://10.0.0.1/latest/meta-data")), policy)
    assert message.startswith("messages[0].content[0].image_url is 'http://10.0.0.1/latest/")
    assert "fetching media URLs is turned off" in message
    assert "data: URL" in message
    assert "--allowed-media-domains" in message
    assert "turned off" in _message(_chat(_image("HTTPS://internal.example/x")), policy)
    local = _message(_chat(_image("file:///etc/passwd")), policy)
    assert "reading local files is turned off" in local


def test_the_first_refused_url_is_named_even_after_an_inline_one() -> None:
    body = _chat(_image(PNG_DATA_URL), _image("http://127.0.0.1:1/x.png"))
    assert _message(body, MediaPolicy()).startswith("messages[0].content[1].image_url")


def test_allowed_domains_are_the_only_hosts_fetched() -> None:
    policy = MediaPolicy(allowed_domains=frozenset({"images.example.com"}))
    assert policy.fetches_http
    assert policy.refusal(_chat(_image("https://images.example.com/cat.png"))) is None
    assert policy.refusal(_chat(_image(PNG_DATA_URL))) is None
    other = _message(_chat(_image("http://169.254.169.254/")), policy)
    assert "'169.254.169.254' is not allowed" in other
    assert "allowed hosts: images.example.com" in other
    # The host urllib3 (vLLM's parser) reads, not the one a reader might see.
    disguised = _image("http://images.example.com@10.0.0.1/cat.png")
    assert "'10.0.0.1' is not allowed" in _message(_chat(disguised), policy)


def test_fetching_on_allows_any_host_unless_domains_restrict_it() -> None:
    anywhere = MediaPolicy(fetch_any_host=True)
    assert anywhere.refusal(_chat(_image("http://10.0.0.1/x.png"))) is None
    restricted = MediaPolicy(allowed_domains=frozenset({"a.example"}), fetch_any_host=True)
    assert restricted.refusal(_chat(_image("http://a.example/x.png"))) is None
    assert restricted.refusal(_chat(_image("http://b.example/x.png"))) is not None


def test_local_files_are_left_to_vllm_under_an_allowed_path() -> None:
    policy = MediaPolicy(local_media_path="/srv/media")
    assert policy.refusal(_chat(_image("file:///srv/media/cat.png"))) is None


def test_a_url_that_cannot_be_parsed_is_refused() -> None:
    message = _message(_chat(_image("http://[not-an-ip/x.png")), MediaPolicy(fetch_any_host=True))
    assert "not a URL this service can read" in message


def test_the_policy_is_read_from_vllms_own_flags() -> None:
    args = argparse.Namespace(
        allowed_media_domains=["a.example", "b.example"], allowed_local_media_path="/srv"
    )
    policy = MediaPolicy.from_engine_args(args, fetch_any_host=True)
    assert policy == MediaPolicy(frozenset({"a.example", "b.example"}), True, "/srv")
    empty = argparse.Namespace(allowed_media_domains=None, allowed_local_media_path="")
    assert MediaPolicy.from_engine_args(empty) == MediaPolicy()


def test_vllms_own_guard_is_set_to_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REDIRECTS_VARIABLE, "")  # so that monkeypatch restores it
    monkeypatch.delenv(REDIRECTS_VARIABLE)
    off = argparse.Namespace(allowed_media_domains=None)
    MediaPolicy().configure_engine(off)
    assert off.allowed_media_domains == [NO_HOST_ALLOWED]
    assert os.environ[REDIRECTS_VARIABLE] == "0"
    listed = argparse.Namespace(allowed_media_domains=["a.example"])
    MediaPolicy(allowed_domains=frozenset({"a.example"})).configure_engine(listed)
    assert listed.allowed_media_domains == ["a.example"]
    anywhere = argparse.Namespace(allowed_media_domains=None)
    MediaPolicy(fetch_any_host=True).configure_engine(anywhere)
    assert anywhere.allowed_media_domains is None
    monkeypatch.setenv(REDIRECTS_VARIABLE, "1")  # the operator's choice is kept
    MediaPolicy().configure_engine(argparse.Namespace())
    assert os.environ[REDIRECTS_VARIABLE] == "1"


def test_responses_input_parts_and_an_audio_lines_file_url_are_media_urls() -> None:
    body = {
        "file_url": "https://e.example/a.wav",
        "input": [
            "text",
            {"role": "user", "content": [{"type": "input_image", "image_url": "http://f/1.png"}]},
            {"role": "user", "content": [{"type": "input_file", "file_url": "http://g/2.pdf"}]},
        ],
    }
    assert list(media_urls(body)) == [
        MediaUrl("file_url", "https://e.example/a.wav"),
        MediaUrl("input[1].content[0].image_url", "http://f/1.png"),
        MediaUrl("input[2].content[0].file_url", "http://g/2.pdf"),
    ]
    refusal = MediaPolicy().refusal({"input": body["input"]})
    assert refusal is not None
    assert refusal.body is not None
    assert refusal.body["error"]["param"] == "input"
    assert MediaPolicy(fetch_any_host=True).refusal(body) is None
