"""A bad setting stops celery worker, celery beat and gunicorn at start with one line naming
the variable and exit 2, as manage.py does (test_manage_errors.py), instead of tracebacks."""

import os
import subprocess
import sys

import pytest

from testsupport.worker import ROOT

BAD = {"TRACELEDGER_PUBLISH_TIMEOUT": "500ms"}
LINE = (
    "configuration error: TRACELEDGER_PUBLISH_TIMEOUT='500ms' is not a number of seconds (e.g. 0.5)"
)


def _run(*argv, env):
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,  # each answers in about a second; a hang would be the bug
    )


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_celery_stops_on_a_bad_setting_with_one_line(command):
    result = _run("celery", "-A", "traceledger", command, "--loglevel", "INFO", env=BAD)
    assert result.returncode == 2
    assert result.stderr.strip() == LINE
    assert result.stdout == ""


def test_gunicorn_stops_on_a_bad_setting_with_one_line_before_binding():
    # The repository's gunicorn.conf.py is read from the working directory.
    result = _run("gunicorn", "traceledger.wsgi:application", "--bind", "127.0.0.1:0", env=BAD)
    assert result.returncode == 2
    assert result.stderr.strip() == LINE


def test_gunicorn_checks_a_setting_given_with_dash_e_too():
    # gunicorn puts `-e` values in the environment after reading its config file: its own
    # "Starting gunicorn" line comes first, then ours, and no worker starts.
    result = _run(
        "gunicorn",
        "traceledger.wsgi:application",
        *("--bind", "127.0.0.1:0", "-e", "TRACELEDGER_PUBLISH_TIMEOUT=500ms"),
        env={},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == LINE
    assert len(lines) == 2, lines


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("GUNICORN_WORKERS", "two", "GUNICORN_WORKERS='two' is not a whole number"),
        ("GUNICORN_THREADS", "0", "GUNICORN_THREADS='0' must be at least 1"),
        ("GUNICORN_TIMEOUT", "30s", "GUNICORN_TIMEOUT='30s' is not a whole number"),
    ],
)
def test_gunicorn_stops_on_a_bad_number_of_its_own_with_one_line(name, value, line):
    result = _run(
        "gunicorn", "traceledger.wsgi:application", "--bind", "127.0.0.1:0", env={name: value}
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"configuration error: {line}"
