"""The review controls of a batch's page in a real browser (headless Chromium), in front of a
real broker, a worker on the echo engine and an aggregator: the keyboard alone moves between
lines (j/k), judges them (a/r/g) and edits an answer (e, Esc); each judgement is on the
judgements topic, read back through the API."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from llm_stream.engine.echo import EchoEngine
from llm_stream.gateway.app import create_app
from llm_stream.settings import Settings
from tests.gateway_support import keyed_settings, pipeline, serving
from tests.integration.test_web_page import KEY, Page, _create, chromium

pytestmark = pytest.mark.broker

LINES = [f"review-{number}" for number in range(5)]


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


async def test_the_keyboard_reviews_a_batchs_lines(isolated_settings: Settings) -> None:
    settings = await keyed_settings(isolated_settings, KEY)
    async with pipeline(settings, EchoEngine()), serving(create_app(settings)) as base:
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        batch_id = await _create(client, LINES)
        deadline = time.monotonic() + 60
        while (await client.batches.retrieve(batch_id)).status != "completed":
            assert time.monotonic() < deadline, "the batch did not complete"
            await asyncio.sleep(0.2)
        async with chromium() as driver:
            page = ReviewPage(driver, base)
            await asyncio.to_thread(page.log_in, KEY)
            await asyncio.to_thread(page.wait, lambda: page.text("h1") == "Batches", "login")
            order = await asyncio.to_thread(page.review, batch_id)
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.get(
                f"/v1/batches/{batch_id}/judgements", headers={"Authorization": f"Bearer {KEY}"}
            )
    judged = {j["custom_id"]: j for j in answer.json()["data"]}
    assert sorted(judged) == sorted(order[:2])
    assert judged[order[0]]["verdict"] == "rejected"
    assert judged[order[1]]["verdict"] == "gold"
    assert judged[order[1]]["corrected"] == "A better answer."
