"""What a stored batch object says of its files: the ids it names and their project."""

from __future__ import annotations

from llm_stream.files.markers import named_files, named_project


def test_a_marker_names_its_files_and_project() -> None:
    marker = b'{"output_file_id": "file-b-output", "error_file_id": null, "project": "ads"}'
    assert named_files(marker) == ["file-b-output"]
    assert named_project(marker) == "ads"


def test_no_project_a_default_one_or_a_bad_one_is_the_default_projects() -> None:
    for marker in (b"{}", b'{"project": "default"}', b'{"project": "../x"}', b"[1]", b"{", None):
        assert named_project(marker) is None
