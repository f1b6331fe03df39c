"""The key ring: the environment's keys are admin keys of the default project, the projects
file's keys belong to their project, the file is read again when it changes (at most once per
interval), and a file that cannot be used refuses the start but never revokes keys later."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from llm_stream.gateway.callers import Caller
from llm_stream.gateway.keyring import KeyRing, ProjectsFileError, keys_required
from llm_stream.settings import Settings

ADMIN = "sk-admin-0123456789abcdef0123456789"
SEARCH = "sk-search-0123456789abcdef012345678"
ADS = "sk-ads-0123456789abcdef0123456789ab"
ENV = "sk-env-0123456789abcdef0123456789ab"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _write(path: Path, content: dict[str, Any], mtime_ns: int) -> Path:
    path.write_text(json.dumps(content))
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def _file(path: Path, mtime_ns: int = 1_000_000_000, **projects: list[str]) -> Path:
    content = {"projects": {name: {"keys": keys} for name, keys in projects.items()}}
    return _write(path, {**content, "admin_keys": [ADMIN]}, mtime_ns)


def test_environment_keys_are_admin_keys_of_the_default_project() -> None:
    ring = KeyRing([SecretStr(ENV)])
    assert ring.caller(ENV.encode()) == Caller("default", admin=True)
    assert ring.caller(b"sk-something-else-0123456789abcdef") is None
    assert not ring.open
    assert KeyRing([]).open


def test_projects_file_keys_belong_to_their_project_and_admin_keys_see_all(
    tmp_path: Path,
) -> None:
    path = _file(tmp_path / "projects.json", search=[SEARCH], ads=[ADS])
    ring = KeyRing([SecretStr(ENV)], path)
    assert ring.caller(SEARCH.encode()) == Caller("search")
    assert ring.caller(ADS.encode()) == Caller("ads")
    assert ring.caller(ADMIN.encode()) == Caller("default", admin=True)
    assert ring.caller(ENV.encode()) == Caller("default", admin=True)
    assert {caller for _, caller in ring.granted()} == {
        Caller("search"),
        Caller("ads"),
        Caller("default", admin=True),
    }


def test_a_changed_file_is_read_again_only_after_the_interval(tmp_path: Path) -> None:
    clock = Clock()
    path = _file(tmp_path / "projects.json", search=[SEARCH])
    ring = KeyRing([], path, reload_s=5.0, clock=clock)
    _file(path, mtime_ns=2_000_000_000, ads=[ADS])  # search's key revoked, ads' added
    clock.now = 4.9
    assert ring.caller(SEARCH.encode()) == Caller("search")  # not checked yet
    clock.now = 5.0
    assert ring.caller(SEARCH.encode()) is None
    assert ring.caller(ADS.encode()) == Caller("ads")


def test_a_broken_file_later_keeps_the_keys_read_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    path = _file(tmp_path / "projects.json", search=[SEARCH])
    ring = KeyRing([], path, reload_s=1.0, clock=clock)
    path.write_text('{"projects": {"search": ')  # an editor's half-saved file
    os.utime(path, ns=(3_000_000_000, 3_000_000_000))
    clock.now = 2.0
    assert ring.caller(SEARCH.encode()) == Caller("search")
    assert "keys read before stay in force" in caplog.text
    path.unlink()
    clock.now = 4.0
    assert ring.caller(SEARCH.encode()) == Caller("search")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"projects": {"search": {"keys": ["short"]}}}, "shorter than 32"),
        ({"projects": {"bad/name": {"keys": [SEARCH]}}}, "not a projects file"),
        ({"projects": {"search": {"keys": [SEARCH], "admin": True}}}, "not a projects file"),
        ({"projects": {"a": {"keys": [SEARCH]}, "b": {"keys": [SEARCH]}}}, "given twice"),
        ({"project": {}}, "not a projects file"),
    ],
)
def test_a_file_that_cannot_be_used_refuses_the_start_without_showing_a_key(
    tmp_path: Path, content: dict[str, Any], reason: str
) -> None:
    path = _write(tmp_path / "projects.json", content, 1_000_000_000)
    with pytest.raises(ProjectsFileError, match=reason) as refused:
        KeyRing([], path)
    assert SEARCH not in str(refused.value)
    assert 'short"' not in str(refused.value)


def test_a_missing_file_refuses_the_start(tmp_path: Path) -> None:
    with pytest.raises(ProjectsFileError, match="cannot be read"):
        KeyRing([], tmp_path / "absent.json")


def test_a_projects_file_asks_for_keys_even_while_it_lists_none(tmp_path: Path) -> None:
    path = _write(tmp_path / "projects.json", {}, 1_000_000_000)
    ring = KeyRing([], path)
    assert not ring.open
    assert ring.caller(SEARCH.encode()) is None
    assert keys_required(Settings(gateway_projects_file=path))
    assert not keys_required(Settings())
    assert keys_required(Settings(gateway_api_keys=ENV))
