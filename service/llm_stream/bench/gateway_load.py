"""Load on a gateway over loopback, for ``bench_gateway``: latency at one connection and
requests per second at many, each bounded in count and in time.

Requests per second come from ``wrk`` when it is installed (it costs the shared CPU far less
than a Python client does, so the gateway's own figure shows), else from an httpx loop.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

import httpx

from llm_stream.errors import LlmStreamError

#: wrk's summary line, e.g. ``Requests/sec:   2345.67``.
_WRK_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
#: wrk's count of answers outside 2xx and 3xx, when there are any.
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


class LoadError(LlmStreamError, RuntimeError):
    """The gateway answered with an error under load: the figures would mean nothing."""


@dataclass(frozen=True)
class Latency:
    """Sequential requests on one connection, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Rate:
    """Requests answered per second at ``connections`` concurrent connections."""

    connections: int
    per_second: float
    tool: str


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def latency(url: str, *, count: int, seconds: float) -> Latency:
    """``count`` GETs one after the other (or as many as ``seconds`` allow), after a warm-up."""
    durations: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(20):
            _check(await client.get(url))
        deadline = time.perf_counter() + seconds
        while len(durations) < count and time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.get(url)
            durations.append(time.perf_counter() - started)
            _check(response)
    durations.sort()
    return Latency(
        len(durations), percentile(durations, 0.5) * 1000, percentile(durations, 0.99) * 1000
    )


async def rate(url: str, *, connections: int, seconds: float, tool: str = "auto") -> Rate:
    """Requests per second at ``connections`` connections for ``seconds``."""
    if tool == "wrk" or (tool == "auto" and shutil.which("wrk")):
        return await asyncio.to_thread(_wrk_rate, url, connections, seconds)
    return await _httpx_rate(url, connections, seconds)


def _wrk_rate(url: str, connections: int, seconds: float) -> Rate:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    found = _WRK_RATE.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise LoadError(f"wrk failed: {done.stdout}{done.stderr}")
    if (errors := _WRK_NON_2XX.search(done.stdout)) is not None:
        raise LoadError(f"{errors.group(1)} answers were errors: {done.stdout}")
    return Rate(connections, float(found.group(1)), "wrk")


async def _httpx_rate(url: str, connections: int, seconds: float) -> Rate:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    answered = 0
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def one_connection() -> None:
            nonlocal answered
            while time.perf_counter() < deadline:
                _check(await client.get(url))
                answered += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_connection() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return Rate(connections, answered / elapsed, "httpx")


def _check(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise LoadError(f"{response.request.url} answered {response.status_code}: {response.text}")
