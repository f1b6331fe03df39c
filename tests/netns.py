"""Several hosts on one machine: Linux network namespaces joined to this host by veth links.

Each worker of a multi-host test runs in a namespace of its own, with its own address, and
reaches the broker at an address of the host (on a veth pair of its own, since this kernel
has no dummy interfaces), so every connection crosses
a link, and a link set down cuts that host off while its processes go on, as a switch port
failing would. Needs root and ``ip``. Every name carries a random run id, every address is in
10.231.R.0/24 (R random, checked unused), and everything made is removed at the end, even
after a failure: nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


def missing() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root (CI and sessions run as root)"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], check=False, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Host:
    """One namespace: its name, its own address, the host end of its link."""

    namespace: str
    address: str
    link: str  # the namespace's end of the veth pair, inside the namespace
    host_link: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        """The link down, from the host's side of the namespace: its processes live on."""
        _ip("netns", "exec", self.namespace, "ip", "link", "set", self.link, "down")

    def restore(self) -> None:
        _ip("netns", "exec", self.namespace, "ip", "link", "set", self.link, "up")
        _ip("-n", self.namespace, "route", "replace", "default", "via", self.gateway)

    @property
    def gateway(self) -> str:
        prefix, last = self.address.rsplit(".", 1)
        return f"{prefix}.{int(last) - 1}"


@dataclass(frozen=True)
class Network:
    """The broker's address on this host and the hosts around it."""

    broker_address: str
    hosts: tuple[Host, ...]


def _free_subnet() -> int:
    used = _ip("-4", "addr").stdout
    for _ in range(50):
        third = random.randrange(1, 250)
        if f"10.231.{third}." not in used:
            return third
    raise RuntimeError("no free 10.231.R.0/24 for the test's links")


@contextmanager
def network(hosts: int) -> Iterator[Network]:
    """``hosts`` namespaces linked to this host; the broker's address is ``10.231.R.254``."""
    run = uuid.uuid4().hex[:5]
    third = _free_subnet()
    anchor = f"lsb{run}"  # a veth pair kept on this host: the broker's address lives on it
    made_links: list[str] = []
    made_namespaces: list[str] = []
    broker_address = f"10.231.{third}.254"
    try:
        _ip("link", "add", anchor, "type", "veth", "peer", "name", f"lsc{run}")
        made_links.append(anchor)
        _ip("addr", "add", f"{broker_address}/32", "dev", anchor)
        _ip("link", "set", f"lsc{run}", "up")
        _ip("link", "set", anchor, "up")
        built = []
        for index in range(hosts):
            namespace = f"llm-stream-{run}-h{index}"
            host_link, link = f"lsh{run}{index}", f"lsn{run}{index}"
            host_address = f"10.231.{third}.{4 * index + 1}"
            address = f"10.231.{third}.{4 * index + 2}"
            _ip("netns", "add", namespace)
            made_namespaces.append(namespace)
            _ip("link", "add", host_link, "type", "veth", "peer", "name", link)
            made_links.append(host_link)
            _ip("link", "set", link, "netns", namespace)
            _ip("addr", "add", f"{host_address}/30", "dev", host_link)
            _ip("link", "set", host_link, "up")
            _ip("-n", namespace, "addr", "add", f"{address}/30", "dev", link)
            _ip("-n", namespace, "link", "set", link, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "route", "add", "default", "via", host_address)
            built.append(Host(namespace, address, link, host_link))
        yield Network(broker_address, tuple(built))
    finally:
        for namespace in made_namespaces:
            _ip("netns", "delete", namespace, check=False)  # takes its veth ends along
        for link in made_links:
            _ip("link", "delete", link, check=False)
