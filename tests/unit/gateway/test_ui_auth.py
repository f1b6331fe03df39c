"""The web page's session tokens: derived from an API key, expiring, and tied to the keys set."""

from __future__ import annotations

from llm_stream.gateway.ui_auth import SESSION_SECONDS, session_token, session_valid

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
    expires, _, signature = token.partition(".")
    later = str(int(expires) + 3600)
    assert not session_valid(f"{later}.{signature}", KEYS, now=NOW)  # expiry moved
    assert not session_valid(f"{expires}.{'0' * len(signature)}", KEYS, now=NOW)
    for malformed in (None, "", "abc", f"{expires}.", f".{signature}", "-1.x"):
        assert not session_valid(malformed, KEYS, now=NOW)
