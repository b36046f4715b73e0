"""A worker that signs checkpoints makes the ledger key at start (ARCHITECTURE §2: generated on
first run), so a stack started piece by piece serves the ledger API before the first signing."""

import stat

import pytest

from audit.ledger.signing import KEY_FILE_NAME
from testsupport.worker import ALL_QUEUES, WorkerProcess
from traceledger.queues import INGEST_QUEUE_NAME

pytestmark = pytest.mark.django_db(transaction=True)


def _worker_env(data_dir) -> dict:
    return {"TRACELEDGER_DATA_DIR": str(data_dir), "TRACELEDGER_SIGNING_KEY": ""}


def test_a_worker_on_every_queue_makes_the_key_at_start(tmp_path):
    worker = WorkerProcess(queues=ALL_QUEUES, extra_env=_worker_env(tmp_path)).start()
    try:
        key_file = tmp_path / KEY_FILE_NAME
        assert key_file.exists(), worker.log()
        assert b"PRIVATE KEY" in key_file.read_bytes()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        worker.stop()


def test_the_key_made_at_start_is_the_one_already_there(tmp_path):
    key_file = tmp_path / KEY_FILE_NAME
    first = WorkerProcess(queues=ALL_QUEUES, extra_env=_worker_env(tmp_path)).start()
    first.stop()
    made = key_file.read_bytes()
    second = WorkerProcess(queues=ALL_QUEUES, extra_env=_worker_env(tmp_path)).start()
    second.stop()
    assert key_file.read_bytes() == made


def test_a_worker_that_does_not_sign_makes_no_key(tmp_path):
    worker = WorkerProcess(queues=INGEST_QUEUE_NAME, extra_env=_worker_env(tmp_path)).start()
    worker.stop()
    assert not (tmp_path / KEY_FILE_NAME).exists(), worker.log()
