"""How fast one client address may guess API keys: past ``max_failures`` wrong keys within
``window_s``, it is answered 429 until the oldest of them leaves the window.

One limiter per gateway process serves the API's bearer check and the web page's login, so
switching between them guesses no faster. Only failures are recorded: a right key costs one
dictionary lookup. While an address is held back its keys are not even compared, or a guess
would still be answered (by a 200 instead of a 429). Memory is bounded, not a history: at most
``max_addresses`` addresses with at most ``max_failures`` times each, the address that failed
longest ago forgotten first. IPv6 clients count per /64, the block one host usually holds.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

#: Addresses remembered at once: 12 MB at most with 10 failures each (measured).
MAX_ADDRESSES = 10_000


def client_key(address: str | None) -> str:
    """Whom a failure is counted against: the IPv4 address, or the IPv6 address's /64."""
    if not address:
        return "unknown"
    if ":" not in address:  # IPv4 (or a name): as it is, without parsing on every request
        return address
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if parsed.ipv4_mapped is not None:  # a dual-stack socket's IPv4 client
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network((parsed, 64), strict=False))


class FailedAuthLimiter:
    """A sliding window of failed keys per client (see the module docstring)."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        *,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window_s = window_s
        self._max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str | None) -> int | None:
        """Whole seconds until ``address`` may try a key again; None when it may now."""
        times = self._failures.get(client_key(address))
        if times is None or len(times) < self._max_failures:
            return None
        wait = times[0] + self._window_s - self._clock()
        return math.ceil(wait) if wait > 0 else None

    def failed(self, address: str | None) -> None:
        """Record a wrong key from ``address``."""
        key = client_key(address)
        times = self._failures.pop(key, None)
        if times is None:
            times = deque(maxlen=self._max_failures)
        times.append(self._clock())
        self._failures[key] = times  # now the most recent
        while len(self._failures) > self._max_addresses:
            self._failures.popitem(last=False)

    def __len__(self) -> int:
        """Addresses remembered."""
        return len(self._failures)

    def __contains__(self, address: object) -> bool:
        """Whether failures of ``address`` are remembered."""
        return isinstance(address, str) and client_key(address) in self._failures
