"""Short, readable error texts: what an operator reads on an item, an entry or a page.

A target that fails often answers with a whole HTML error page (a proxy's "502 Bad Gateway", a
framework's debug page). Stored as it came, that page fills the item's error column, the admin
and the API with markup. ``error_excerpt`` keeps what a person would read first: the page's
``<title>`` (or its first line of text), whitespace collapsed, at most ``MAX_EXCERPT`` characters.
"""

from __future__ import annotations

import html
import re

MAX_EXCERPT = 300
# Only the start of a page is read: its title and first text are there, and the lazy patterns
# below cost up to quadratic time on a hostile page with many unclosed tags.
MAX_MARKUP = 4096

# Where an HTML document starts in a message such as "HTTP 502: <!DOCTYPE html>…".
_HTML_START = re.compile(
    r"<\s*(?:!doctype\b|html\b|head\b|body\b|title\b|h[1-6]\b|p\b|div\b|center\b|pre\b)",
    re.IGNORECASE,
)
_TITLE = re.compile(r"<\s*title\b[^>]*>(.*?)<\s*/\s*title\s*>", re.IGNORECASE | re.DOTALL)
# Scripts, styles and comments hold no text a person reads on the page.
_INVISIBLE = re.compile(
    r"<\s*(script|style|head)\b.*?<\s*/\s*\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL
)
_BLOCK_END = re.compile(r"<\s*(?:br|/p|/h[1-6]|/div|/li|/tr|/title|/pre|hr)\b[^>]*>", re.I)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def _collapse(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _first_text_line(markup: str) -> str:
    """The first non-empty line of the page's visible text."""
    text = _INVISIBLE.sub(" ", markup)
    text = _BLOCK_END.sub("\n", text)
    text = html.unescape(_TAG.sub(" ", text))
    for line in text.splitlines():
        if line := _collapse(line):
            return line
    return ""


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def error_excerpt(text: str, limit: int = MAX_EXCERPT) -> str:
    """A one-line excerpt of an error text: an HTML page inside it is reduced to its title or
    first line of text (what comes before the page, such as ``HTTP 502:``, is kept), other text
    has its whitespace collapsed; at most ``limit`` characters, an ellipsis marking a cut."""
    text = str(text)
    start = _HTML_START.search(text)
    if start is None:
        return _shorten(_collapse(text), limit)
    before = _collapse(text[: start.start()])
    markup = text[start.start() : start.start() + MAX_MARKUP]
    title = _TITLE.search(markup)
    readable = _collapse(html.unescape(title.group(1))) if title else ""
    if not readable:
        readable = _first_text_line(markup)
    if not readable:
        readable = "(an HTML page without text)"
    joined = f"{before} {readable}" if before else readable
    return _shorten(joined, limit)
