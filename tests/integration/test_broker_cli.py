"""`llm-stream broker` runs a real broker in the foreground, stops cleanly on SIGTERM and leaves
no Tansu behind when SIGKILLed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys

import psutil
import pytest
from aiokafka import AIOKafkaProducer

from llm_stream.network import free_port

pytestmark = pytest.mark.broker


async def test_broker_subcommand_serves_kafka_and_stops_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - the test drives a foreground CLI process
        [sys.executable, "-m", "llm_stream", "broker", "--port", str(port)],
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


def test_sigkilled_broker_subcommand_leaves_no_tansu_behind() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llm_stream", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    children: list[psutil.Process] = []
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"127.0.0.1:{port}"
        children = psutil.Process(process.pid).children(recursive=True)
        tansu = [child for child in children if "tansu" in child.name().lower()]
        assert tansu, [child.name() for child in children]
        process.kill()
        process.wait()
        _, alive = psutil.wait_procs(children, timeout=10)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, [(p.pid, p.name()) for p in alive]  # neither Tansu nor its guard
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        if process.poll() is None:
            process.kill()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
