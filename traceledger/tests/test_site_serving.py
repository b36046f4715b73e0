"""What gunicorn serves besides the API: the admin's CSS and JS (WhiteNoise) and "/", and
how every page outside the API (docs, schema, admin, health, metrics) answers any method.

pytest-django's live server serves static files on its own, so the browser tests cannot
catch a web process that does not: these requests go through the WSGI middleware stack.
"""

import pytest
from django.core.management import call_command
from django.test import Client


@pytest.fixture
def collected(tmp_path, settings):
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", interactive=False, verbosity=0)
    return tmp_path


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/admin/css/base.css", "text/css"),
        ("/static/admin/js/actions.js", "text/javascript"),
        ("/static/admin/img/search.svg", "image/svg+xml"),
    ],
)
def test_the_web_process_serves_the_collected_admin_files(collected, path, content_type):
    response = Client().get(path)

    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert (collected / path.removeprefix("/static/")).read_bytes() == b"".join(
        response.streaming_content
    )


def test_a_compressed_copy_is_sent_to_a_client_that_accepts_it(collected):
    response = Client().get("/static/admin/css/base.css", HTTP_ACCEPT_ENCODING="gzip")

    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"


def test_a_missing_static_file_is_a_404_not_a_500(collected):
    assert Client().get("/static/admin/css/no-such-file.css").status_code == 404


def test_the_site_root_opens_the_admin(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/"


NON_API_PAGES = ["/api/docs/", "/api/schema/", "/admin/login/", "/admin/", "/healthz", "/readyz"]
NON_API_PAGES += ["/metrics", "/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", NON_API_PAGES)
@pytest.mark.parametrize("accept", ["*/*", "application/json", "text/html"])
def test_no_method_is_a_500_on_a_page_outside_the_api(path, accept):
    client = Client(raise_request_exception=False)
    for method in ["OPTIONS", "HEAD", "GET", "POST", "PUT", "PATCH", "DELETE"]:
        response = client.generic(method, path, HTTP_ACCEPT=accept)

        assert response.status_code < 500, (method, response.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("path", NON_API_PAGES)
def test_options_is_a_200_with_allow_or_a_405_on_a_page_outside_the_api(path):
    response = Client(raise_request_exception=False).options(path)

    if response.status_code != 302:  # "/" and "/admin/" redirect whatever the method
        assert response.status_code in (200, 405), response.status_code
        assert "GET" in response["Allow"]


@pytest.mark.django_db
def test_options_on_the_swagger_ui_lists_its_methods_as_the_admin_pages_do():
    response = Client(raise_request_exception=False).options("/api/docs/")

    assert response.status_code == 200
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert response.content == b""


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_and_json_answers_do_not():
    """The admin and the API docs: scripts of their own origin only. Ingest's and the
    reads' JSON goes without: no browser renders it, and the answers stay small."""
    client = Client()
    for path in ("/admin/login/", "/api/docs/"):
        policy = client.get(path)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "object-src 'none'" in policy, path
    assert (
        "unsafe-inline"
        not in client.get("/admin/login/")["Content-Security-Policy"]
        .split("script-src")[1]
        .split(";")[0]
    )
    assert "Content-Security-Policy" not in client.get("/api/v1/audit-events")
    script = client.get("/api/docs/", {"script": ""})
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
