"""Browser test helpers: headless Debian Chromium through Selenium 4, axe-core, screenshots.

A test module imports the fixture function (registered under the fixture name ``browser``) and
the helpers it needs; importing the function under another name keeps ruff's F811 quiet when a
test takes ``browser`` as an argument::

    from selenium.webdriver.remote.webdriver import WebDriver

    from tests.browser import axe_violations, browser_fixture, screenshot  # noqa: F401

    def test_page(browser: WebDriver, tmp_path: Path) -> None:
        with serve_asgi(app) as base_url:
            browser.get(base_url + "/")
            assert axe_violations(browser) == []
            screenshot(browser, tmp_path / "page.png")

Chromium and its driver come from Debian (``apt-get install chromium chromium-driver``), at
/usr/bin/chromium and /usr/bin/chromedriver: no browser is downloaded, and Selenium Manager is
never asked for one. Where either is missing the test skips with the reason, except under
CI=true (or 1, yes), where it fails: CI must run the browser tests.
"""

from __future__ import annotations

import contextlib
import http.server
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chromium.webdriver import ChromiumDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE_JS = Path(__file__).parent / "vendor" / "axe.min.js"
# The app's static files (GOV.UK Frontend is under govuk/); served at /static/ by the app.
STATIC_DIR = Path(__file__).parent.parent / "dhr_workflow" / "web" / "static"

WINDOW_WIDTH, WINDOW_HEIGHT = 1280, 1000
DEFAULT_TIMEOUT = 10.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing_browser_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"no {path} (Debian package {package})"
    return None


def chrome_options() -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    # Console messages, for browser_console_errors().
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@contextlib.contextmanager
def start_browser() -> Iterator[WebDriver]:
    """A headless Chromium for the duration of the block (skips/fails as the fixture does)."""
    reason = missing_browser_reason()
    if reason is not None:
        if _in_ci():
            pytest.fail(f"{reason} (CI=true: browser tests must run, not skip)")
        pytest.skip(reason)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=chrome_options())
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(60)  # axe.run on a long page takes a few seconds
        yield driver
    finally:
        driver.quit()


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[WebDriver]:
    """A fresh headless Chromium (Selenium ``WebDriver``) for one test, quit afterwards."""
    with start_browser() as driver:
        yield driver


# --- accessibility ----------------------------------------------------------------------


def axe_violations(
    driver: WebDriver,
    impacts: Sequence[str] = ("serious", "critical"),
    *,
    context: str | None = None,
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run axe-core on the current page; return its violations of the given impacts.

    Each violation is ``{"id", "impact", "help", "helpUrl", "nodes": [target, ...]}``, a target
    being axe's CSS selector list for one failing element. ``context`` is an optional CSS
    selector to limit the scan to; ``options`` go to ``axe.run`` as they are (for example
    ``{"runOnly": ["wcag2a", "wcag2aa"]}``).
    """
    if not driver.execute_script("return typeof window.axe === 'object';"):
        driver.execute_script(AXE_JS.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        """
        const [context, options, done] = arguments;
        window.axe.run(context || document, options || {}).then(
          (results) => done({violations: results.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
            nodes: v.nodes.map((n) => n.target),
          }))}),
          (error) => done({error: String(error)}),
        );
        """,
        context,
        options,
    )
    if "error" in result:
        raise RuntimeError(f"axe.run failed: {result['error']}")
    violations: list[dict[str, Any]] = result["violations"]
    return [v for v in violations if v["impact"] in impacts]


def format_violations(violations: Sequence[dict[str, Any]]) -> str:
    """A readable assertion message for axe_violations' result."""
    return "\n".join(
        f"{v['impact']}: {v['id']}: {v['help']} ({v['helpUrl']}) at {v['nodes']}"
        for v in violations
    )


# --- screenshots --------------------------------------------------------------------------


def screenshot(driver: WebDriver, path: Path | str) -> Path:
    """Save a PNG of the whole page (not just the window) at its current width."""
    path = Path(path)
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    width = math.ceil(metrics["cssLayoutViewport"]["clientWidth"])
    height = math.ceil(metrics["cssContentSize"]["height"])
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": max(1, min(height, 16000)),
            "deviceScaleFactor": 1,
            "mobile": False,
        },
    )
    try:
        png = driver.get_screenshot_as_png()
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def png_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of a PNG file, read from its header."""
    header = Path(path).read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


# --- navigation ---------------------------------------------------------------------------


def wait_for_page_load(driver: WebDriver, timeout: float = DEFAULT_TIMEOUT) -> None:
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.readyState;") == "complete"
    )


def click_and_wait(
    driver: WebDriver, target: WebElement | str, *, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Click a link or button (an element or a CSS selector) and wait for the next page.

    Waits until the old document is gone (so a POST that redirects back to the same URL is
    caught too) and the new one has loaded; returns the new URL.
    """
    element = driver.find_element(By.CSS_SELECTOR, target) if isinstance(target, str) else target
    old_page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, timeout).until(expected_conditions.staleness_of(old_page))
    wait_for_page_load(driver, timeout)
    return str(driver.current_url)


def submit_and_wait(
    driver: WebDriver,
    target: WebElement | str = "main form",
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Submit a form and wait for the response page to load; return the new URL.

    ``target`` (an element or a CSS selector) is a submit button, which is clicked (so its
    name/value are sent as a person's click would), or a form, which is submitted with
    ``requestSubmit()`` (constraint validation and submit handlers run, as for a click on its
    default button).
    """
    element = driver.find_element(By.CSS_SELECTOR, target) if isinstance(target, str) else target
    if element.tag_name.lower() != "form":
        return click_and_wait(driver, element, timeout=timeout)
    old_page = driver.find_element(By.TAG_NAME, "html")
    driver.execute_script("arguments[0].requestSubmit();", element)
    WebDriverWait(driver, timeout).until(expected_conditions.staleness_of(old_page))
    wait_for_page_load(driver, timeout)
    return str(driver.current_url)


def fill_in(driver: WebDriver, fields: dict[str, str]) -> None:
    """Type into inputs/textareas found by their ``name``, replacing what they hold."""
    for name, value in fields.items():
        element = driver.find_element(By.NAME, name)
        element.clear()
        element.send_keys(value)


# --- what the page did ---------------------------------------------------------------------


def resource_urls(driver: WebDriver) -> list[str]:
    """URLs of every subresource the current page fetched (Resource Timing)."""
    urls: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name);"
    )
    return urls


def browser_console_errors(driver: WebDriver) -> list[str]:
    """SEVERE console messages (script errors, failed loads) since the last call."""
    if not isinstance(driver, ChromiumDriver):
        raise TypeError("console logs need a Chromium driver")
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# --- servers on the loopback interface ----------------------------------------------------


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class StaticServer:
    url: str
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, status)


@contextlib.contextmanager
def serve_directory(directory: Path | str) -> Iterator[StaticServer]:
    """Serve a directory over HTTP on 127.0.0.1 (ephemeral port) in a thread.

    The yielded ``StaticServer`` has the base ``url`` (no trailing slash) and a log of the
    ``requests`` made, as (path, status) pairs.
    """
    log: list[tuple[str, int]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            log.append((self.path, int(code) if str(code).isdigit() else 0))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Handler, directory=str(directory))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="static-server", daemon=True)
    thread.start()
    try:
        yield StaticServer(url=f"http://127.0.0.1:{server.server_address[1]}", requests=log)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def serve_asgi(app: Any, *, timeout: float = DEFAULT_TIMEOUT) -> Iterator[str]:
    """Run an ASGI app (e.g. the Starlette app) under uvicorn on 127.0.0.1 in a thread.

    Yields the base URL (no trailing slash). The server stops at the end of the block. Runs
    with ``lifespan="on"``, so the app's startup and shutdown handlers run as in production.
    """
    import uvicorn

    sock = _loopback_socket()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="asgi-server", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the ASGI server stopped while starting (see its log)")
            if time.monotonic() > deadline:
                raise TimeoutError("the ASGI server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        sock.close()
