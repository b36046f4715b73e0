"""The settings of the test suite: the product's, on the tests' own RabbitMQ vhost and Redis
database (``testsupport/isolated_services.py``), so that a run never empties the queues or
the cache of a stack running beside it. The database is Django's ``test_<name>``."""

from testsupport.isolated_services import isolate_environment

isolate_environment()

from traceledger.settings import *  # noqa: E402, F403
