"""Input links are read from the file store once per batch, and once per page of batches."""

from __future__ import annotations

from llm_stream.gateway.input_links import InputLinks


class CountingStore:
    """The one ``FileStore`` method ``InputLinks`` uses, counting its calls."""

    def __init__(self, links: dict[str, str]) -> None:
        self.links = links
        self.asked: list[str] = []

    def linked_input(self, batch_id: str) -> str | None:
        self.asked.append(batch_id)
        return self.links.get(batch_id)


async def test_a_link_or_its_absence_is_read_once() -> None:
    store = CountingStore({"a": "file-up-a"})
    links = InputLinks(store)  # type: ignore[arg-type]
    for _ in range(3):
        assert await links.of(["a", "b"]) == {"a": "file-up-a", "b": None}
    assert store.asked == ["a", "b"]


async def test_only_the_batches_not_seen_lately_are_read() -> None:
    store = CountingStore({})
    links = InputLinks(store, remembered=2)  # type: ignore[arg-type]
    await links.of(["a", "b"])
    await links.of(["b", "c"])  # a is the least recently used: forgotten
    await links.of(["a"])
    assert store.asked == ["a", "b", "c", "a"]
