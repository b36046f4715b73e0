"""The secret key of a development install: random, made once, shared by its processes."""

import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.exceptions import ImproperlyConfigured

from traceledger.dev_secret import development_secret_key
from traceledger.settings_guard import guard_production_settings

PUBLISHED = "django-insecure-traceledger-local-development-only"


def test_it_is_made_once_private_and_reused(tmp_path):
    first = development_secret_key(tmp_path)

    assert len(first) >= 50
    assert stat.S_IMODE((tmp_path / "django-secret-key").stat().st_mode) == 0o600
    assert development_secret_key(tmp_path) == first
    assert development_secret_key(tmp_path / "other-install") != first


def test_processes_starting_together_agree_on_one_key(tmp_path):
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(lambda _: development_secret_key(tmp_path), range(32)))

    assert len(keys) == 1
    assert [path.name for path in tmp_path.iterdir()] == ["django-secret-key"]


def test_an_unwritable_data_folder_is_a_configuration_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY is unset"):
        development_secret_key(blocker)


@pytest.mark.parametrize("debug", [True, False])
def test_the_key_published_in_the_source_is_refused_even_in_debug(debug):
    with pytest.raises(ImproperlyConfigured, match="published in TraceLedger's source"):
        guard_production_settings(
            debug=debug,
            secret_key=PUBLISHED,
            insecure_secret_key=PUBLISHED,
            allowed_hosts=["localhost"],
        )
