"""What vLLM's media connector fetches with exactly the settings the worker gives the engine,
and that the engine answers a refused media URL itself, before vLLM sees the request.

No multimodal model runs on this project's CPU machines (vLLM's vision models import
torchvision, which has no build for the installed torch), so the fetch is tested here, at vLLM's
``MediaConnector``, against a local listener that counts the connections it accepts.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from llm_stream.engine.media_policy import REDIRECTS_VARIABLE, MediaPolicy
from llm_stream.engine.protocol import EngineRequest
from llm_stream.engine.vllm_engine import VllmEngine
from llm_stream.worker.args import parse_worker_args


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (255, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


class _Listener(ThreadingHTTPServer):
    """Serves a PNG at /image.png and a redirect at /elsewhere; counts accepted connections."""

    def __init__(self, redirect_to: str = "") -> None:
        self.connections = 0
        self.redirect_to = redirect_to
        super().__init__(("127.0.0.1", 0), _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Listener

    def do_GET(self) -> None:
        if self.path == "/elsewhere":
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.end_headers()
            return
        body = _png()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serving(listener: _Listener) -> Iterator[_Listener]:
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        listener.shutdown()
        listener.server_close()
        thread.join()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    yield from _serving(_Listener())


def _worker_connector(flags: Sequence[str], environment: Sequence[str] = ()) -> Any:
    """vLLM's connector as the worker's engine builds it from these worker flags/settings."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.multimodal.media import MediaConnector

    settings, args = parse_worker_args(["--model", "unused", *flags])
    policy = MediaPolicy.from_engine_args(args, fetch_any_host=settings.media_url_fetching)
    policy.configure_engine(args)  # what VllmEngine.start does before building the engine
    engine_args = AsyncEngineArgs.from_cli_args(args)
    return MediaConnector(
        allowed_local_media_path=engine_args.allowed_local_media_path,
        allowed_media_domains=engine_args.allowed_media_domains,
    )


@pytest.fixture(autouse=True)
def _vllm_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from vLLM's own defaults, whatever an earlier one set."""
    for name in (REDIRECTS_VARIABLE, "VLLM_MEDIA_CACHE", "LLM_STREAM_MEDIA_URL_FETCHING"):
        monkeypatch.setenv(name, "")  # so that monkeypatch restores it, set here or not
        monkeypatch.delenv(name)


async def test_by_default_vllm_itself_refuses_to_fetch(listener: _Listener) -> None:
    connector = _worker_connector([])
    with pytest.raises(ValueError, match="allowed domains"):
        await connector.fetch_image_async(f"{listener.url}/image.png")
    assert listener.connections == 0
    image = await connector.fetch_image_async(
        "data:image/png;base64," + base64.b64encode(_png()).decode()
    )
    assert image.size == (2, 2)  # inline data keeps working


async def test_an_allowed_domain_is_fetched(listener: _Listener) -> None:
    connector = _worker_connector(["--allowed-media-domains", "127.0.0.1"])
    image = await connector.fetch_image_async(f"{listener.url}/image.png")
    assert image.size == (2, 2)
    assert listener.connections == 1
    other_host = f"http://localhost:{listener.server_address[1]}/image.png"
    with pytest.raises(ValueError, match="allowed domains"):
        await connector.fetch_image_async(other_host)
    assert listener.connections == 1


async def test_fetching_turned_on_reaches_any_host(
    listener: _Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_STREAM_MEDIA_URL_FETCHING", "true")
    connector = _worker_connector([])
    assert (await connector.fetch_image_async(f"{listener.url}/image.png")).size == (2, 2)
    assert listener.connections == 1
    flagged = _worker_connector(["--media-url-fetching"])
    assert (await flagged.fetch_image_async(f"{listener.url}/image.png")).size == (2, 2)
    assert listener.connections == 2


async def test_an_allowed_host_cannot_redirect_the_fetch_elsewhere(listener: _Listener) -> None:
    for internal in _serving(_Listener()):
        redirector = _Listener(redirect_to=f"{internal.url}/image.png")
        for allowed in _serving(redirector):
            connector = _worker_connector(["--allowed-media-domains", "127.0.0.1"])
            # The 302's empty body is all vLLM gets: not an image.
            with pytest.raises(ValueError, match="Failed to load image"):
                await connector.fetch_image_async(f"{allowed.url}/elsewhere")
            assert allowed.connections == 1
            assert internal.connections == 0


class _Chat:
    """vLLM's serving object, reduced to what the engine calls; records what reached it."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def create_chat_completion(self, request: Any, raw_request: Any) -> Any:
        from starlette.responses import JSONResponse

        self.requests.append(request)
        return JSONResponse({"id": "chatcmpl-1", "object": "chat.completion"})


def _chat_line(url: str) -> EngineRequest:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "hi"}]
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    return EngineRequest("POST", "/v1/chat/completions", body)


async def test_the_engine_answers_a_refused_url_before_vllm_sees_it(listener: _Listener) -> None:
    chat = _Chat()
    engine = VllmEngine(SimpleNamespace(errored=False), SimpleNamespace(openai_serving_chat=chat))
    reply = await engine.serve(_chat_line(f"{listener.url}/image.png"))
    assert reply.response.status_code == 400
    assert reply.response.body is not None
    assert "fetching media URLs is turned off" in reply.response.body["error"]["message"]
    assert chat.requests == []
    assert listener.connections == 0

    inline = await engine.serve(_chat_line("data:image/png;base64,iVBORw0KGgo="))
    assert (inline.response.status_code, len(chat.requests)) == (200, 1)

    allowed = VllmEngine(
        SimpleNamespace(errored=False),
        SimpleNamespace(openai_serving_chat=chat),
        media=MediaPolicy(allowed_domains=frozenset({"127.0.0.1"})),
    )
    passed = await allowed.serve(_chat_line(f"{listener.url}/image.png"))
    assert (passed.response.status_code, len(chat.requests)) == (200, 2)
