"""Which vLLM serving object answers each endpoint, and with which request model.

vLLM's API server routes a URL to one serving object made by ``init_app_state``; the objects a
model cannot serve are absent (None), which is how a worker knows, and announces, the
endpoints its model serves. Request models are vLLM's own, so a body is refused exactly where
vLLM's server would refuse it. Audio lines take vLLM run-batch's form (``file_url`` instead of
an upload), fetched by vLLM run-batch's own wrapper under this worker's media rule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pydantic

from llm_stream.engine.media_policy import NO_HOST_ALLOWED, MediaPolicy

Handler = Callable[..., Awaitable[Any]]

#: The paths vLLM's server takes for its score and rerank APIs.
SCORE_PATHS = ("/score", "/v1/score")
RERANK_PATHS = ("/rerank", "/v1/rerank", "/v2/rerank")


@dataclass(frozen=True, slots=True)
class Route:
    """An endpoint's request model and handler (None: the loaded model does not serve it);
    ``by_alias``: the body is dumped by its fields' aliases, as vLLM's router dumps it."""

    request_type: pydantic.TypeAdapter[Any]
    handler: Handler | None
    by_alias: bool = False


def vllm_routes(state: Any, media: MediaPolicy) -> dict[str, Route]:
    """One route per supported endpoint, from the serving objects ``init_app_state`` made."""
    from vllm.entrypoints.launchers.run_batch import (
        BatchTranscriptionRequest,
        BatchTranslationRequest,
    )
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest
    from vllm.entrypoints.openai.responses.protocol import ResponsesRequest
    from vllm.entrypoints.pooling.embed.protocol import EmbeddingRequest
    from vllm.entrypoints.pooling.scoring.protocol import RerankRequest, ScoreRequest

    chat = getattr(state, "openai_serving_chat", None)
    completion = getattr(state, "openai_serving_completion", None)
    responses = getattr(state, "openai_serving_responses", None)
    transcription = getattr(state, "openai_serving_transcription", None)
    translation = getattr(state, "openai_serving_translation", None)
    scores = getattr(state, "serving_scores", None)
    # TypeAdapters: EmbeddingRequest and ScoreRequest are unions of pydantic models.
    routes = {
        "/v1/chat/completions": Route(
            pydantic.TypeAdapter(ChatCompletionRequest),
            chat.create_chat_completion if chat else None,
        ),
        "/v1/completions": Route(
            pydantic.TypeAdapter(CompletionRequest),
            completion.create_completion if completion else None,
        ),
        "/v1/embeddings": Route(
            pydantic.TypeAdapter(EmbeddingRequest), getattr(state, "serving_embedding", None)
        ),
        "/v1/responses": Route(
            pydantic.TypeAdapter(ResponsesRequest),
            responses.create_responses if responses else None,
            by_alias=True,
        ),
        "/v1/audio/transcriptions": Route(
            pydantic.TypeAdapter(BatchTranscriptionRequest),
            _audio(transcription.create_transcription, False, media) if transcription else None,
        ),
        "/v1/audio/translations": Route(
            pydantic.TypeAdapter(BatchTranslationRequest),
            _audio(translation.create_translation, True, media) if translation else None,
        ),
    }
    score, rerank = pydantic.TypeAdapter(ScoreRequest), pydantic.TypeAdapter(RerankRequest)
    routes.update({path: Route(score, scores) for path in SCORE_PATHS})
    routes.update({path: Route(rerank, scores) for path in RERANK_PATHS})
    return routes


def served_endpoints(routes: dict[str, Route]) -> tuple[str, ...]:
    """The endpoints the loaded model serves."""
    return tuple(url for url, route in routes.items() if route.handler is not None)


def vllm_media_domains(media: MediaPolicy) -> list[str] | None:
    """vLLM run-batch's ``allowed_media_domains`` for this rule: None fetches from any host."""
    if media.allowed_domains:
        return sorted(media.allowed_domains)
    return None if media.fetch_any_host else [NO_HOST_ALLOWED]


def _audio(handler: Handler, is_translation: bool, media: MediaPolicy) -> Handler:
    """vLLM run-batch's wrapper (``file_url`` fetched, then the upload's handler), taking the
    raw request that every other handler takes."""
    from vllm.entrypoints.launchers.run_batch import make_transcription_wrapper

    wrapper = make_transcription_wrapper(is_translation, vllm_media_domains(media))
    wrapped = wrapper(handler)

    async def serve(request: Any, raw_request: Any) -> Any:
        return await wrapped(request)

    return serve
