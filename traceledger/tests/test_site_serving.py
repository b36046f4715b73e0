"""What gunicorn serves besides the API: the admin's CSS and JS (WhiteNoise) and "/".

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
