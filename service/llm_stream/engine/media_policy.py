"""Which media URLs a request may make the engine fetch: none, unless the operator says so.

A chat (or chat-style embedding) request may carry ``image_url``, ``audio_url`` and
``video_url`` parts, a Responses request ``input_image`` and ``input_file`` parts, and an audio
line (vLLM run-batch's form) a ``file_url``. On a multimodal model vLLM
fetches their http(s) URLs from the worker's own network, and by default from any host: anyone
who can write to the requests topic could make every worker fetch internal addresses (SSRF).

The rule, decided here alone:

- ``data:`` URLs are inline (base64) and always served; nothing is fetched.
- http(s) URLs are fetched only from the hosts in vLLM's ``--allowed-media-domains``, or from
  any host when the operator turns fetching on (``Settings.media_url_fetching``); a listed
  domain restricts even then. Redirects are not followed unless ``VLLM_MEDIA_URL_ALLOW_REDIRECTS``
  says so, since an allowed host could redirect to an internal one.
- ``file:`` URLs are read only under vLLM's ``--allowed-local-media-path`` (vLLM's own rule).

A request that breaks the rule is answered 400 before vLLM sees it, with a message that says
what to do. vLLM's own domain check is set to the same rule as a second guard, so a media part
this module does not know about is refused by vLLM rather than fetched. URLs are parsed with
the parser vLLM uses (urllib3's), so both read the same host.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from llm_stream.batch.error_bodies import describe, error_response
from llm_stream.contracts import ResponseData

#: The keys of a content part whose value is (or holds, under ``url``) a media URL, as vLLM's
#: chat parser reads them (``input_image`` parts keep theirs under ``image_url`` too, and
#: Responses' ``input_file`` parts under ``file_url``).
MEDIA_URL_KEYS: Final = ("image_url", "audio_url", "video_url", "file_url")
#: A domain no URL can name (``.invalid`` never resolves, RFC 2606): with it as vLLM's only
#: allowed domain, vLLM itself refuses every http(s) media URL.
NO_HOST_ALLOWED: Final = "media-url-fetching-is-off.invalid"
REDIRECTS_VARIABLE: Final = "VLLM_MEDIA_URL_ALLOW_REDIRECTS"


@dataclass(frozen=True, slots=True)
class MediaUrl:
    """One media URL of a request and where it sits (``messages[0].content[1].image_url``)."""

    where: str
    url: str


def media_urls(body: Mapping[str, Any]) -> Iterator[MediaUrl]:
    """Every media URL of a request, in order, as vLLM reads them: parts of chat ``messages``
    and of Responses ``input`` items, and an audio line's ``file_url`` (vLLM run-batch's form)."""
    file_url = body.get("file_url")
    if isinstance(file_url, str):
        yield MediaUrl("file_url", file_url)
    for field in ("messages", "input"):
        items = body.get(field)
        if isinstance(items, list):
            yield from _part_urls(field, items)


def _part_urls(field: str, items: list[Any]) -> Iterator[MediaUrl]:
    for m, message in enumerate(items):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for p, part in enumerate(content):
            if not isinstance(part, Mapping):
                continue
            for key in MEDIA_URL_KEYS:
                value = part.get(key)
                url = value.get("url") if isinstance(value, Mapping) else value
                if isinstance(url, str):
                    yield MediaUrl(f"{field}[{m}].content[{p}].{key}", url)


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """The media URLs this worker's engine may fetch."""

    allowed_domains: frozenset[str] = frozenset()
    fetch_any_host: bool = False
    local_media_path: str = ""

    @classmethod
    def from_engine_args(
        cls, args: argparse.Namespace, *, fetch_any_host: bool = False
    ) -> MediaPolicy:
        """From vLLM's own flags (``--allowed-media-domains``, ``--allowed-local-media-path``)
        and the service's ``media_url_fetching`` setting."""
        return cls(
            allowed_domains=frozenset(getattr(args, "allowed_media_domains", None) or ()),
            fetch_any_host=fetch_any_host,
            local_media_path=getattr(args, "allowed_local_media_path", "") or "",
        )

    @property
    def fetches_http(self) -> bool:
        return self.fetch_any_host or bool(self.allowed_domains)

    def configure_engine(self, args: argparse.Namespace) -> None:
        """Set vLLM's own guards to this rule, before the engine is built from ``args``."""
        if not self.fetches_http:
            args.allowed_media_domains = [NO_HOST_ALLOWED]
        os.environ.setdefault(REDIRECTS_VARIABLE, "0")

    def refusal(self, body: Mapping[str, Any]) -> ResponseData | None:
        """The 400 answer to a request with a media URL this policy does not fetch, else None."""
        for media in media_urls(body):
            problem = self._problem(media.url)
            if problem is not None:
                return error_response(
                    HTTPStatus.BAD_REQUEST,
                    f"{media.where} is {describe(media.url)}: {problem}",
                    error_type="BadRequestError",
                    param=media.where.split("[")[0],
                )
        return None

    def _problem(self, url: str) -> str | None:
        if url[:5].lower() == "data:":  # vLLM's own test for an inline URL
            return None
        try:
            parsed = parse_url(url)
        except LocationParseError:
            return "not a URL this service can read; send the media inline as a data: URL."
        scheme = (parsed.scheme or "").lower()
        if scheme.startswith("http"):  # vLLM's own test for a URL it fetches
            return self._http_problem(parsed.hostname)
        if scheme == "file" and not self.local_media_path:
            return (
                "reading local files is turned off on this deployment; send the media inline "
                "as a data: URL (base64)."
            )
        return None  # file: URLs under --allowed-local-media-path, others vLLM refuses itself

    def _http_problem(self, host: str | None) -> str | None:
        if self.allowed_domains:
            if host in self.allowed_domains:
                return None
            allowed = ", ".join(sorted(self.allowed_domains))
            return (
                f"fetching media from {describe(host)} is not allowed on this deployment (allowed "
                f"hosts: {allowed}); send the media inline as a data: URL (base64)."
            )
        if self.fetch_any_host:
            return None
        return (
            "fetching media URLs is turned off on this deployment; send the media inline as a "
            "data: URL (base64), or ask the operator to allow its host (vLLM's "
            "--allowed-media-domains)."
        )
