"""A page of a batch file's lines, found by ``custom_id``: only the page asked for is kept, each
line summarised by what a reader looks for first (the answer, else the error)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_stream.files.store import BatchFile, LocalFileStore
from llm_stream.gateway.auth_limit import FailedAuthLimiter
from llm_stream.gateway.errors import GatewayError
from llm_stream.gateway.revocations import RevokedSessions
from llm_stream.gateway.state import Gateway
from llm_stream.gateway.ui_lines import PAGE_LINES, SUMMARY_CHARS, read_page
from llm_stream.settings import Settings
from tests.gateway_support import FakeBatchStream


@pytest.fixture
def gateway(settings: Settings, store: LocalFileStore, stream: FakeBatchStream) -> Gateway:
    return Gateway(settings, store, stream, FailedAuthLimiter(5, 60.0), RevokedSessions())


def _answer(custom_id: str, text: str = "ok") -> bytes:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
    line = {"custom_id": custom_id, "response": {"status_code": 200, "body": body}}
    return orjson.dumps(line) + b"\n"


def _written(store: LocalFileStore, lines: list[bytes], kind: BatchFile = BatchFile.OUTPUT) -> str:
    return store.write("b1", kind, lines)


async def test_pages_hold_their_lines_numbered_as_in_the_file(
    gateway: Gateway, store: LocalFileStore
) -> None:
    file_id = _written(store, [_answer(f"id-{number}") for number in range(120)])
    second = await read_page(gateway, file_id, search="", page=2)
    assert (second.matched, second.page, second.pages) == (120, 2, 3)
    assert len(second.lines) == PAGE_LINES
    assert (second.lines[0].number, second.lines[0].custom_id) == (51, "id-50")
    past = await read_page(gateway, file_id, search="", page=9)
    assert (past.lines, past.matched) == ([], 120)
    assert (await read_page(gateway, file_id, search="", page=0)).page == 1


async def test_a_search_keeps_lines_whose_custom_id_contains_it_in_any_case(
    gateway: Gateway, store: LocalFileStore
) -> None:
    file_id = _written(store, [_answer(name) for name in ("Alpha-1", "beta-2", "ALPHA-3")])
    page = await read_page(gateway, file_id, search="  alpha ", page=1)
    assert [line.custom_id for line in page.lines] == ["Alpha-1", "ALPHA-3"]
    assert [line.number for line in page.lines] == [1, 3]
    assert (page.matched, page.pages) == (2, 1)


def _raw(response: dict[str, Any] | None, error: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps({"custom_id": "c", "response": response, "error": error})


@pytest.mark.parametrize(
    ("line", "status", "summary"),
    [
        (_answer("c", "the answer"), 200, "the answer"),
        (_raw({"status_code": 200, "body": {"choices": [{"text": "t"}]}}), 200, "t"),
        (_raw({"status_code": 400, "body": {"error": {"message": "bad"}}}), 400, "bad"),
        (_raw(None, {"message": "gone"}), None, "gone"),
    ],
    ids=["chat", "completion", "error body", "error line"],
)
async def test_each_line_is_summarised_by_its_answer_or_its_error(
    gateway: Gateway, store: LocalFileStore, line: bytes, status: int | None, summary: str
) -> None:
    file_id = _written(store, [line.rstrip(b"\n") + b"\n"])
    [shown] = (await read_page(gateway, file_id, search="", page=1)).lines
    assert (shown.status_code, shown.summary) == (status, summary)
    parsed: dict[str, Any] = orjson.loads(shown.json)
    assert parsed["custom_id"] == "c"


async def test_a_long_answer_is_cut_in_the_table_and_kept_whole_in_the_json(
    gateway: Gateway, store: LocalFileStore
) -> None:
    file_id = _written(store, [_answer("c", "w" * 1000)])
    [shown] = (await read_page(gateway, file_id, search="", page=1)).lines
    assert len(shown.summary) == SUMMARY_CHARS
    assert "w" * 1000 in shown.json


async def test_blank_and_non_json_lines_do_not_break_the_page(
    gateway: Gateway, store: LocalFileStore
) -> None:
    file_id = _written(store, [b"\n", b"not json\n", _answer("c")])
    page = await read_page(gateway, file_id, search="", page=1)
    assert [(line.number, line.custom_id) for line in page.lines] == [(2, ""), (3, "c")]
    assert page.lines[0].summary == "(not a JSON object)"
    assert page.lines[0].json == "not json"


async def test_a_file_that_is_not_there_is_the_files_apis_404(gateway: Gateway) -> None:
    with pytest.raises(GatewayError) as missing:
        await read_page(gateway, "file-b9-output", search="", page=1)
    assert missing.value.status_code == 404
