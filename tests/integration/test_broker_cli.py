"""`llm-stream broker` runs a real broker in the foreground and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaProducer

from service.embedded_broker import free_port

pytestmark = pytest.mark.broker


async def test_broker_subcommand_serves_kafka_and_stops_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - the test drives a foreground CLI process
        [sys.executable, "-m", "service", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 20)
        assert line.strip() == f"127.0.0.1:{port}"
        producer = AIOKafkaProducer(bootstrap_servers=line.strip())
        await producer.start()
        try:
            metadata = await producer.send_and_wait("cli-probe", b"ping")
            assert metadata.offset == 0
        finally:
            await producer.stop()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0
    finally:
        if process.poll() is None:
            process.kill()
