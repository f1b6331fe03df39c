"""The Label Studio round trip against a real Label Studio server (started once for the
module) and a real broker: a batch's project made and reused, its 20 lines imported with their
custom_ids, 5 annotated through the API the labelling page uses, pulled back as 5 judgements on
the judgements topic, and the fine-tuning export built on them, the correction included."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from llm_stream.cli.main import main
from llm_stream.curation import finetune
from llm_stream.curation.curate import (
    export_from_stream,
    pull_from_label_studio,
    send_to_label_studio,
)
from llm_stream.curation.judgements import read_judgements
from llm_stream.curation.label_studio import LabelStudio
from llm_stream.files.store import LocalFileStore
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.curation_support import custom_id, write_batch
from tests.label_studio_harness import LabelStudioServer, label_studio_server

pytestmark = pytest.mark.broker

BATCH = "batch_review20"
TESTED_VERSION = "1.23.2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    with label_studio_server(tmp_path_factory.mktemp("label-studio")) as running:
        yield running


def _by_hand(
    verdict: str, corrected: str | None = None, rating: int = 4
) -> list[dict[str, object]]:
    """What the labelling page submits: one region per control, made by hand."""
    result: list[dict[str, object]] = [
        {
            "id": "v1",
            "from_name": "verdict",
            "to_name": "answer",
            "type": "choices",
            "origin": "manual",
            "value": {"choices": [verdict]},
        },
        {
            "id": "r1",
            "from_name": "rating",
            "to_name": "answer",
            "type": "rating",
            "origin": "manual",
            "value": {"rating": rating},
        },
    ]
    if corrected is not None:
        result.append(
            {
                "id": "c1",
                "from_name": "corrected",
                "to_name": "answer",
                "type": "textarea",
                "origin": "manual",
                "value": {"text": [corrected]},
            }
        )
    return result


async def test_round_trip_from_batch_to_fine_tuning_file(
    server: LabelStudioServer, isolated_settings: Settings, tmp_path: Path
) -> None:
    assert server.version == TESTED_VERSION
    settings = isolated_settings
    await ensure_topics(settings, [settings.judgements_topic])
    store = LocalFileStore(settings.output_dir)
    write_batch(store, BATCH, 20)

    with LabelStudio(server.url, server.token) as studio:
        project, imported = send_to_label_studio(studio, store, BATCH)
        assert imported == 20
        again, imported_again = send_to_label_studio(studio, store, BATCH)
        assert (again.id, imported_again) == (project.id, 0)  # reused, nothing twice
        tasks = {t["data"]["custom_id"]: t for t in studio.tasks(project.id)}
        assert sorted(tasks) == [custom_id(n) for n in range(20)]

        plan = {
            custom_id(0): _by_hand("accepted"),
            custom_id(1): _by_hand("gold", corrected="One plus one makes two."),
            custom_id(2): _by_hand("rejected", rating=1),
            custom_id(3): _by_hand("accepted", rating=5),
            custom_id(4): _by_hand("rejected", rating=2),
        }
        for line, result in plan.items():
            studio.annotate(tasks[line]["id"], result)

        assert await pull_from_label_studio(settings, studio, BATCH) == 5

    judged = {j.custom_id: j async for j in read_judgements(settings, BATCH)}
    assert {k: j.verdict for k, j in judged.items()} == {
        custom_id(0): "accepted",
        custom_id(1): "gold",
        custom_id(2): "rejected",
        custom_id(3): "accepted",
        custom_id(4): "rejected",
    }
    assert judged[custom_id(1)].corrected == "One plus one makes two."
    assert [k for k, j in judged.items() if j.corrected is not None] == [custom_id(1)]

    out = io.BytesIO()
    count = await export_from_stream(settings, store, BATCH, "finetune", out)
    examples = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert count.written == len(examples) == 3
    for example in examples:
        assert finetune.problems(example) == []
    finals = sorted(e["messages"][-1]["content"] for e in examples)
    assert finals == ["It is 1.", "It is 4.", "One plus one makes two."]


def test_the_commands_send_pull_and_export(
    server: LabelStudioServer, isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    asyncio.run(ensure_topics(settings, [settings.judgements_topic]))
    store = LocalFileStore(settings.output_dir)
    batch = "batch_cli_review"
    write_batch(store, batch, 3)
    common = [
        "--bootstrap-servers",
        settings.bootstrap_servers,
        "--output-dir",
        str(settings.output_dir),
    ]
    studio_flags = ["--url", server.url, "--api-key", server.token]
    env = {"LLM_STREAM_JUDGEMENTS_TOPIC": settings.judgements_topic}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert main(["curate", "label-studio", batch, *studio_flags, *common]) == 0
        with LabelStudio(server.url, server.token) as studio:
            found = studio.find_project(f"llm-stream {batch}")
            assert found is not None
            first = next(iter(studio.tasks(found.id)))
            studio.annotate(first["id"], _by_hand("gold"))
        assert main(["curate", "label-studio", batch, "--pull", *studio_flags, *common]) == 0
        target = tmp_path / "train.jsonl"
        code = main(["export", batch, "--format", "finetune", "-o", str(target), *common])
    assert code == 0
    lines = target.read_bytes().splitlines()
    assert len(lines) == 1
    assert finetune.problems(orjson.loads(lines[0])) == []
