"""Which addresses stay on this host: the one rule behind every "loopback only" decision
(an open gateway, credentials sent over an unencrypted connection)."""

from __future__ import annotations

import ipaddress


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
