"""OpenAI's cursor pages: the first ``limit`` items, their first and last ids, and whether more
follow, told by the one item a source fetched past the page."""

from __future__ import annotations

from http import HTTPStatus

from llm_stream.gateway.pagination import page_of, unknown_after


def _id(item: dict[str, str]) -> str:
    return item["id"]


ITEMS = [{"id": f"file-{number}"} for number in range(5)]


def test_a_page_holds_the_first_items_and_says_more_follow() -> None:
    page = page_of(ITEMS, limit=3, id_of=_id)
    assert page.data == ITEMS[:3]
    assert (page.first_id, page.last_id, page.has_more) == ("file-0", "file-2", True)
    assert page.object == "list"


def test_the_last_page_says_no_more_follow() -> None:
    page = page_of(ITEMS[3:], limit=3, id_of=_id)
    assert page.data == ITEMS[3:]
    assert (page.first_id, page.last_id, page.has_more) == ("file-3", "file-4", False)
    exactly = page_of(ITEMS[:3], limit=3, id_of=_id)
    assert exactly.has_more is False  # a full page with nothing fetched past it is the last


def test_an_empty_page_has_no_ids() -> None:
    page = page_of([], limit=20, id_of=_id)
    assert (page.data, page.first_id, page.last_id, page.has_more) == ([], None, None, False)


def test_an_after_that_names_nothing_is_a_404_on_after() -> None:
    error = unknown_after("file-gone")
    assert error.status_code == HTTPStatus.NOT_FOUND
    assert error.body.error.param == "after"
    assert "file-gone" in error.body.error.message
