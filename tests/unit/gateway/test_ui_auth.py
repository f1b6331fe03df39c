"""The web page's session tokens: derived from an API key, expiring, and tied to the keys set."""

from __future__ import annotations

from llm_stream.gateway.ui_auth import SESSION_SECONDS, session_of, session_token, session_valid

NOW = 1_800_000_000.0
KEYS = [b"sk-one", b"sk-two"]


def test_a_session_from_any_configured_key_is_valid_until_it_expires() -> None:
    token = session_token(b"sk-two", now=NOW)
    assert "sk-two" not in token
    assert session_valid(token, KEYS, now=NOW + 1)
    assert session_valid(token, KEYS, now=NOW + SESSION_SECONDS - 1)
    assert not session_valid(token, KEYS, now=NOW + SESSION_SECONDS)


def test_a_session_of_a_removed_key_or_a_forged_one_is_refused() -> None:
    token = session_token(b"sk-two", now=NOW)
    assert not session_valid(token, [b"sk-one"], now=NOW)
    expires, session_id, signature = token.split(".")
    later = str(int(expires) + 3600)
    assert not session_valid(f"{later}.{session_id}.{signature}", KEYS, now=NOW)  # expiry moved
    assert not session_valid(f"{expires}.{'0' * 32}.{signature}", KEYS, now=NOW)  # id changed
    assert not session_valid(f"{expires}.{session_id}.{'0' * len(signature)}", KEYS, now=NOW)
    for malformed in (None, "", "abc", f"{expires}.", f".{signature}", "-1.x", f"{token}.x"):
        assert not session_valid(malformed, KEYS, now=NOW)


def test_every_login_is_its_own_session() -> None:
    first, second = (session_of(session_token(b"sk-two", now=NOW), KEYS, NOW) for _ in "12")
    assert first is not None
    assert second is not None
    assert first.id != second.id  # a logout of one leaves the other
    assert first.expires == second.expires == NOW + SESSION_SECONDS
