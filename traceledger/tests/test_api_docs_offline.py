"""Swagger UI at /api/docs/ works without internet access: every file it loads is ours.

drf-spectacular's default loads Swagger UI from a CDN (unpinned), which leaves a blank page
on an offline machine; drf-spectacular-sidecar ships the files as static files instead.
The requests go through the WSGI middleware stack, so WhiteNoise serves them as gunicorn
would (see test_site_serving.py).
"""

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client


class _AssetReferences(HTMLParser):
    """The src/href of every <script>, <link> and <img> on a page."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in {"script", "link", "img"}:
            self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


@pytest.fixture
def collected(tmp_path, settings):
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", interactive=False, verbosity=0)
    return tmp_path


@pytest.fixture
def docs_assets(collected):
    # A fresh Client, so WhiteNoise's middleware is built after collectstatic and sees the files.
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    parser = _AssetReferences()
    parser.feed(response.content.decode())
    return response.content.decode(), parser.urls


def test_it_references_no_external_host(docs_assets):
    page, urls = docs_assets

    assert urls, "the page references no script or stylesheet at all"
    assert [url for url in urls if urlsplit(url).scheme or urlsplit(url).netloc] == []
    assert "https://" not in page
    assert "cdn.jsdelivr.net" not in page


def test_it_loads_swagger_ui_from_our_static_files(docs_assets):
    _, urls = docs_assets

    assert {
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-standalone-preset.js",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/favicon-32x32.png",
    } <= set(urls)


def test_the_web_process_serves_every_file_the_page_loads(docs_assets, collected):
    _, urls = docs_assets
    # The start-up script comes from the page's own view (?script), not inline: the page's
    # Content-Security-Policy allows scripts of the site's own only.
    [script] = [url for url in urls if not url.startswith("/static/")]
    assert script.startswith("/api/docs/?") and "script=" in script

    started = Client().get(script)
    assert started.status_code == 200
    assert started["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in started.content
    for url in [url for url in urls if url != script]:
        response = Client().get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content)
        assert body == (collected / url.removeprefix("/static/")).read_bytes(), url
