"""TLS in front of the embedded broker, with a plain echo server standing for Tansu: clients
see a real TLS endpoint (its certificate checked, a client certificate required when a client
CA is given) and their bytes reach the plaintext listener and come back."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from llm_stream.broker.tls_terminator import BrokerTls, TlsTerminator
from llm_stream.network import free_port


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    tls: BrokerTls


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(folder / "ca.pem")
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(folder / "server.pem")
    server.private_key_pem.write_to_path(folder / "server-key.pem")
    return Pki(ca, BrokerTls(folder / "server.pem", folder / "server-key.pem"))


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A plaintext listener on loopback that sends back what it receives."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                while data := connection.recv(65536):
                    connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()
    listener.close()


@pytest.fixture
def terminator(pki: Pki, echo: tuple[str, int]) -> Iterator[TlsTerminator]:
    terminator = TlsTerminator("127.0.0.1", free_port(), echo, pki.tls)
    terminator.start()
    yield terminator
    terminator.stop()


def _client_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context()
    pki.ca.configure_trust(context)
    return context


def _exchange(context: ssl.SSLContext, port: int, payload: bytes) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = tls.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_bytes_sent_over_tls_reach_the_plaintext_listener_and_come_back(
    pki: Pki, terminator: TlsTerminator
) -> None:
    payload = bytes(range(256)) * 1000  # more than one read
    assert _exchange(_client_context(pki), terminator.port, payload) == payload


def test_a_client_that_trusts_another_ca_refuses_the_handshake(
    terminator: TlsTerminator,
) -> None:
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    with pytest.raises(ssl.SSLCertVerificationError):
        _exchange(other, terminator.port, b"x")


def test_with_a_client_ca_a_client_without_a_certificate_is_refused(
    pki: Pki, echo: tuple[str, int], tmp_path: Path
) -> None:
    pki.ca.cert_pem.write_to_path(tmp_path / "client-ca.pem")
    mutual = BrokerTls(pki.tls.certfile, pki.tls.keyfile, client_cafile=tmp_path / "client-ca.pem")
    terminator = TlsTerminator("127.0.0.1", free_port(), echo, mutual)
    terminator.start()
    try:
        try:  # TLS 1.3: the refusal may come as an alert on the first read, or as the end
            answered = _exchange(_client_context(pki), terminator.port, b"x")
        except (ssl.SSLError, ConnectionError):
            answered = b""
        assert answered == b""  # refused: nothing comes back
        with_certificate = _client_context(pki)
        pki.ca.issue_cert("client@example.test").configure_cert(with_certificate)
        assert _exchange(with_certificate, terminator.port, b"hello") == b"hello"
    finally:
        terminator.stop()


def test_a_port_already_taken_fails_the_start_with_the_reason(
    pki: Pki, echo: tuple[str, int]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        terminator = TlsTerminator("127.0.0.1", port, echo, pki.tls)
        with pytest.raises(RuntimeError, match="TLS listener failed"):
            terminator.start()
        terminator.stop()
