"""Which addresses count as this host's own."""

from __future__ import annotations

import pytest

from llm_stream.network import is_loopback, servers_are_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "", "10.0.0.1", "::", "kafka", "localhost.evil"])
def test_other_hosts_may_be_anywhere(host: str) -> None:
    assert not is_loopback(host)


def test_bootstrap_servers_are_local_only_when_every_one_is() -> None:
    assert servers_are_loopback("127.0.0.1:9092, localhost:9093,[::1]:9094")
    assert not servers_are_loopback("127.0.0.1:9092,kafka-2:9092")
    assert not servers_are_loopback("kafka:9092")
