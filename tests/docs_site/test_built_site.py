"""The reference site as built by ``nox -s docs`` (which runs these tests after building it),
read as files and in a real browser (Debian's headless Chromium).

Raw Sphinx roles never reach a page; the search box finds what is typed into it and its
results lead to the page that has it; configuration keys in tables stay on one line; the
command-line page holds every distribution's commands.
"""

from __future__ import annotations

import functools
import html
import os
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.devtools import Browser, find_chromium

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("OHFP_SITE_DIR", ROOT / "site"))
RAW_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const):(?=[`\w~.])")
"""A Sphinx role as a page shows it when nothing rendered it (``:class:Storage``)."""
RAW_FIELD = re.compile(r"^\s*:(?:param|returns?|raises?|rtype|type)\b", re.MULTILINE)


def _pages() -> list[Path]:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site in {SITE}: run nox -s docs (it builds the site, then runs these tests)")
    return sorted(SITE.rglob("*.html"))


def _text(page: Path) -> str:
    """A page's visible text, roughly: tags, scripts and styles dropped."""
    source = page.read_text(encoding="utf-8")
    source = re.sub(r"<(script|style)\b.*?</\1>", "", source, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", "", source))


def test_no_raw_sphinx_role_or_field_on_any_page() -> None:
    offenders = []
    for page in _pages():
        text = _text(page)
        for match in [*RAW_ROLE.finditer(text), *RAW_FIELD.finditer(text)]:
            around = text[max(0, match.start() - 40) : match.end() + 40].replace("\n", " ")
            offenders.append(f"{page.relative_to(SITE)}: …{around}…")
    assert offenders == []


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """The built site over HTTP on loopback (search needs it: it fetches its index)."""
    _pages()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(SITE))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium for the site's browser tests (.ci/run installs it)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    opened = Browser(binary)
    try:
        yield opened
    finally:
        opened.close()


def _wait_for(browser: Browser, expression: str, seconds: float = 20.0) -> object:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = browser.evaluate(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never true: {expression}")


def test_search_finds_what_is_typed_and_leads_to_it(served: str, browser: Browser, tmp_path: Path) -> None:
    browser.open(served + "/")
    browser.evaluate("document.querySelector('input.md-search__input').focus()")
    browser.send("Input.insertText", {"text": "availableNumber"}, session=True)
    count = _wait_for(browser, "document.querySelectorAll('.md-search-result__item').length")
    assert isinstance(count, int) and count >= 2
    meta = str(browser.evaluate("document.querySelector('.md-search-result__meta').textContent"))
    assert re.search(r"\d+ matching document", meta), meta
    browser.screenshot(tmp_path / "search.png")
    href = str(browser.evaluate("document.querySelector('.md-search-result__link').href"))
    assert href.startswith(served)
    browser.click(".md-search-result__link")
    assert "availableNumber" in str(browser.evaluate("document.body.innerText"))


def test_configuration_keys_in_tables_stay_on_one_line(served: str, browser: Browser) -> None:
    browser.open(served + "/aws/")
    broken = browser.evaluate(
        "[...document.querySelectorAll('.md-typeset table code')]"
        ".filter(e => e.getClientRects().length > 1).map(e => e.textContent)"
    )
    keys = browser.evaluate("document.querySelectorAll('.md-typeset table code').length")
    assert isinstance(keys, int) and keys > 20
    assert broken == []


def test_the_command_line_page_has_every_distributions_commands(served: str, browser: Browser) -> None:
    browser.open(served + "/reference/cli/")
    headings = browser.evaluate("[...document.querySelectorAll('h2, h3')].map(e => e.textContent)")
    assert isinstance(headings, list)
    text = " ".join(map(str, headings))
    for command in (
        "ohfp hf requestMachines",
        "ohfp-aws events",
        "ohfp-dynamodb create-table",
        "python -m ohfp_mock",
    ):
        assert command in text, command
