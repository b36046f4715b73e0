"""The settings of the test suite: the product's, on the tests' own RabbitMQ vhost and Redis
database (``testsupport/isolated_services.py``), so that a run never empties the queues or
the cache of a stack running beside it. The database is Django's ``test_<name>``."""

import os

from testsupport.isolated_services import isolate_environment

isolate_environment()
# Hundreds of tests send a bad API key on purpose, all from 127.0.0.1, within minutes: under
# the product's 60/m they would get each other's 429s. The limit's own tests set theirs.
os.environ.setdefault("TRACELEDGER_RATELIMIT_BAD_KEYS", "100000/m")

from traceledger.settings import *  # noqa: E402, F403
