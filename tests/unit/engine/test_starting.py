"""An engine still starting: requests wait for it, a failed start makes it unavailable."""

from __future__ import annotations

import asyncio

import pytest

from llm_stream.engine.echo import EchoEngine
from llm_stream.engine.protocol import EngineRequest, EngineUnavailableError, InferenceEngine
from llm_stream.engine.starting import StartingEngine

REQUEST = EngineRequest(
    method="POST", url="/v1/completions", body={"model": "echo", "prompt": "hi", "max_tokens": 1}
)


async def test_a_request_waits_for_the_start_then_is_served() -> None:
    ready: asyncio.Future[InferenceEngine] = asyncio.get_running_loop().create_future()
    engine = StartingEngine(ready, max_concurrency=7, served_models=("tiny",))
    serving = asyncio.create_task(engine.serve(REQUEST))
    await asyncio.sleep(0.01)
    assert not serving.done()
    await engine.check_health()  # starting is not dead
    assert engine.max_concurrency == 7
    ready.set_result(EchoEngine())
    reply = await asyncio.wait_for(serving, 5)
    assert reply.response.status_code == 200
    assert engine.failure is None
    await engine.close()


async def test_a_failed_start_makes_requests_and_health_unavailable() -> None:
    async def fails() -> InferenceEngine:
        raise RuntimeError("no memory for the KV cache")

    engine = StartingEngine(fails(), max_concurrency=1, served_models=("tiny",))
    with pytest.raises(EngineUnavailableError, match="no memory for the KV cache"):
        await engine.serve(REQUEST)
    with pytest.raises(EngineUnavailableError):
        await engine.check_health()
    assert isinstance(engine.failure, RuntimeError)
    await engine.close()  # nothing to close


async def test_close_waits_for_the_start_and_closes_the_engine() -> None:
    closed: list[bool] = []

    class Closing(EchoEngine):
        async def close(self) -> None:
            closed.append(True)

    async def slow() -> InferenceEngine:
        await asyncio.sleep(0.05)
        return Closing()

    engine = StartingEngine(slow(), max_concurrency=1, served_models=("tiny",))
    await engine.close()
    assert closed == [True]


async def test_its_endpoints_are_known_once_the_engine_has_started() -> None:
    ready: asyncio.Future[InferenceEngine] = asyncio.get_running_loop().create_future()
    engine = StartingEngine(ready, max_concurrency=1, served_models=("tiny",))
    assert engine.served_endpoints is None
    ready.set_result(EchoEngine())
    await engine.started()
    assert engine.served_endpoints == EchoEngine().served_endpoints
    await engine.close()
