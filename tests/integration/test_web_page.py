"""The web page in a real browser (Debian's headless Chromium, driven by selenium) in front of a
real broker, a worker on the echo engine and an aggregator: log in (a wrong key refused), watch
a batch's progress bar reach 100% without a reload, open it and find a custom_id with the search
box, cancel a slow batch from its page and see it cancelled. Screenshots are saved as artifacts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from llm_stream.engine.echo import EchoEngine
from llm_stream.gateway.app import create_app
from llm_stream.kafka.topics import ensure_topics
from llm_stream.settings import Settings
from tests.gateway_support import chat_line, jsonl, keyed_settings, pipeline, serving

pytestmark = pytest.mark.broker

KEY = "sk-web-page-test-0123456789abcdef"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: The flags a root, offline machine needs (no sandbox, no calls home, a fresh profile).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LLM_STREAM_TEST_ARTIFACTS", ROOT / ".cache/test-artifacts"))
#: Set to refresh the screenshots the README and docs/operations.md show.
UPDATE_DOCS_IMAGES = os.environ.get("LLM_STREAM_UPDATE_DOCS_IMAGES") == "1"
DOCS_IMAGES = ROOT / "docs/images"
#: The watched batch: 40 requests of 0.75 s, 8 at a time: about 4 s of progress.
WATCHED = [f"row-{number:02d}" for number in range(40)]
#: The batch cancelled from the page: requests that would outlast the test.
SLOW = [f"slow-{number}" for number in range(4)]
#: The echo engine's pace: watched requests slow enough to see progress, slow ones endless.
DELAYS = {**dict.fromkeys(WATCHED, 0.75), **dict.fromkeys(SLOW, 300.0)}
WAIT_S = 30


@pytest.fixture
async def settings(isolated_settings: Settings) -> Settings:
    return await keyed_settings(isolated_settings, KEY)


def _start_chromium(profile: str) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@asynccontextmanager
async def chromium() -> AsyncIterator[WebDriver]:
    """Headless Chromium with a fresh profile, started and ended in a thread (seconds that
    would otherwise stall the gateway, the worker and the aggregator in this event loop)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Debian's chromium and chromium-driver are missing: `make browser` installs")
    profile = tempfile.mkdtemp(prefix="llm-stream-chromium-")
    driver = await asyncio.to_thread(_start_chromium, profile)
    try:
        yield driver
    finally:
        await asyncio.to_thread(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """What the test does in the browser; every call blocks, so the test runs them in a
    thread while this event loop serves the gateway, the worker and the aggregator."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.shots = ARTIFACTS / "web-page"
        self.shots.mkdir(parents=True, exist_ok=True)

    def wait(self, condition: Any, what: str) -> Any:
        """``condition()`` once truthy; on a timeout, a screenshot of what the page showed."""
        try:
            # A page that reloads or navigates between finding an element and reading it
            # leaves a stale reference: that is "not yet", and the wait asks again.
            return WebDriverWait(
                self.driver,
                WAIT_S,
                poll_frequency=0.1,
                ignored_exceptions=(StaleElementReferenceException,),
            ).until(lambda _: condition(), message=what)
        except TimeoutException:
            self.screenshot("timed-out")
            raise

    def find(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        """The first match's visible text ("" for none), found and read in one script.

        Finding an element and then reading it are two driver calls; a page that re-renders
        between them detaches the node, which chromium's driver reports as "does not belong
        to the document", not as a stale reference. One script has no such gap.
        """
        script = (
            "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : '';"
        )
        return str(self.driver.execute_script(script, css))

    def screenshot(self, name: str, whole_page: bool = False) -> Path:
        """A PNG of the window; ``whole_page``: the window grown to the page's height first."""
        path = self.shots / f"{name}.png"
        size = self.driver.get_window_size()
        if whole_page:
            height = self.driver.execute_script("return document.body.scrollHeight;")
            self.driver.set_window_size(size["width"], int(height) + 120)
        assert self.driver.save_screenshot(str(path)), path
        self.driver.set_window_size(size["width"], size["height"])
        return path

    def log_in(self, key: str) -> None:
        self.driver.get(f"{self.base_url}/ui")
        field = self.wait(lambda: self.driver.find_elements(By.ID, "api_key"), "login form")[0]
        field.clear()
        field.send_keys(key, Keys.ENTER)  # the keyboard alone logs in

    def log_in_refused_then_accepted(self) -> None:
        self.log_in("sk-not-a-key")
        self.wait(lambda: self.text("#login-error"), "refusal shown")
        assert self.text("#login-error") == "That API key is not accepted."
        assert not self.driver.find_elements(By.CSS_SELECTOR, "[data-batch-id]")
        self.screenshot("login-refused")
        self.log_in(KEY)
        self.wait(lambda: self.text("h1") == "Batches", "the batch list after login")
        cookies = {cookie["name"]: cookie for cookie in self.driver.get_cookies()}
        session = cookies["llm_stream_session"]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Strict"
        assert KEY not in session["value"]

    def watch_progress(self, batch_id: str) -> list[tuple[int, int]]:
        """Open the list while ``batch_id`` runs and wait, with no reload, for its bar to fill;
        the (value, max) pairs seen."""
        self.driver.get(f"{self.base_url}/ui")
        self.driver.execute_script("window.notReloaded = true;")
        row = f'tr[data-batch-id="{batch_id}"]'
        seen: list[tuple[int, int]] = []

        def full() -> bool:
            bar = self.find(f"{row} progress")
            value, most = int(bar.get_attribute("value")), int(bar.get_attribute("max"))
            if not seen or seen[-1] != (value, most):
                seen.append((value, most))
            return value == most == len(WATCHED) and self.text(f"{row} [data-field=status]") == (
                "completed"
            )

        self.wait(full, f"the progress bar of {batch_id} to reach 100%")
        assert self.driver.execute_script("return window.notReloaded === true;")
        assert self.text(f"{row} [data-field=percent]") == "100%"
        assert self.text(f"{row} [data-field=requests]") == "40 completed, 0 failed of 40"
        assert "team = search" in self.text(f"{row} .meta")
        self.screenshot("list-completed")
        return seen

    def find_custom_id(self, batch_id: str, custom_id: str) -> None:
        self.find(f'tr[data-batch-id="{batch_id}"] a').send_keys(Keys.ENTER)
        self.wait(lambda: batch_id in self.text("h1"), "the batch's page")
        assert self.text("#lines-summary") == "40 lines; page 1 of 1."
        search = self.find("#q")
        search.send_keys(custom_id, Keys.ENTER)
        self.wait(lambda: "contains" in self.text("#lines-summary"), "the search's result")
        found = [cell.text for cell in self.driver.find_elements(By.CSS_SELECTOR, ".custom-id")]
        assert found == [custom_id]
        summary = f"1 line whose custom_id contains “{custom_id}”; page 1 of 1."
        assert self.text("#lines-summary") == summary
        assert self.find("#download-output").get_attribute("href").endswith("-output/content")
        self.screenshot("batch-search", whole_page=True)

    def cancel(self, batch_id: str) -> None:
        self.driver.get(f"{self.base_url}/ui/batches/{batch_id}")
        self.find("#cancel-batch").send_keys(Keys.ENTER)  # the keyboard alone cancels
        self.wait(lambda: "Cancel batch" in self.text("h1"), "the confirmation")
        self.screenshot("cancel-confirm")
        self.find("#confirm-cancel").send_keys(Keys.ENTER)
        status = "[data-field=status]"
        self.wait(lambda: self.text(status) == "cancelled", f"{batch_id} cancelled on its page")
        assert not self.driver.find_elements(By.ID, "cancel-batch")
        self.screenshot("batch-cancelled")

    def final_list(self, batch_ids: list[str]) -> None:
        self.driver.get(f"{self.base_url}/ui")
        statuses = [
            self.text(f'tr[data-batch-id="{one}"] [data-field=status]') for one in batch_ids
        ]
        assert statuses == ["cancelled", "completed"]
        self.screenshot("list")
        self.driver.set_window_size(390, 844)  # a phone
        self.driver.get(f"{self.base_url}/ui")
        assert self.driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth;"
        ), "the list is wider than a phone's screen"
        self.screenshot("list-phone")


async def _create(client: openai.AsyncOpenAI, ids: list[str], **metadata: str) -> str:
    lines = [chat_line(custom_id, model="echo") for custom_id in ids]
    uploaded = await client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata=metadata,
    )
    return batch.id


async def test_the_page_shows_runs_finds_and_cancels_batches(settings: Settings) -> None:
    async with pipeline(settings, EchoEngine(DELAYS)), serving(create_app(settings)) as base:
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        async with chromium() as driver:
            page = Page(driver, base)
            await asyncio.to_thread(page.log_in_refused_then_accepted)

            watched = await _create(client, WATCHED, team="search", run="nightly")
            seen = await asyncio.to_thread(page.watch_progress, watched)
            (page.shots / "progress-seen.txt").write_text(f"{seen}\n")
            assert seen[0][0] < len(WATCHED), f"never seen running: {seen}"
            await asyncio.to_thread(page.find_custom_id, watched, "row-07")

            slow = await _create(client, SLOW, team="ads")
            await asyncio.to_thread(page.cancel, slow)
            assert (await client.batches.retrieve(slow)).status == "cancelled"
            await asyncio.to_thread(page.final_list, [slow, watched])

    if UPDATE_DOCS_IMAGES:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        for name in ("list", "batch-search", "list-phone"):
            shutil.copyfile(page.shots / f"{name}.png", DOCS_IMAGES / f"web-page-{name}.png")


async def test_the_page_shows_the_signed_in_projects_batches_only(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    """Each project's key sees its own batches on the page, an admin key every project's."""
    keys = {"search": "sk-search-" + "s" * 32, "ads": "sk-ads-" + "a" * 32}
    admin = "sk-admin-" + "x" * 32
    projects_file = tmp_path / "projects.json"
    projects = {project: {"keys": [key]} for project, key in keys.items()}
    projects_file.write_text(json.dumps({"projects": projects, "admin_keys": [admin]}))
    settings = isolated_settings.with_overrides(gateway_projects_file=projects_file)
    await ensure_topics(settings)
    async with serving(create_app(settings)) as base:
        created = {}
        for project, key in keys.items():
            client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
            created[project] = await _create(client, [f"{project}-1"], team=project)
        async with chromium() as driver:
            page = Page(driver, base)

            def listed_after_login(key: str) -> set[str]:
                driver.delete_all_cookies()
                page.log_in(key)
                page.wait(lambda: page.text("h1") == "Batches", "the batch list after login")
                rows = driver.find_elements(By.CSS_SELECTOR, "tr[data-batch-id]")
                return {row.get_attribute("data-batch-id") for row in rows}

            for project, key in keys.items():
                assert await asyncio.to_thread(listed_after_login, key) == {created[project]}
            assert await asyncio.to_thread(listed_after_login, admin) == set(created.values())
