"""Whether a batch may be created over HTTP: parameters no file could mend are a 400 naming the
parameter; an input file's problems become OpenAI's batch errors, each with its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_stream.batch.input_file import FileCheck
from llm_stream.gateway.errors import GatewayError
from llm_stream.gateway.input_check import check_input_file, check_parameters, line_errors
from llm_stream.settings import Settings

ENDPOINT = "/v1/chat/completions"


def _refusal(settings: Settings, **given: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"endpoint": ENDPOINT, "completion_window": "24h", "metadata": {}}
    with pytest.raises(GatewayError) as refused:
        check_parameters("b1", settings=settings, **{**fields, **given})
    assert refused.value.status_code == 400
    return refused.value.body.error.model_dump()


def test_valid_parameters_pass() -> None:
    check_parameters(
        "b1",
        endpoint=ENDPOINT,
        completion_window="24h",
        metadata={"team": "a"},
        settings=Settings(),
    )
    for window in ("30m", "1h", "7d"):  # any window up to the deployment's longest
        check_parameters(
            "b1",
            endpoint=ENDPOINT,
            completion_window=window,
            metadata={"llm-stream-priority": "-2"},
            settings=Settings(batch_max_completion_window_s=7 * 86400),
        )


@pytest.mark.parametrize(
    ("given", "param", "says"),
    [
        ({"endpoint": "/v2/chat"}, "endpoint", "Invalid value: '/v2/chat'. Supported values"),
        ({"metadata": {f"k{n}": "v" for n in range(3)}}, "metadata", "3 pairs, at most 2"),
        ({"metadata": {"k" * 9: "v"}}, "metadata", "longer than 8 characters"),
        ({"metadata": {"k": "v" * 9}}, "metadata", "value of metadata key 'k' is longer"),
        ({"completion_window": "soon"}, "completion_window", "Invalid 'completion_window'"),
        ({"completion_window": "2h"}, "completion_window", "Invalid 'completion_window'"),
        ({"metadata": {"llm-stream-priority": "high"}}, "metadata", "must be an integer"),
    ],
)
def test_parameters_no_file_could_mend_are_refused_on_their_name(
    given: dict[str, Any], param: str, says: str
) -> None:
    settings = Settings(
        batch_max_metadata_pairs=2,
        batch_max_metadata_key_chars=8,
        batch_max_metadata_value_chars=8,
        batch_max_completion_window_s=3600,
    )
    error = _refusal(settings, **given)
    assert error["param"] == param
    assert says in error["message"]


def _line(custom_id: str, url: str = ENDPOINT) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
    return orjson.dumps(line) + b"\n"


def _file(tmp_path: Path, *lines: bytes) -> Path:
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def _check(path: Path, settings: Settings | None = None) -> tuple[int, list[dict[str, Any]]]:
    count, errors, _, _ = check_input_file(
        path, batch_id="b1", endpoint=ENDPOINT, settings=settings or Settings()
    )
    return count, [error.model_dump(exclude_none=True) for error in errors]


def test_a_valid_file_has_its_count_and_no_errors(tmp_path: Path) -> None:
    assert _check(_file(tmp_path, _line("a"), _line("b"))) == (2, [])


def test_a_bad_line_is_named_by_its_number(tmp_path: Path) -> None:
    count, errors = _check(_file(tmp_path, _line("a"), b"{not json\n"))
    assert count == 2
    [error] = errors
    assert (error["code"], error["line"]) == ("invalid_line", 2)
    assert not error["message"].startswith("line ")


def test_an_empty_file_is_one_error_of_its_own(tmp_path: Path) -> None:
    assert _check(_file(tmp_path)) == (
        0,
        [{"code": "empty_file", "message": "the file holds no request lines"}],
    )


def test_lines_for_another_endpoint_than_the_batchs_are_refused_on_url(tmp_path: Path) -> None:
    _, errors = _check(_file(tmp_path, _line("a", url="/v1/completions")))
    assert [(error["code"], error.get("param")) for error in errors] == [
        ("mismatched_endpoint", "url")
    ]


def test_the_deployments_limits_on_size_and_lines_hold(tmp_path: Path) -> None:
    path = _file(tmp_path, _line("a"), _line("b"), _line("c"))
    _, over_lines = _check(path, Settings(batch_max_lines=2))
    assert [error["code"] for error in over_lines] == ["too_many_requests"]
    count, over_size = _check(path, Settings(batch_max_file_bytes=10))
    assert (count, [error["code"] for error in over_size]) == (0, ["file_too_large"])


def test_problems_past_those_reported_are_counted_in_one_more_error() -> None:
    check = FileCheck(line_count=9, problems=["line 3: bad", "whole file"], problem_count=5)
    errors = [error.model_dump(exclude_none=True) for error in line_errors(check)]
    assert errors == [
        {"code": "invalid_line", "message": "bad", "line": 3},
        {"code": "invalid_line", "message": "whole file"},
        {"code": "too_many_errors", "message": "3 more problems are not listed"},
    ]


def test_each_model_is_named_with_its_first_line_and_checked_against_those_served(
    tmp_path: Path,
) -> None:
    settings = Settings(batch_allow_mixed_models=True)
    lines = [_line("a"), _line("b"), _line("c")]
    models = ["small", "large", "small"]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"".join(
            line.replace(b'"model":"m"', f'"model":"{model}"'.encode())
            for line, model in zip(lines, models, strict=True)
        )
    )
    judged = check_input_file(
        path, batch_id="b1", endpoint=ENDPOINT, settings=settings, served={"small"}
    )
    assert judged.models == {"small": 1, "large": 2}
    assert [(error.code, error.line) for error in judged.errors] == [("model_not_found", 2)]
