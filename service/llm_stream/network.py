"""Which addresses stay on this host: the one rule behind every "loopback only" decision
(an open gateway, credentials sent over an unencrypted connection), and a free port on it."""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``, IPv6 with or without brackets) names
    this host only; any other name may resolve anywhere, so it does not."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def servers_are_loopback(servers: str) -> bool:
    """Whether every ``host:port`` of a comma-separated list (Kafka's bootstrap servers) is
    on this host."""
    servers_listed = [server.strip() for server in servers.split(",") if server.strip()]
    return all(
        is_loopback(server) or is_loopback(server.rpartition(":")[0]) for server in servers_listed
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
