"""The gateway's keys and the project each belongs to, re-read when the projects file changes.

Two sources: ``LLM_STREAM_GATEWAY_API_KEYS`` (the keys every deployment had before projects:
admin keys of the default project, so a deployment that configures no projects answers as it
always did) and the projects file (``LLM_STREAM_GATEWAY_PROJECTS_FILE``), JSON a person edits::

    {"projects": {"search": {"keys": ["<key>", ...]}, "ads": {"keys": ["<key>"]}},
     "admin_keys": ["<key>"]}

A project may also set its own limits there (``requests_per_minute``, and quotas per model
under ``models``: the ``limits`` module says how).

Keys are held as given, like the environment's: the web page signs its session cookies with
the key (``ui_auth``), which a digest could not do. A key is looked up by its SHA-256 digest
(a dict), so the time a lookup takes tells nothing of any key's characters.

A request checks the file's modification time and size at most once per
``gateway_projects_reload_s``; a changed file is read again. A file that cannot be read or
does not hold valid projects at start refuses the start; later, the keys read last stay in
force and the error is logged (an editor saving half a file revokes nobody and lets nobody in).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from llm_stream.contracts import DEFAULT_PROJECT, ProjectId
from llm_stream.errors import LlmStreamError
from llm_stream.gateway.callers import Caller
from llm_stream.gateway.limits import Limits, ProjectLimits
from llm_stream.settings import GATEWAY_MIN_KEY_CHARS, Settings

logger = logging.getLogger(__name__)


class ProjectsFileError(LlmStreamError, ValueError):
    """The projects file cannot be read or holds no valid projects (the message never shows a
    key)."""


class _Project(ProjectLimits):
    keys: list[SecretStr] = Field(default_factory=list)


class _ProjectsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    projects: dict[ProjectId, _Project] = Field(default_factory=dict)
    admin_keys: list[SecretStr] = Field(default_factory=list)


def keys_required(settings: Settings) -> bool:
    """Whether the gateway asks every ``/v1`` request for a key: keys in the environment, or
    a projects file (even one listing none yet: an emptied file never opens the gateway)."""
    return bool(settings.gateway_api_keys) or settings.gateway_projects_file is not None


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class _Keys:
    """Keys and their callers, by digest, and the projects' own limits; built whole, then
    swapped in."""

    def __init__(
        self,
        granted: Iterable[tuple[SecretStr, Caller]],
        source: str,
        limits: Mapping[str, ProjectLimits] | None = None,
    ) -> None:
        self.limits = dict(limits or {})
        self.by_digest: dict[bytes, tuple[bytes, Caller]] = {}
        for number, (secret, caller) in enumerate(granted, 1):
            key = secret.get_secret_value().encode()
            if len(secret.get_secret_value()) < GATEWAY_MIN_KEY_CHARS:
                raise ProjectsFileError(
                    f"{source}: key {number} is shorter than {GATEWAY_MIN_KEY_CHARS} characters "
                    "(make one with: openssl rand -hex 32)"
                )
            digest = _digest(key)
            caller = dataclasses.replace(caller, key_id=digest[:8].hex())
            if (earlier := self.by_digest.get(digest)) is not None and earlier[1] != caller:
                raise ProjectsFileError(f"{source}: key {number} is given twice, to two callers")
            self.by_digest[digest] = (key, caller)


def read_projects_file(
    path: Path,
) -> tuple[list[tuple[SecretStr, Caller]], dict[str, ProjectLimits]]:
    """The keys ``path`` grants and to whom, and each project's own limits;
    ProjectsFileError if it cannot be used."""
    try:
        parsed = _ProjectsFile.model_validate_json(path.read_bytes())
    except OSError as error:
        raise ProjectsFileError(f"{path}: cannot be read ({error.strerror})") from None
    except ValidationError as error:
        where = "; ".join(
            f"{'.'.join(str(part) for part in detail['loc']) or 'file'}: {detail['msg']}"
            for detail in error.errors(include_url=False, include_input=False)
        )
        raise ProjectsFileError(f"{path}: not a projects file ({where})") from None
    granted = [(key, Caller(DEFAULT_PROJECT, admin=True)) for key in parsed.admin_keys]
    for project, listed in parsed.projects.items():
        granted.extend((key, Caller(project)) for key in listed.keys)
    limits = {
        project: ProjectLimits.model_validate(listed.model_dump(exclude={"keys"}))
        for project, listed in parsed.projects.items()
    }
    return granted, limits


class KeyRing:
    """Who a bearer key is, as the settings and the projects file say now."""

    def __init__(
        self,
        admin_keys: Sequence[SecretStr],
        projects_file: Path | None = None,
        *,
        reload_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        defaults: Limits | None = None,
    ) -> None:
        """``admin_keys``: the environment's; ``defaults``: every project's limits unless the
        projects file gives its own (none: no limits); ProjectsFileError when the projects
        file cannot be used at start."""
        self._env = [(key, Caller(DEFAULT_PROJECT, admin=True)) for key in admin_keys]
        self._defaults = defaults if defaults is not None else Limits()
        self._file = projects_file
        self._every_s = reload_s
        self._clock = clock
        #: No key asked for: neither keys in the environment nor a projects file.
        self.open = not admin_keys and projects_file is None
        self._seen: tuple[int, int] | None = None
        self._checked_at = clock()
        self._keys = self._load(self._stamp())

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(
            settings.gateway_api_keys,
            settings.gateway_projects_file,
            reload_s=settings.gateway_projects_reload_s,
            defaults=Limits.from_settings(settings),
        )

    def caller(self, token: bytes) -> Caller | None:
        """The caller whose key ``token`` is; None for no key of ours."""
        self.refresh()
        found = self._keys.by_digest.get(_digest(token))
        return None if found is None else found[1]

    def granted(self) -> Sequence[tuple[bytes, Caller]]:
        """Every key and its caller (the web page's sessions are signed with the key)."""
        self.refresh()
        return list(self._keys.by_digest.values())

    def limits(self) -> Limits:
        """Every project's limits, as the settings and the projects file say now."""
        self.refresh()
        return dataclasses.replace(self._defaults, projects=self._keys.limits)

    def refresh(self) -> None:
        """Read the projects file again if it changed since it was read (checked at most
        once per ``gateway_projects_reload_s``); keep the keys in force if it is not valid."""
        now = self._clock()
        if self._file is None or now - self._checked_at < self._every_s:
            return
        self._checked_at = now
        try:
            stamp = self._stamp()
            if stamp != self._seen:
                self._keys = self._load(stamp)
                logger.info("projects file %s read again: %d keys", self._file, self.count)
        except ProjectsFileError as error:
            logger.error("%s; the keys read before stay in force", error)

    @property
    def count(self) -> int:
        return len(self._keys.by_digest)

    def _stamp(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        try:
            stat = os.stat(self._file)
        except OSError as error:
            raise ProjectsFileError(f"{self._file}: cannot be read ({error.strerror})") from None
        return stat.st_mtime_ns, stat.st_size

    def _load(self, stamp: tuple[int, int] | None) -> _Keys:
        granted = list(self._env)
        limits: dict[str, ProjectLimits] = {}
        if self._file is not None:
            from_file, limits = read_projects_file(self._file)
            granted.extend(from_file)
        keys = _Keys(granted, str(self._file or "LLM_STREAM_GATEWAY_API_KEYS"), limits)
        self._seen = stamp
        return keys
