"""A submitted batch, by id: what ``submit`` returns, as arq's ``enqueue_job`` returns a ``Job``."""

from __future__ import annotations

from typing import Protocol

from llm_stream.contracts import BatchObject


class BatchReader(Protocol):
    """The client a handle asks about its batch (the one that submitted it, or any other)."""

    async def retrieve(self, batch_id: str) -> BatchObject | None: ...

    async def wait(self, batch_id: str, timeout: float) -> BatchObject | None: ...  # noqa: ASYNC109

    async def cancel(self, batch_id: str) -> BatchObject | None: ...


class BatchHandle:
    """One batch of one client. It holds no state of its own, so it never goes stale."""

    def __init__(self, batch_id: str, reader: BatchReader) -> None:
        self.batch_id = batch_id
        self._reader = reader

    def __repr__(self) -> str:
        return f"BatchHandle({self.batch_id!r})"

    async def retrieve(self) -> BatchObject | None:
        """The batch's latest batch object (see ``BatchClient.retrieve``)."""
        return await self._reader.retrieve(self.batch_id)

    async def wait(self, timeout: float) -> BatchObject | None:  # noqa: ASYNC109
        """The batch object once final, or the latest after ``timeout`` seconds."""
        return await self._reader.wait(self.batch_id, timeout)

    async def cancel(self) -> BatchObject | None:
        """Cancel the batch (see ``BatchClient.cancel``): its ``cancelling`` object, or its
        latest one when it cannot be cancelled any more."""
        return await self._reader.cancel(self.batch_id)
