"""The browser harness and the vendored GOV.UK Frontend work together.

A page rendered with govuk-frontend-jinja's own page template and component macros is served,
with a copy of the app's static files at /static/, by a plain HTTP server; headless Chromium
opens it. The checks: the vendored stylesheet applies with Arial (GDS Transport is not shipped
and no font file is requested), every file the page asks for exists (the CSS's rewritten
url(assets/...) references included), the ES module initialises, axe finds nothing serious,
full-page screenshots work, and a form submission is waited for.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from jinja2 import (
    ChoiceLoader,
    DictLoader,
    Environment,
    PackageLoader,
    PrefixLoader,
    select_autoescape,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.browser import (
    STATIC_DIR,
    StaticServer,
    axe_violations,
    browser_console_errors,
    browser_fixture,  # noqa: F401
    fill_in,
    format_violations,
    png_size,
    resource_urls,
    screenshot,
    serve_asgi,
    serve_directory,
    submit_and_wait,
)

GOVUK = STATIC_DIR / "govuk"
FONT_FILE = re.compile(r"\.(woff2?|ttf|otf|eot)(\?|$)|/fonts/", re.IGNORECASE)

PAGE = """\
{% extends "govuk_frontend_jinja/template.html" %}
{% from "govuk_frontend_jinja/components/button/macro.html" import govukButton %}
{% from "govuk_frontend_jinja/components/footer/macro.html" import govukFooter %}
{% from "govuk_frontend_jinja/components/header/macro.html" import govukHeader %}
{% from "govuk_frontend_jinja/components/input/macro.html" import govukInput %}
{% set assetPath = "/static/govuk/assets" %}
{% set serviceName = "DHR action plans" %}
{% set serviceUrl = "/" %}
{% block pageTitle %}Harness – DHR action plans{% endblock %}
{% block head %}<link rel="stylesheet" href="/static/govuk/govuk-frontend.min.css">{% endblock %}
{# template.html calls govukHeader() and govukFooter() without params, which fails under
   Jinja's default Undefined ("parameter 'params' was not provided"): pass {} explicitly. #}
{% block govukHeader %}{{ govukHeader({}) }}{% endblock %}
{% block govukFooter %}{{ govukFooter({}) }}{% endblock %}
{% block content %}
  <h1 class="govuk-heading-l">Browser harness</h1>
  <form method="{{ method }}" action="{{ action }}" novalidate>
    {{ govukInput({"label": {"text": "Review name"}, "id": "review-name", "name": "review_name"}) }}
    {{ govukButton({"text": "Continue"}) }}
  </form>
  {% for n in range(40) %}
    <p class="govuk-body">Paragraph {{ n }} makes the page taller than the window.</p>
  {% endfor %}
{% endblock %}
{% block bodyEnd %}
  <script type="module" src="/static/govuk/init.js"></script>
{% endblock %}
"""

INIT_JS = """\
import { initAll } from "/static/govuk/govuk-frontend.min.js";
initAll();
"""


def render_page(*, method: str = "get", action: str = "/done.html") -> str:
    env = Environment(
        loader=ChoiceLoader(
            [
                DictLoader({"page.html": PAGE}),
                PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
            ]
        ),
        autoescape=select_autoescape(default=True),
    )
    return str(env.get_template("page.html").render(method=method, action=action))


def css_value(selector: str, prop: str) -> str:
    """A declaration's value from the first rule for exactly this selector that sets it."""
    css = (GOVUK / "govuk-frontend.min.css").read_text(encoding="utf-8")
    for body in re.findall(r"(?:^|[}])" + re.escape(selector) + r"\{([^}]*)\}", css):
        for declaration in body.split(";"):
            name, _, value = declaration.partition(":")
            if name.strip() == prop:
                return value.strip()
    raise AssertionError(f"no {prop} for {selector} in the vendored CSS")


def hex_to_rgba(colour: str) -> str:
    """#rrggbb as WebDriver reports computed colours."""
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    r, g, b = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, 1)"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[StaticServer]:
    root = tmp_path / "site"
    shutil.copytree(STATIC_DIR, root / "static")
    (root / "static" / "govuk" / "init.js").write_text(INIT_JS, encoding="utf-8")
    (root / "index.html").write_text(render_page(), encoding="utf-8")
    (root / "done.html").write_text(
        "<!DOCTYPE html><html lang='en'><title>Done</title><h1>Done</h1></html>",
        encoding="utf-8",
    )
    with serve_directory(root) as server:
        yield server


def test_vendored_files_are_what_the_page_needs() -> None:
    css = (GOVUK / "govuk-frontend.min.css").read_text(encoding="utf-8")
    assert "GDS Transport" not in css
    assert "@font-face" not in css
    assert not (GOVUK / "assets" / "fonts").exists()
    urls = re.findall(r"url\(([^)]*)\)", css)
    assert urls, "the CSS references its images"
    for url in urls:
        assert not url.startswith("/"), url
        assert (GOVUK / url.strip("\"'")).is_file(), url
    assert "version: 6.3.0" in (GOVUK / "VERSION").read_text(encoding="utf-8")
    js = (GOVUK / "govuk-frontend.min.js").read_text(encoding="utf-8")
    assert 'const version="6.3.0"' in js
    axe = Path(__file__).parent / "vendor"
    assert "package: axe-core" in (axe / "VERSION").read_text(encoding="utf-8")


def test_govuk_page_renders_with_vendored_assets(
    browser: WebDriver, site: StaticServer, tmp_path: Path
) -> None:
    browser.get(site.url + "/index.html")

    # The stylesheet applies, with Arial rather than GDS Transport. GOV.UK Frontend sets no
    # font on <body> itself (text gets it from govuk-body, govuk-heading-*, ... classes), so
    # check the template's background and the classed elements.
    body = browser.find_element(By.TAG_NAME, "body")
    assert body.value_of_css_property("background-color") == "rgba(255, 255, 255, 1)"
    assert body.value_of_css_property("margin") == "0px"
    fonts = browser.execute_script(
        "return [...document.querySelectorAll('.govuk-body, .govuk-header, .govuk-label,"
        " .govuk-service-navigation__service-name, .govuk-footer')]"
        ".map((e) => getComputedStyle(e).fontFamily);"
    )
    assert len(fonts) > 40
    assert {f.lower() for f in fonts} == {"arial, sans-serif"}, fonts
    assert browser.execute_script("return document.fonts.size;") == 0  # no @font-face at all
    heading = browser.find_element(By.CSS_SELECTOR, "h1.govuk-heading-l")
    assert heading.value_of_css_property("font-family").lower().startswith("arial")
    assert heading.value_of_css_property("font-weight") == "700"
    button = browser.find_element(By.CSS_SELECTOR, "button.govuk-button")
    assert button.value_of_css_property("background-color") == hex_to_rgba(
        css_value(".govuk-button", "background-color")
    )
    assert button.value_of_css_property("color") == "rgba(255, 255, 255, 1)"
    assert button.get_attribute("data-module") == "govuk-button"

    # The inline template snippet marks the body, and the ES module initialised the components.
    body_classes = body.get_attribute("class") or ""
    assert {"govuk-template__body", "js-enabled", "govuk-frontend-supported"} <= set(
        body_classes.split()
    )
    browser.find_element(By.CSS_SELECTOR, "button.govuk-button[data-govuk-button-init]")
    browser.find_element(By.CSS_SELECTOR, ".govuk-skip-link[data-govuk-skip-link-init]")
    browser.find_element(By.CSS_SELECTOR, ".govuk-header .govuk-header__logo svg")
    browser.find_element(By.CSS_SELECTOR, ".govuk-service-navigation")

    # No font file was fetched, and everything that was asked for exists.
    fetched = resource_urls(browser)
    assert any(u.endswith("/static/govuk/govuk-frontend.min.css") for u in fetched), fetched
    assert [u for u in fetched if FONT_FILE.search(u)] == []
    assert [p for p, _ in site.requests if FONT_FILE.search(p)] == []
    assert [(p, s) for p, s in site.requests if s >= 400] == []
    assert "/static/govuk/assets/images/govuk-crest.svg" in {p for p, _ in site.requests}
    assert browser_console_errors(browser) == []

    violations = axe_violations(browser)
    assert violations == [], format_violations(violations)

    shot = screenshot(browser, tmp_path / "shots" / "harness.png")
    width, height = png_size(shot)
    page_height = browser.execute_script("return document.documentElement.scrollHeight;")
    assert width >= 1200
    assert height >= page_height > 1000  # the whole page, not just the window
    assert shot.stat().st_size > 20_000

    submit_and_wait(browser, "form .govuk-button")
    assert browser.current_url == site.url + "/done.html?review_name="
    assert browser.find_element(By.TAG_NAME, "h1").text == "Done"


def test_axe_reports_serious_violations(browser: WebDriver, site: StaticServer) -> None:
    browser.get(site.url + "/index.html")
    browser.execute_script(
        "const img = document.createElement('img'); img.src = '/static/govuk/assets/images/"
        "favicon.svg'; document.querySelector('main').append(img);"
        "document.getElementById('review-name').labels[0].remove();"
    )
    found = {v["id"] for v in axe_violations(browser, impacts=("serious", "critical"))}
    assert {"image-alt", "label"} <= found


async def _form(request: Request) -> Response:
    if request.method == "POST":
        # Parsed by hand: request.form() needs python-multipart, which the app may not have yet.
        form = parse_qs((await request.body()).decode())
        request.app.state.submitted.append(form["review_name"][0])
        return RedirectResponse("/", status_code=303)
    submitted = request.app.state.submitted
    page = render_page(method="post", action="/")
    return HTMLResponse(page.replace("Browser harness", f"Submitted {len(submitted)}"))


def test_post_redirect_to_same_url_is_waited_for(browser: WebDriver) -> None:
    app = Starlette(routes=[Route("/", _form, methods=["GET", "POST"])])
    app.state.submitted = []
    with serve_asgi(app) as base_url:
        browser.get(base_url + "/")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Submitted 0"
        fill_in(browser, {"review_name": "Review 7"})
        assert submit_and_wait(browser, "main form") == base_url + "/"
        assert browser.find_element(By.TAG_NAME, "h1").text == "Submitted 1"
        fill_in(browser, {"review_name": "Review 8"})
        submit_and_wait(browser, "form .govuk-button")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Submitted 2"
    assert app.state.submitted == ["Review 7", "Review 8"]
