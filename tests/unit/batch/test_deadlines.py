from __future__ import annotations

import orjson
import pytest

from llm_stream.batch.deadlines import (
    BATCH_EXPIRED,
    EXPIRED_MESSAGE,
    deadline_header,
    deadline_of,
    expired_result,
    has_expired,
)
from llm_stream.batch.result_lines import output_line
from llm_stream.contracts import DEADLINE_HEADER


def test_a_request_expires_once_now_reaches_its_deadline() -> None:
    assert not has_expired(None, 10**12)
    assert not has_expired(100.0, 99.999)
    assert has_expired(100.0, 100.0)
    assert has_expired(100.0, 100.5)


@pytest.mark.parametrize("text", ["soon", "nan", "inf", "-1", "1e300", ""])
def test_an_unreadable_deadline_never_expires_a_request(text: str) -> None:
    assert deadline_of({DEADLINE_HEADER: text}) is None


def test_the_header_reads_back() -> None:
    name, value = deadline_header(1_767_225_600.25)
    assert (name, value) == (DEADLINE_HEADER, b"1767225600.25")
    assert deadline_of({name: value.decode()}) == 1_767_225_600.25
    assert deadline_of({DEADLINE_HEADER: "1767225600"}) == 1_767_225_600.0


def test_the_expired_line_has_openais_shape() -> None:
    line = orjson.loads(output_line(expired_result("b1", "c7")))
    assert line["custom_id"] == "c7"
    assert line["id"].startswith("batch_req_")
    assert line["response"] is None
    assert line["error"] == {"code": BATCH_EXPIRED, "message": EXPIRED_MESSAGE}
    assert BATCH_EXPIRED == "batch_expired"
