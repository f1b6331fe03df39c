"""What a store keeps about a file besides its content: the facts an OpenAI file object shows.

An uploaded file's record is written beside its content, in the store, so every gateway replica
sharing the store answers the same ``files.retrieve`` and ``files.list``; no process holds file
metadata of its own. A batch's output and error files need no record: their size and time are
the stored file's own.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: ``file-`` and 32 hex digits: no ``-`` after the prefix, so an upload's id never reads as a
#: batch file's (``file-<batch_id>-<kind>``), and never as a path.
_UPLOAD_ID_RE = re.compile(r"file-[0-9a-f]{32}")

#: What a stored file is for, as OpenAI's file objects name it: ``batch`` for an input file
#: uploaded for a batch, ``batch_output`` for a batch's output and error files.
FilePurpose = Literal["batch", "batch_output"]


def new_upload_id() -> str:
    return f"file-{uuid.uuid4().hex}"


def is_upload_id(value: str) -> bool:
    return bool(_UPLOAD_ID_RE.fullmatch(value))


class StoredFile(BaseModel):
    """A stored file's record: written as JSON beside an upload, derived for batch files."""

    model_config = ConfigDict(frozen=True)

    id: str
    bytes: int = Field(ge=0)
    created_at: int = Field(ge=0, description="Unix seconds.")
    filename: str
    purpose: FilePurpose
    #: The project the file belongs to (an upload: its uploader's; a batch file: its
    #: batch's); None: the default project. Left out of the stored record when None.
    project: str | None = Field(None, exclude_if=lambda project: project is None)
    #: When the file expires (Unix seconds: ``files.expiry`` deletes it then); None: never.
    #: Left out of the stored record when None.
    expires_at: int | None = Field(None, ge=0, exclude_if=lambda at: at is None)

    def expired(self, now: float) -> bool:
        """Past its expiry: answered as a deleted file is, before the sweep deletes it."""
        return self.expires_at is not None and now >= self.expires_at
