"""`manage.py check --deploy` is clean under production settings (DJANGO_DEBUG=0)."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(extra_env: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env |= {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "audit.example.com",
    } | extra_env
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_passes_the_deploy_check_with_production_settings():
    result = _check({})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_passes_with_hsts_preload_opted_in():
    result = _check({"DJANGO_SECURE_HSTS_PRELOAD": "1"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_fails_the_deploy_check_when_hsts_is_turned_off():
    result = _check({"DJANGO_SECURE_HSTS_SECONDS": "0"})
    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr


def test_it_refuses_to_start_in_production_with_the_insecure_key():
    result = _check({"DJANGO_SECRET_KEY": ""})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_trusting_x_forwarded_proto_can_be_turned_off_where_no_proxy_sets_it():
    def proxy_header(value: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
        if value is not None:
            env["DJANGO_TRUST_X_FORWARDED_PROTO"] = value
        script = "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
        return subprocess.run(
            [sys.executable, "manage.py", "shell", "-v", "0", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()

    assert proxy_header(None) == "('HTTP_X_FORWARDED_PROTO', 'https')"
    assert proxy_header("0") == "None"
