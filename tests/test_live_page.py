"""The live alert page in headless Chromium against the real broker.

An alert produced into Kafka must appear on the page (how long it took is printed, not
asserted: the machine may be loaded); the test writes a screenshot.
Needs Debian's ``chromium`` (deploy/apt-packages.txt; ``make system-deps`` installs it).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from seismo.broker import free_port
from seismo.config import load_settings
from seismo.contracts import Alert
from seismo.kafka import ensure_topics
from tests.helpers import http_get, make_alert, spawn_seismo, stop_process, wait_until
from tests.timeouts import RECORD_ARRIVES, SERVICE_READY

pytestmark = pytest.mark.broker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# how long the page may take to show what the broker has (playwright wants milliseconds)
PAGE_MS = RECORD_ARRIVES * 1000


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, want: int) -> None:
    """Until the live page's /healthz answers with ``want`` alerts on its board."""

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return bool(json.loads(http_get(url + "healthz"))["alerts"] >= want)
        except OSError:
            return False

    wait_until(
        healthy,
        lambda: f"the live page up with {want} alerts:\n{log.read_text()[-3000:]}",
        SERVICE_READY,
    )


def test_live_page_shows_a_new_alert(
    worker_env: dict[str, str], kafka: str, tmp_path: Path
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (make system-deps)")
    from playwright.async_api import async_playwright

    ns = worker_env["SEISMO_NAMESPACE"]
    topic = f"{ns}.alerts.v1"
    port = free_port()
    env = {**worker_env, "SEISMO_LIVE_PORT": str(port), "SEISMO_LIVE_TOKEN": "page-token"}
    settings = load_settings(kafka_bootstrap=kafka, namespace=ns, topic_partitions=2)
    asyncio.run(ensure_topics(settings))
    earlier = make_alert(1, id="earlier", dossier="ai-chips", severity="medium")
    fresh = make_alert(1, id="fresh", severity="critical")
    curve = [
        {"start": f"2026-05-01T10:{5 * i:02d}:00Z", "count": c} for i, c in enumerate([1, 4, 2])
    ]
    loose = make_alert(
        1,
        id="loose",
        dossier=None,
        severity="low",
        headline="Tornado emergency for Moore, Oklahoma",
        counts_curve=curve,
        links=[{"url": "https://news.example.com/moore", "domain": "news.example.com", "count": 3}],
        evidence=[
            {
                "post_id": "x:9",
                "source": "x",
                "created_at": "2026-05-01T10:05:00Z",
                "text": "Tornado on the ground",
            }
        ],
    )

    async def produce(p: AIOKafkaProducer, a: Alert) -> None:
        await p.send_and_wait(topic, a.to_bytes(), key=a.id.encode())

    log = tmp_path / "serve.log"
    proc = spawn_seismo(env, log, "alerts", "serve")
    url = f"http://127.0.0.1:{port}/"
    shot = tmp_path / "live-page.png"

    async def browse() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=kafka)
        await producer.start()
        try:
            # produced before the server starts reading: shown from its backlog on connect
            await produce(producer, earlier)
            await asyncio.to_thread(wait_healthy, url, proc, log, 1)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = await browser.new_page(viewport={"width": 1100, "height": 700})
                page.set_default_timeout(PAGE_MS)
                requested: list[str] = []
                page.on("request", lambda r: requested.append(r.url))
                await page.goto(url + "?token=page-token")
                await page.wait_for_selector('[data-alert-id="earlier"]')
                assert "token" not in page.url  # kept in an HttpOnly cookie instead
                await page.wait_for_selector("#conn.live")
                streams = [u for u in requested if "/events" in u]
                assert streams and not any("token" in u for u in streams), requested

                t0 = time.monotonic()
                await produce(producer, fresh)
                await page.wait_for_selector('[data-alert-id="fresh"]')
                took = time.monotonic() - t0

                # the same alert's next version replaces its card
                resolved = fresh.model_copy(update={"version": 2, "status": "resolved"})
                await produce(producer, resolved)
                await page.wait_for_selector(
                    '[data-alert-id="fresh"][data-version="2"][data-status="resolved"]',
                )
                assert await page.locator("article.alert").count() == 2
                await page.screenshot(path=str(shot), full_page=True)

                # filters: severity, then dossier
                await page.select_option("#severity", "critical")
                await page.wait_for_selector('[data-alert-id="earlier"]', state="detached")
                # the cards go when the new stream opens, its snapshot brings them back (the
                # stream carries no token: the cookie must open it)
                await page.wait_for_selector('[data-alert-id="fresh"]')
                assert await page.locator("article.alert").count() == 1
                await page.select_option("#severity", "")
                await page.select_option("#dossier", "ai-chips")
                await page.wait_for_selector('[data-alert-id="fresh"]', state="detached")
                await page.wait_for_selector('[data-alert-id="earlier"]')
                assert "dossier=ai-chips" in page.url
                # issue 17: a story card without a dossier, its headline, curve, stance,
                # links; authorless evidence is not "? on x"; the "no dossier" filter
                await produce(producer, loose)
                await page.select_option("#dossier", "-")
                card = page.locator('[data-alert-id="loose"]')
                await card.wait_for(timeout=10_000)
                assert await page.locator("article.alert").count() == 1
                text = await card.inner_text()
                assert "Tornado emergency for Moore, Oklahoma" in text
                assert await card.get_attribute("data-contested") == "1"  # support and deny
                assert "stance: support 1 · deny 1" in text and "sources: bluesky 2" in text
                assert "https://news.example.com/moore (3)" in text
                assert "? on" not in text and "x: Tornado" in text
                assert await card.locator("svg.spark polyline").count() == 1
                await page.select_option("#severity", "critical")  # none left: says so
                await page.wait_for_selector('[data-alert-id="loose"]', state="detached")
                await page.wait_for_function(
                    "document.getElementById('empty').textContent.includes('match this filter')"
                )
                assert await page.locator("#empty").is_visible()
                await browser.close()
            return took
        finally:
            await producer.stop()

    try:
        took = asyncio.run(browse())
        # without the token the page stays shut
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url)
        assert err.value.code == 401
    finally:
        stop_process(proc)
    # a figure to read, not to assert: a loaded machine may take many times longer
    print(f"\nlive page: alert visible {took:.2f}s after produce; screenshot {shot}")
    assert shot.stat().st_size > 10_000
    assert proc.returncode == 0, log.read_text()[-3000:]
    # a configured token is a secret: the start line names it without printing it
    assert "page-token" not in log.read_text()
    assert f"live alerts on {url} (token: the configured live_token)" in log.read_text()
