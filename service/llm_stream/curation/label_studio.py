"""A batch in Label Studio: its project made or reused, its lines imported as tasks, its
annotations read back as judgements. Label Studio's REST API, over httpx.

Why not label-studio-sdk: it pins ``opencv-python-headless<4.13`` while vLLM needs 4.13 or
later, so the two cannot share the worker's environment; the few calls made here are the
SDK's own (projects, import, tasks, annotations) and its way of signing in: a personal access
token (a JWT refresh token) is exchanged for an access token, a legacy token sent as is.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from llm_stream.contracts import Judgement
from llm_stream.curation.label_studio_tasks import labelling_config
from llm_stream.errors import LlmStreamError

#: Tasks sent per import request, and read per page.
TASKS_PER_REQUEST = 500
_TIMEOUT_S = 60.0


class LabelStudioError(LlmStreamError):
    """Label Studio refused a call, or cannot be reached."""


def project_title(batch_id: str) -> str:
    """The title that finds a batch's project again (reuse instead of a second project)."""
    return f"llm-stream {batch_id}"


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return False
    return isinstance(header, dict) and "alg" in header


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    task_count: int


class LabelStudio:
    """One Label Studio server, as one user; a context manager."""

    def __init__(self, url: str, api_key: str) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=_TIMEOUT_S)
        try:
            if _is_jwt(api_key):
                answer = self._http.post("/api/token/refresh/", json={"refresh": api_key})
                self._check(answer)
                self._http.headers["Authorization"] = f"Bearer {answer.json()['access']}"
            else:
                self._http.headers["Authorization"] = f"Token {api_key}"
        except httpx.HTTPError as error:
            self._http.close()
            raise LabelStudioError(f"cannot reach Label Studio at {url}: {error}") from error

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _check(self, answer: httpx.Response) -> httpx.Response:
        if answer.is_error:
            raise LabelStudioError(
                f"Label Studio answered {answer.status_code} to {answer.request.method} "
                f"{answer.request.url.path}: {answer.text[:300]}"
            )
        return answer

    def _call(self, method: str, path: str, **options: Any) -> Any:
        try:
            return self._check(self._http.request(method, path, **options)).json()
        except httpx.HTTPError as error:
            raise LabelStudioError(f"Label Studio call {method} {path} failed: {error}") from error

    def find_project(self, title: str) -> Project | None:
        page = 1
        while True:
            found = self._call("GET", "/api/projects", params={"title": title, "page": page})
            projects = found.get("results", []) if isinstance(found, dict) else found
            for project in projects:
                if project.get("title") == title:
                    return Project(project["id"], title, int(project.get("task_number") or 0))
            if not isinstance(found, dict) or not found.get("next"):
                return None
            page += 1

    def ensure_project(self, batch_id: str, endpoint: str) -> tuple[Project, bool]:
        """The batch's project, made with the endpoint's labelling config when missing;
        whether it was made now."""
        title = project_title(batch_id)
        existing = self.find_project(title)
        if existing is not None:
            return existing, False
        made = self._call(
            "POST",
            "/api/projects",
            json={
                "title": title,
                "description": f"Review of batch {batch_id} ({endpoint})",
                "label_config": labelling_config(endpoint),
            },
        )
        return Project(made["id"], title, 0), True

    def import_tasks(self, project_id: int, tasks: Iterable[dict[str, Any]]) -> int:
        """Import tasks a request's worth at a time; how many were imported."""
        imported = 0
        chunk: list[dict[str, Any]] = []
        for task in tasks:
            chunk.append(task)
            if len(chunk) == TASKS_PER_REQUEST:
                imported += self._import(project_id, chunk)
                chunk = []
        if chunk:
            imported += self._import(project_id, chunk)
        return imported

    def _import(self, project_id: int, tasks: list[dict[str, Any]]) -> int:
        answer = self._call("POST", f"/api/projects/{project_id}/import", json=tasks)
        return int(answer.get("task_count", len(tasks)))

    def tasks(self, project_id: int) -> Iterator[dict[str, Any]]:
        """Every task of the project with its annotations, a page at a time."""
        page = 1
        while True:
            try:
                found = self._call(
                    "GET",
                    "/api/tasks",
                    params={
                        "project": project_id,
                        "page": page,
                        "page_size": TASKS_PER_REQUEST,
                        "fields": "all",
                    },
                )
            except LabelStudioError as error:
                if "404" in str(error):  # past the last page
                    return
                raise
            tasks = found.get("tasks", []) if isinstance(found, dict) else found
            if not tasks:
                return
            yield from tasks
            page += 1

    def annotate(self, task_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        """Submit an annotation as a reviewer does from the labelling page."""
        found: dict[str, Any] = self._call(
            "POST", f"/api/tasks/{task_id}/annotations", json={"result": result}
        )
        return found


def judgement_of(task: dict[str, Any], batch_id: str) -> Judgement | None:
    """The latest submitted annotation of a task as a judgement; None when not judged."""
    data = task.get("data") or {}
    custom_id = data.get("custom_id")
    annotations = [
        a for a in task.get("annotations") or [] if not a.get("was_cancelled") and a.get("result")
    ]
    if data.get("batch_id") != batch_id or not custom_id or not annotations:
        return None
    latest = max(annotations, key=lambda a: (str(a.get("updated_at", "")), a.get("id", 0)))
    values: dict[str, Any] = {}
    for region in latest["result"]:
        value = region.get("value") or {}
        name = region.get("from_name")
        if value.get("choices"):
            values[name] = value["choices"][0]
        elif "text" in value:
            text = value["text"]
            values[name] = "\n".join(text) if isinstance(text, list) else str(text)
        elif "rating" in value:
            values[name] = int(value["rating"])
    verdict = values.get("verdict")
    if verdict is None and "rating" in values:
        verdict = "accepted" if values["rating"] >= 4 else "rejected"
    if verdict not in ("accepted", "rejected", "gold"):
        return None
    corrected = values.get("corrected")
    if corrected is not None and corrected == data.get("answer", ""):
        corrected = None  # left as the model wrote it
    reviewer = latest.get("completed_by")
    return Judgement(
        batch_id=batch_id,
        custom_id=str(custom_id),
        verdict=verdict,
        corrected=corrected,
        note=values.get("note") or None,
        reviewer=f"label-studio:{reviewer}" if reviewer is not None else "label-studio",
        judged_at=_seconds(latest.get("updated_at")),
    )


def _seconds(stamp: Any) -> float:
    """An annotation's ISO time as Unix seconds (now, where it has none): the later
    annotation of a line is the later judgement."""
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return time.time()
