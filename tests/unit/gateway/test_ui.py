"""The web page's routes: login by API key, the batch list and page, lines paged and found by
custom_id, cancel by a form of our own, downloads, and nothing a batch holds ever runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import SecretStr

from llm_stream.batch.status import BatchStatus
from llm_stream.files.store import BatchFile, LocalFileStore
from llm_stream.gateway.app import create_app
from llm_stream.gateway.ui_auth import CSRF_COOKIE, SESSION_COOKIE
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream

KEY = "sk-page-key-0123456789abcdef012345"
NOW = 1_800_000_000
HOSTILE = "<script>alert('x')</script>"


@pytest.fixture
def guarded(
    settings: Settings, store: LocalFileStore, stream: FakeBatchStream
) -> Iterator[TestClient]:
    keyed = settings.with_overrides(gateway_api_keys=[SecretStr(KEY)])
    with TestClient(create_app(keyed, store=store, stream=stream)) as client:
        yield client


def _form_token(client: TestClient, page: str = "/ui/login") -> str:
    """The token a page's forms carry (getting the page sets its cookie)."""
    html = client.get(page).text
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found is not None, html
    assert client.cookies.get(CSRF_COOKIE) == found.group(1)
    return found.group(1)


def _log_in(client: TestClient, key: str = KEY) -> Response:
    token = _form_token(client)
    return client.post(
        "/ui/login",
        data={"api_key": key, "csrf_token": token, "next": "/ui"},
        follow_redirects=False,
    )


def _output_line(custom_id: str, content: str = "hello") -> bytes:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    response = {"status_code": 200, "request_id": f"req-{custom_id}", "body": body}
    line = {"id": f"r-{custom_id}", "custom_id": custom_id, "response": response, "error": None}
    return orjson.dumps(line) + b"\n"


def _finished(stream: FakeBatchStream, store: LocalFileStore, batch_id: str, ids: list[str]) -> str:
    output = store.write(batch_id, BatchFile.OUTPUT, [_output_line(one) for one in ids])
    stream.add(batch_id, BatchStatus.COMPLETED, NOW, completed=len(ids), output_file_id=output)
    return output


def test_the_root_sends_a_browser_to_the_page(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (302, "/ui")


def test_with_keys_every_page_asks_for_one_and_shows_no_data(
    guarded: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    output = _finished(stream, store, "batch_secret", ["a"])
    for path in ("/ui", "/ui/batches/batch_secret", f"/ui/files/{output}/content"):
        response = guarded.get(path)
        assert response.status_code == 401, path
        assert 'name="api_key"' in response.text
        assert "data-batch-id" not in response.text
        assert "1 completed" not in response.text
        assert "req-a" not in response.text  # the file's content
    polled = guarded.get("/ui/progress", params={"id": "batch_secret"})
    assert (polled.status_code, polled.json()) == (401, {"login": "/ui/login"})


def test_a_wrong_key_is_refused_and_the_right_one_opens_the_page(
    guarded: TestClient, stream: FakeBatchStream
) -> None:
    stream.add("batch_one", BatchStatus.IN_PROGRESS, NOW)
    wrong = _log_in(guarded, "sk-wrong")
    assert wrong.status_code == 401
    assert "That API key is not accepted." in wrong.text
    assert "sk-wrong" not in wrong.text
    assert SESSION_COOKIE not in guarded.cookies

    right = _log_in(guarded)
    assert (right.status_code, right.headers["location"]) == (303, "/ui")
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert KEY not in cookie  # the cookie is derived from the key, never the key
    page = guarded.get("/ui")
    assert page.status_code == 200
    assert "batch_one" in page.text
    assert "Log out" in page.text
    # The session opens the page, never the API.
    assert guarded.get("/v1/batches").status_code == 401


def test_a_login_without_the_pages_form_token_is_refused(guarded: TestClient) -> None:
    _form_token(guarded)
    no_token = guarded.post("/ui/login", data={"api_key": KEY}, follow_redirects=False)
    assert no_token.status_code == 403
    cross_site = guarded.post(
        "/ui/login",
        data={"api_key": KEY, "csrf_token": guarded.cookies[CSRF_COOKIE]},
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert cross_site.status_code == 403
    assert SESSION_COOKIE not in guarded.cookies


def test_after_login_a_browser_goes_back_to_this_site_only(guarded: TestClient) -> None:
    token = _form_token(guarded)
    for asked, expected in (("/ui/batches/b1?q=x", "/ui/batches/b1?q=x"), ("//evil.test", "/ui")):
        response = guarded.post(
            "/ui/login",
            data={"api_key": KEY, "csrf_token": token, "next": asked},
            follow_redirects=False,
        )
        assert response.headers["location"] == expected


def test_logging_out_ends_the_session(guarded: TestClient) -> None:
    _log_in(guarded)
    token = _form_token(guarded, "/ui")
    response = guarded.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert guarded.get("/ui").status_code == 401


def test_a_logged_out_session_cookie_replayed_is_refused(guarded: TestClient) -> None:
    _log_in(guarded)
    stolen = guarded.cookies[SESSION_COOKIE]
    other_browser = TestClient(guarded.app, cookies={SESSION_COOKIE: stolen})
    assert other_browser.get("/ui").status_code == 200
    token = _form_token(guarded, "/ui")
    guarded.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
    replayed = other_browser.get("/ui")
    assert replayed.status_code == 401
    assert 'name="api_key"' in replayed.text
    # Only that session ended: logging in again opens the page.
    assert _log_in(guarded).status_code == 303
    assert guarded.get("/ui").status_code == 200


def test_too_many_wrong_logins_from_an_address_are_held_back(
    settings: Settings, store: LocalFileStore, stream: FakeBatchStream
) -> None:
    keyed = settings.with_overrides(gateway_api_keys=[SecretStr(KEY)], gateway_auth_max_failures=2)
    with TestClient(create_app(keyed, store=store, stream=stream)) as client:
        for _ in range(2):
            assert _log_in(client, "sk-guess-0123456789abcdef0123456789").status_code == 401
        held = _log_in(client, KEY)  # held back: not even the right key is compared
        assert held.status_code == 429
        assert 0 < int(held.headers["Retry-After"]) <= 60
        assert "Too many wrong keys from your address" in held.text
        assert SESSION_COOKIE not in client.cookies
        # The API counts the same failures: guessing there is no faster.
        api = client.get("/v1/files", headers={"Authorization": f"Bearer {KEY}"})
        assert api.status_code == 429


def test_the_list_shows_progress_counts_tokens_and_metadata(
    client: TestClient, stream: FakeBatchStream
) -> None:
    stream.add("batch_run", BatchStatus.IN_PROGRESS, NOW, completed=1)
    stream.objects["batch_run"] = stream.objects["batch_run"].model_copy(
        update={"metadata": {"team": "search"}}
    )
    html = client.get("/ui").text
    assert '<progress data-field="progress" value="1" max="2"' in html
    assert "1 completed, 0 failed of 2" in html
    assert "0 in, 0 out, 0 total" in html
    assert "<code>team</code> = search" in html
    assert 'data-terminal="false"' in html
    assert '<meta name="viewport"' in html
    polled = client.get("/ui/progress", params={"id": ["batch_run", "batch_none"]}).json()
    assert polled["batches"] == [
        {
            "id": "batch_run",
            "status": "in_progress",
            "terminal": False,
            "done": 1,
            "total": 2,
            "percent": 50,
            "requests": "1 completed, 0 failed of 2",
            "tokens": "0 in, 0 out, 0 total",
            "finished": "—",
        }
    ]
    too_many = client.get("/ui/progress", params={"id": [f"b{n}" for n in range(101)]})
    assert too_many.status_code == 400  # one list page's worth at most


def test_the_list_pages_through_the_apis_listing(
    client: TestClient, stream: FakeBatchStream
) -> None:
    for number in range(25):
        stream.add(f"batch_{number:02d}", BatchStatus.COMPLETED, NOW + number)
    first = client.get("/ui").text
    assert first.count("data-batch-id=") == 20
    assert "batch_24" in first
    assert "/ui?after=batch_05&amp;limit=20" in first
    second = client.get("/ui", params={"after": "batch_05"}).text
    assert second.count("data-batch-id=") == 5
    assert "Older batches" not in second
    assert client.get("/ui", params={"after": "batch_nope"}).status_code == 404


def test_lines_are_paged_and_found_by_custom_id(
    client: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    _finished(stream, store, "batch_lines", [f"id-{number}" for number in range(120)])
    first = client.get("/ui/batches/batch_lines").text
    assert "120 lines; page 1 of 3." in first
    assert first.count('class="custom-id"') == 50
    assert "page=2" in first
    last = client.get("/ui/batches/batch_lines", params={"page": 3}).text
    assert last.count('class="custom-id"') == 20
    assert ">id-119<" in last

    found = client.get("/ui/batches/batch_lines", params={"q": "ID-7"}).text
    custom_ids = re.findall(r'class="custom-id">([^<]+)<', found)
    assert custom_ids == ["id-7", *(f"id-{number}" for number in range(70, 80))]
    none = client.get("/ui/batches/batch_lines", params={"q": "zzz"}).text
    assert "No lines whose custom_id contains" in none
    assert "No error file yet" in client.get("/ui/batches/batch_lines?lines=error").text


def test_nothing_a_batch_holds_is_rendered_as_markup(
    client: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    _finished(stream, store, "batch_hostile", [HOSTILE])
    stream.objects["batch_hostile"] = stream.objects["batch_hostile"].model_copy(
        update={"metadata": {HOSTILE: HOSTILE}}
    )
    for response in (
        client.get("/ui"),
        client.get("/ui/batches/batch_hostile"),
        client.get("/ui/batches/batch_hostile", params={"q": HOSTILE}),
    ):
        assert "<script>alert" not in response.text
        assert "&lt;script&gt;alert" in response.text
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
    assert (
        "1 line whose custom_id contains"
        in client.get("/ui/batches/batch_hostile", params={"q": HOSTILE}).text
    )


def test_cancel_asks_first_and_needs_the_pages_own_form(
    client: TestClient, stream: FakeBatchStream
) -> None:
    stream.add("batch_long", BatchStatus.IN_PROGRESS, NOW)
    page = client.get("/ui/batches/batch_long").text
    assert 'href="/ui/batches/batch_long/cancel"' in page
    confirm = client.get("/ui/batches/batch_long/cancel")
    assert "Yes, cancel this batch" in confirm.text

    forged = client.post("/ui/batches/batch_long/cancel", data={"csrf_token": "0" * 64})
    assert forged.status_code == 403
    assert stream.objects["batch_long"].status is BatchStatus.IN_PROGRESS

    token = client.cookies[CSRF_COOKIE]
    done = client.post(
        "/ui/batches/batch_long/cancel", data={"csrf_token": token}, follow_redirects=False
    )
    assert (done.status_code, done.headers["location"]) == (303, "/ui/batches/batch_long")
    assert stream.objects["batch_long"].status is BatchStatus.CANCELLING
    after = client.get("/ui/batches/batch_long").text
    assert "cancelling" in after
    assert 'href="/ui/batches/batch_long/cancel"' not in after  # no second cancel offered


def test_an_unknown_batch_or_file_is_a_not_found_page(client: TestClient) -> None:
    client.get("/ui")  # every page sets the form token's cookie
    token = client.cookies[CSRF_COOKIE]
    for response in (
        client.get("/ui/batches/batch_missing"),
        client.get("/ui/batches/batch_missing/cancel"),
        client.post("/ui/batches/batch_missing/cancel", data={"csrf_token": token}),
        client.get("/ui/files/file-batch_missing-output/content"),
    ):
        assert response.status_code == 404
        assert "batch_missing" in response.text
        assert response.headers["content-type"].startswith("text/html")


def test_a_bad_query_value_is_a_page_and_stays_json_for_the_api(client: TestClient) -> None:
    for path in ("/ui?limit=0", "/ui/batches/batch_any?page=0"):
        response = client.get(path)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert "Invalid value for" in response.text
    api = client.get("/v1/batches?limit=0", headers={"Authorization": "Bearer x"})
    assert api.status_code == 400
    assert api.json()["error"]["param"] == "limit"


def test_downloads_are_the_files_apis_content_saved_as_attachments(
    client: TestClient, stream: FakeBatchStream, store: LocalFileStore
) -> None:
    output = _finished(stream, store, "batch_files", ["a", "b"])
    page = client.get("/ui/batches/batch_files").text
    assert f'href="/ui/files/{output}/content" download' in page
    response = client.get(f"/ui/files/{output}/content")
    assert response.status_code == 200
    assert response.content == _output_line("a") + _output_line("b")
    assert response.headers["content-disposition"] == f'attachment; filename="{output}.jsonl"'


def test_the_page_and_its_static_files_are_served_without_keys(client: TestClient) -> None:
    assert client.get("/ui").status_code == 200
    assert client.get("/ui/login", follow_redirects=False).status_code == 303
    script = client.get("/ui/static/ui.js")
    assert script.status_code == 200
    assert "/ui/progress" in script.text
    assert client.get("/ui/static/ui.css").status_code == 200


def test_the_page_is_left_out_of_the_api_document(client: TestClient) -> None:
    paths: dict[str, Any] = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path == "/" or path.startswith("/ui")]
