"""TLS end to end on the embedded broker, with a throwaway CA: the broker requires a client
certificate, checks it, and clients check the broker's certificate and host name.

A batch goes submit -> worker (echo engine) -> aggregator with every Kafka client over TLS
(the client library's producer and status view, the admin client, the consume loops, the
cancel follower, FastStream's publishing broker); a wrong CA, a certificate for another host
and a missing client certificate are refused with a message that names the setting to change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import trustme

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.broker.embedded import EmbeddedBroker
from llm_stream.broker.tls_terminator import BrokerTls
from llm_stream.client import BatchClient
from llm_stream.engine.echo import EchoEngine
from llm_stream.kafka.connection import KafkaTlsError
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from llm_stream.worker.app import WorkerApp

pytestmark = pytest.mark.broker


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path
    folder: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(folder / "ca.pem")
    other.cert_pem.write_to_path(folder / "other-ca.pem")
    client = ca.issue_cert("llm-stream-worker@example.test")
    client.cert_chain_pems[0].write_to_path(folder / "client.pem")
    client.private_key_pem.write_to_path(folder / "client-key.pem")
    for name, hosts in {"broker": ["127.0.0.1", "localhost"], "elsewhere": ["kafka.test"]}.items():
        cert = ca.issue_cert(*hosts)
        cert.cert_chain_pems[0].write_to_path(folder / f"{name}.pem")
        cert.private_key_pem.write_to_path(folder / f"{name}-key.pem")
    return Pki(
        folder / "ca.pem",
        folder / "other-ca.pem",
        folder / "client.pem",
        folder / "client-key.pem",
        folder,
    )


def _broker(pki: Pki, name: str) -> EmbeddedBroker:
    tls = BrokerTls(pki.folder / f"{name}.pem", pki.folder / f"{name}-key.pem", pki.ca)
    return EmbeddedBroker(tls=tls)


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[str]:
    """A broker whose certificate names 127.0.0.1 and that requires a client certificate."""
    with _broker(pki, "broker") as broker:
        yield broker.bootstrap_servers


def _settings(bootstrap: str, name: str, tmp_path: Path, **security: object) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap,
        requests_topic=f"{name}.requests",
        results_topic=f"{name}.results",
        batches_topic=f"{name}.batches",
        batch_status_topic=f"{name}.status",
        dead_letter_topic=f"{name}.dead-letter",
        worker_group_id=f"{name}.workers",
        aggregator_group_id=f"{name}.aggregators",
        output_dir=tmp_path / "batches",
        topic_partitions=2,
        security_protocol="SSL",
        **security,  # type: ignore[arg-type]
    )


def _mutual(pki: Pki) -> dict[str, object]:
    return {"ssl_cafile": pki.ca, "ssl_certfile": pki.client_cert, "ssl_keyfile": pki.client_key}


async def test_a_batch_runs_submit_worker_aggregator_over_mutual_tls(
    tls_broker: str, pki: Pki, unique_name: str, tmp_path: Path
) -> None:
    settings = _settings(tls_broker, unique_name, tmp_path, **_mutual(pki))
    await ensure_topics(settings)
    engine = EchoEngine()
    worker, aggregator = WorkerApp(settings, engine), AggregatorApp(settings)
    working = asyncio.create_task(worker.run())
    aggregating = asyncio.create_task(aggregator.run())
    try:
        lines = [
            {"custom_id": f"c{i}", "url": "/v1/completions", "body": {"prompt": f"p{i}"}}
            for i in range(20)
        ]
        async with BatchClient.from_settings(settings) as client:
            handle = await client.submit(lines, batch_id="tls", endpoint="/v1/completions")
            finished = await handle.wait(60)
        assert finished is not None
        assert finished.status == "completed"
        assert finished.request_counts.completed == 20
    finally:
        worker.stopping.set()
        aggregator.stopping.set()
        codes = await asyncio.wait_for(asyncio.gather(working, aggregating), 60)
    assert codes[0] == 0
    output = (settings.output_dir / "tls" / "output.jsonl").read_bytes().splitlines()
    answers = {orjson.loads(line)["custom_id"]: orjson.loads(line) for line in output}
    assert sorted(answers) == sorted(f"c{i}" for i in range(20))
    assert all(answer["response"]["status_code"] == 200 for answer in answers.values())


async def test_a_broker_certificate_from_another_ca_is_refused_with_the_setting_to_change(
    tls_broker: str, pki: Pki, unique_name: str, tmp_path: Path
) -> None:
    security = {**_mutual(pki), "ssl_cafile": pki.other_ca}
    settings = _settings(tls_broker, unique_name, tmp_path, **security)
    started = time.monotonic()
    with pytest.raises(KafkaTlsError) as refused:
        await ensure_topics(settings)
    message = str(refused.value)
    assert "self-signed certificate in certificate chain" in message  # the handshake's reason
    assert "not signed by a CA this client trusts" in message
    assert "LLM_STREAM_SSL_CAFILE" in message
    assert time.monotonic() - started < 60
    line = {"custom_id": "a", "url": "/v1/completions", "body": {"prompt": "a"}}
    async with BatchClient.from_settings(settings) as client:
        with pytest.raises(KafkaTlsError, match="LLM_STREAM_SSL_CAFILE"):
            await client.submit([line], batch_id="never", endpoint="/v1/completions")


async def test_a_broker_certificate_for_another_host_is_refused(
    pki: Pki, unique_name: str, tmp_path: Path
) -> None:
    with _broker(pki, "elsewhere") as broker:
        settings = _settings(broker.bootstrap_servers, unique_name, tmp_path, **_mutual(pki))
        with pytest.raises(KafkaTlsError) as refused:
            await ensure_topics(settings)
    message = str(refused.value)
    assert "does not name '127.0.0.1'" in message
    assert "LLM_STREAM_BOOTSTRAP_SERVERS" in message


async def test_a_client_without_a_certificate_is_refused_by_a_broker_that_requires_one(
    tls_broker: str, pki: Pki, unique_name: str, tmp_path: Path
) -> None:
    settings = _settings(tls_broker, unique_name, tmp_path, ssl_cafile=pki.ca)
    with pytest.raises(KafkaTlsError, match="LLM_STREAM_SSL_CERTFILE"):
        await ensure_topics(settings)
