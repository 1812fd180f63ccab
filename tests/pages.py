"""Reading dashboard pages in a real browser while they update themselves: a live refresh replaces elements
between finding one and reading it, so every read of a live page goes through :func:`settled`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")


def replaced(error: WebDriverException) -> bool:
    """Whether ``error`` says the element was replaced under the reader. Chromium reports this either as a stale
    element or, when the node goes between finding and reading it, as an inspector error naming the document."""
    return isinstance(error, StaleElementReferenceException) or "does not belong to the document" in str(error.msg)


def settled(read: Callable[[], T]) -> T:
    """``read()`` again when a live refresh replaced the elements it was reading (the page updates itself)."""
    for _ in range(20):
        try:
            return read()
        except WebDriverException as error:
            if not replaced(error):
                raise
    return read()


def follow(browser: Any, by: str, value: str, lands: Callable[[str], bool]) -> None:
    """Click a link or button and wait until the page it leads to (``lands(url)``) is loaded: a click returns
    before the browser has navigated, and the old page's elements go stale under the reader."""
    settled(lambda: browser.find_element(by, value).click())
    WebDriverWait(browser, 30).until(
        lambda b: lands(b.current_url) and b.execute_script("return document.readyState") == "complete"
    )


def log_in(browser: Any, server: Any) -> None:
    """Follow a link as the SDK prints it on a server without a token: it carries the local token."""
    browser.get(f"{server.url}/dashboard/login?token={server.token}")
    assert "Log in" not in browser.title, browser.page_source[:300]


def text_of(browser: Any, element_id: str) -> str:
    return settled(lambda: str(browser.find_element(By.ID, element_id).text))
