"""Logged-out page sessions: refused until they would have expired anyway, and bounded in
number, the one closest to expiring forgotten first."""

from __future__ import annotations

from llm_stream.gateway.revocations import MAX_REVOKED, RevokedSessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_revoked_sessions_are_kept_until_they_expire_and_bounded() -> None:
    clock = Clock()
    revoked = RevokedSessions(max_revoked=3, clock=clock)
    revoked.revoke("a", expires=1100)
    revoked.revoke("b", expires=1300)
    revoked.revoke("past", expires=900)  # already expired: nothing to remember
    assert all(session_id in revoked for session_id in "ab")
    assert "past" not in revoked
    clock.now = 1100
    revoked.revoke("c", expires=1400)
    assert "a" not in revoked  # its session expired: the cookie is refused anyway
    assert len(revoked) == 2
    revoked.revoke("d", expires=1500)
    revoked.revoke("e", expires=1600)
    assert len(revoked) == 3
    assert "b" not in revoked  # the closest to expiring went first
    assert all(session_id in revoked for session_id in "cde")


def test_a_session_revoked_twice_is_remembered_once_with_its_first_expiry() -> None:
    clock = Clock()
    revoked = RevokedSessions(max_revoked=10, clock=clock)
    revoked.revoke("a", expires=1100)
    revoked.revoke("a", expires=1900)
    assert len(revoked) == 1
    clock.now = 1100
    revoked.revoke("b", expires=2000)  # any revoke forgets what expired
    assert "a" not in revoked


def test_the_default_bound_is_the_documented_one() -> None:
    assert MAX_REVOKED == 100_000
    revoked = RevokedSessions()
    revoked.revoke("a", expires=2**40)
    assert "a" in revoked
