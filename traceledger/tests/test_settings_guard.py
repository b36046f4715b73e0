import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "k7Qp-" * 10  # 50 characters, 5 different: the least Django's check takes


def run_check(**env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_DEBUG": "0", "DJANGO_ALLOWED_HOSTS": "audit.example.com"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": STRONG_KEY[:49]}, "at least 50 characters"),
        ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "k7Qp" * 13}, "DJANGO_SECRET_KEY"),
        # What startproject generates for development: check --deploy's W009 refuses it.
        (
            {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "django-insecure-" + STRONG_KEY},
            'not starting with "django-insecure-"',
        ),
        ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": STRONG_KEY}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_DEBUG": "maybe"}, "is not a boolean"),
    ],
)
def test_it_refuses_to_start_with_insecure_production_settings(env, message):
    result = run_check(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_it_starts_with_secure_production_settings():
    result = run_check(
        DJANGO_DEBUG="0", DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_ALLOWED_HOSTS="audit.example.com"
    )
    assert result.returncode == 0, result.stderr


def test_it_reads_the_secret_key_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(STRONG_KEY + "\n")
    result = run_check(
        DJANGO_DEBUG="0", DJANGO_SECRET_KEY_FILE=str(secret), DJANGO_ALLOWED_HOSTS="a.example"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_metrics_folder_that_cannot_hold_the_counters_is_one_line_naming_it(tmp_path, kind):
    path = tmp_path / "metrics"
    if kind == "a file":
        path.write_text("")
    result = run_check(PROMETHEUS_MULTIPROC_DIR=str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("configuration error: PROMETHEUS_MULTIPROC_DIR=")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_existing_metrics_folder_is_accepted(tmp_path):
    result = run_check(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
