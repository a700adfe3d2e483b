"""HTML to PDF with WeasyPrint: a thin adapter, no business content.

``render_pdf`` lays out HTML (an agreement, a letter) as a PDF. Two things are settled here so that
no template has to remember them:

- Fonts. A user stylesheet (lower precedence than the template's own CSS) makes Noto Sans CJK SC
  the default family on the document and, explicitly, on the page and all sixteen ``@page`` margin
  boxes: margin boxes (page-number footers) do not inherit the body's font, and without it Chinese
  in them falls back to whatever fontconfig picks. The font comes from Debian's ``fonts-noto-cjk``;
  ``libharfbuzz-subset0`` keeps subsetting it fast (scripts/setup.sh installs both).
- Fetching. Only ``data:`` and ``file:`` URLs are followed (images and CSS vendored under the
  ``base_url`` given, typically ``static/``); nothing is fetched over the network while rendering.

``pdf_sha256`` is the fingerprint an agreement records: the SHA-256 of the exact bytes shown and signed.
"""

from __future__ import annotations

import hashlib

from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher

FONT_FAMILY = '"Noto Sans CJK SC", "Noto Sans", sans-serif'
ALLOWED_PROTOCOLS = frozenset({"data", "file"})
_MARGIN_BOXES = (
    "top-left-corner",
    "top-left",
    "top-center",
    "top-right",
    "top-right-corner",
    "right-top",
    "right-middle",
    "right-bottom",
    "bottom-right-corner",
    "bottom-right",
    "bottom-center",
    "bottom-left",
    "bottom-left-corner",
    "left-bottom",
    "left-middle",
    "left-top",
)
DEFAULT_CSS = (
    f"html {{ font-family: {FONT_FAMILY}; }}\n"
    f"@page {{ font-family: {FONT_FAMILY};\n"
    + "".join(f"  @{box} {{ font-family: {FONT_FAMILY}; }}\n" for box in _MARGIN_BOXES)
    + "}\n"
)


def render_pdf(html: str, *, base_url: str | None = None) -> bytes:
    """The PDF of ``html``; relative URLs in it resolve against ``base_url`` (a directory or URL)."""
    fetcher = URLFetcher(allowed_protocols=ALLOWED_PROTOCOLS, fail_on_errors=False)
    font_config = FontConfiguration()
    defaults = CSS(string=DEFAULT_CSS, font_config=font_config, url_fetcher=fetcher)
    document = HTML(string=html, base_url=base_url, url_fetcher=fetcher)
    data = document.write_pdf(stylesheets=[defaults], font_config=font_config)
    assert isinstance(data, bytes)  # no target given: WeasyPrint returns the bytes
    return data


def pdf_sha256(data: bytes) -> str:
    """SHA-256 of ``data``, lower-case hex."""
    return hashlib.sha256(data).hexdigest()
