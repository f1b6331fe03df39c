"""The review controls of a batch's page in a real browser (headless Chromium), in front of a
real broker, a worker on the echo engine and an aggregator: the keyboard alone moves between
lines (j/k), judges them (a/r/g) and edits an answer (e, Esc); each judgement is on the
judgements topic, read back through the API. The batch names a JSON Schema in its metadata:
each line says whether its answer validates, and why not."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from llm_stream.engine.echo import EchoEngine
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import chat_line, jsonl, keyed_settings, pipeline, serving
from tests.integration.test_web_page import KEY, Page, chromium

pytestmark = pytest.mark.broker

LINES = [f"review-{number}" for number in range(5)]
#: What each line asks the echo engine, which answers it upper-cased.
PROMPTS = {"review-0": '{"label": "spam"}', "review-1": '{"label": "eggs"}'}
#: The schema the batch's metadata names (``schema``): the echo's upper-cased labels.
LABELS = {
    "type": "object",
    "properties": {"LABEL": {"enum": ["SPAM", "HAM"]}},
    "required": ["LABEL"],
}


class ReviewPage(Page):
    def press(self, *keys: str) -> None:
        body = self.find("body")
        for key in keys:
            body.send_keys(key)

    def current(self) -> str:
        return str(
            self.driver.execute_script(
                "const r = document.querySelector('tr.review-row.current');"
                "return r ? r.dataset.customId : '';"
            )
        )

    def verdict_of(self, custom_id: str) -> str:
        return self.text(f'tr[data-custom-id="{custom_id}"] [data-field=verdict]')

    def schema_of(self, custom_id: str) -> tuple[str, str]:
        """Whether the row says its answer validates (``data-valid``), and what it says."""
        found = self.driver.execute_script(
            "const e = document.querySelector(arguments[0]);"
            "return e ? [e.dataset.valid, e.innerText] : ['', ''];",
            f'tr[data-custom-id="{custom_id}"] [data-field=schema]',
        )
        return str(found[0]), str(found[1])

    def schema_checks(self, batch_id: str) -> dict[str, tuple[str, str]]:
        self.driver.get(f"{self.base_url}/ui/batches/{batch_id}")
        self.wait(lambda: self.driver.find_elements(By.ID, "review-keys"), "the review controls")
        self.screenshot("review-schema", whole_page=True)
        return {custom_id: self.schema_of(custom_id) for custom_id in LINES}

    def review(self, batch_id: str) -> list[str]:
        """Judge lines with the keyboard alone; the custom_ids in page order."""
        self.driver.get(f"{self.base_url}/ui/batches/{batch_id}")
        self.wait(lambda: self.driver.find_elements(By.ID, "review-keys"), "the review controls")
        rows = self.driver.find_elements(By.CSS_SELECTOR, "tr.review-row")
        order = [row.get_attribute("data-custom-id") for row in rows]
        assert sorted(order) == LINES
        assert all(self.verdict_of(one) == "not judged" for one in order)

        self.press("j")  # the first line
        assert self.current() == order[0]
        self.press("a")
        self.wait(lambda: self.verdict_of(order[0]) == "accepted", "the first line accepted")
        self.wait(lambda: self.current() == order[0], "the judged line still current")

        self.press("j", "e")  # the second line's answer, edited
        assert self.current() == order[1]
        field = self.driver.switch_to.active_element
        assert field.get_attribute("name") == "corrected"
        field.send_keys("A better answer.", Keys.ESCAPE)
        self.press("g")
        self.wait(lambda: self.verdict_of(order[1]) == "gold", "the second line gold")

        self.press("k")  # back to the first, judged again
        assert self.current() == order[0]
        self.press("r")
        self.wait(lambda: self.verdict_of(order[0]) == "rejected", "the first line rejected")
        self.screenshot("review", whole_page=True)
        return order


async def _create_named(client: openai.AsyncOpenAI) -> str:
    """The batch of ``LINES`` (``PROMPTS``, else the custom_id) naming the ``labels`` schema."""
    lines = []
    for custom_id in LINES:
        line = chat_line(custom_id, model="echo")
        line["body"]["messages"][0]["content"] = PROMPTS.get(custom_id, custom_id)
        lines.append(line)
    uploaded = await client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"schema": "labels"},
    )
    return batch.id


async def test_the_keyboard_reviews_a_batchs_lines(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "labels.json").write_text(json.dumps(LABELS))
    keyed = await keyed_settings(isolated_settings, KEY)
    settings = keyed.with_overrides(schemas_dir=tmp_path)
    async with pipeline(settings, EchoEngine()), serving(create_app(settings)) as base:
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        batch_id = await _create_named(client)
        deadline = time.monotonic() + 60
        while (await client.batches.retrieve(batch_id)).status != "completed":
            assert time.monotonic() < deadline, "the batch did not complete"
            await asyncio.sleep(0.2)
        async with chromium() as driver:
            page = ReviewPage(driver, base)
            await asyncio.to_thread(page.log_in, KEY)
            await asyncio.to_thread(page.wait, lambda: page.text("h1") == "Batches", "login")
            checks = await asyncio.to_thread(page.schema_checks, batch_id)
            order = await asyncio.to_thread(page.review, batch_id)
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.get(
                f"/v1/batches/{batch_id}/judgements", headers={"Authorization": f"Bearer {KEY}"}
            )
    assert checks["review-0"] == ("true", "Validates against its schema")
    valid, said = checks["review-1"]
    assert valid == "false"
    assert "Does not validate against its schema" in said
    assert "LABEL: 'EGGS' is not one of ['SPAM', 'HAM']" in said
    for custom_id in LINES[2:]:
        assert checks[custom_id][0] == "false"
        assert "the answer is not JSON" in checks[custom_id][1]
    judged = {j["custom_id"]: j for j in answer.json()["data"]}
    assert sorted(judged) == sorted(order[:2])
    assert judged[order[0]]["verdict"] == "rejected"
    assert judged[order[1]]["verdict"] == "gold"
    assert judged[order[1]]["corrected"] == "A better answer."
