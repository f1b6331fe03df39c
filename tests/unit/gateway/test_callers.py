"""The one rule of what a caller sees: its project's objects (those naming none are the default
project's), every project's for an admin; what it creates records its project."""

from __future__ import annotations

from llm_stream.gateway.callers import OPEN, Caller


def test_a_project_key_sees_its_project_only() -> None:
    search = Caller("search")
    assert search.sees("search")
    assert not search.sees("ads")
    assert not search.sees(None)  # the default project's
    assert search.lists == "search"
    assert search.creates_for == "search"


def test_the_default_project_owns_what_names_no_project() -> None:
    default = Caller("default")
    assert default.sees(None)
    assert default.sees("default")
    assert not default.sees("search")
    assert default.creates_for is None  # recorded as none: as before projects existed


def test_an_admin_sees_every_project_and_lists_them_all() -> None:
    admin = Caller("default", admin=True)
    assert all(admin.sees(project) for project in ("search", "ads", None))
    assert admin.lists is None
    assert admin == OPEN
