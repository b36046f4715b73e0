"""The README's own commands agree with its reasoning: ``make run`` listens on loopback
because debug is on by default, so the commands that start the pieces by hand must not
bind every interface, and they start from a migrated database (a fresh one had no tables:
every request a 500, the worker's every task a retry)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands_under(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_running_the_pieces_separately_migrates_first_and_listens_on_loopback():
    commands = _commands_under("### Running the pieces separately")

    assert commands[0].startswith(".venv/bin/python manage.py migrate")
    [web] = [command for command in commands if "/gunicorn " in command]
    assert re.search(r"--bind 127\.0\.0\.1:\d+", web), web
