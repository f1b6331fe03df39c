"""Wrong keys per client address: a sliding window, bounded in the addresses it remembers."""

from __future__ import annotations

import tracemalloc

from llm_stream.gateway.auth_limit import FailedAuthLimiter, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_held_back_once_over_the_limit_until_the_window_slides() -> None:
    clock = Clock()
    limiter = FailedAuthLimiter(3, 60.0, clock=clock)
    for _ in range(2):
        limiter.failed("10.0.0.1")
        clock.now += 10
    assert limiter.retry_after("10.0.0.1") is None  # two of three
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 40  # the first failure leaves at 1060
    assert limiter.retry_after("10.0.0.2") is None  # others are not held back
    clock.now = 1059.5
    assert limiter.retry_after("10.0.0.1") == 1  # whole seconds, rounded up
    clock.now = 1060.0
    assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")  # the window now holds 1010, 1020, 1060
    assert limiter.retry_after("10.0.0.1") == 10


def test_ipv6_clients_count_per_64_block() -> None:
    limiter = FailedAuthLimiter(2, 60.0)
    limiter.failed("2001:db8:1:2::1")
    limiter.failed("2001:db8:1:2:ffff::9")
    assert limiter.retry_after("2001:db8:1:2::77") is not None
    assert limiter.retry_after("2001:db8:1:3::1") is None
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"  # not one block for every IPv4 client
    assert client_key(None) == "unknown"


def test_memory_is_bounded_by_addresses_not_by_history() -> None:
    limiter = FailedAuthLimiter(10, 60.0, max_addresses=1000)
    tracemalloc.start()
    for n in range(1000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
    full, _ = tracemalloc.get_traced_memory()
    for n in range(10_000):  # ten times as many addresses, each failing three times
        for _ in range(3):
            limiter.failed(f"10.0.{n // 256}.{n % 256}")
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(limiter) == 1000
    assert after < 2.5 * full
    # The oldest addresses were forgotten; the newest are held back.
    assert "10.0.0.0" not in limiter
    assert "10.0.39.15" in limiter  # the 10,000th
