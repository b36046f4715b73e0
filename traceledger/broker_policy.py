"""At-least-once dead-lettering for ``audit.ingest``, as a RabbitMQ policy.

Dead-lettering is at-most-once by default: a message rejected while ``audit.ingest.dlq`` is
missing (deleted by an operator, a broker reset without definitions) is dropped (notes §1.1,
R11; a code review reproduced it). With ``dead-letter-strategy: at-least-once`` (which needs
``overflow: reject-publish``) the quorum queue keeps it until the DLQ confirms it.

A policy, not queue arguments: arguments are fixed when a queue is declared, and declaring
an existing ``audit.ingest`` with new ones fails (PRECONDITION_FAILED) in every process that
declares it; a policy applies to the queue as it is. ``make run``, ``make test`` and the
benchmark set it on a local broker; elsewhere, run this where ``rabbitmqctl`` reaches the
broker, or set the same policy by hand (README, "Dead-letter queue").

Standard library only: ``scripts/services.sh`` runs it before the virtualenv may exist.
"""

import json
import shutil
import subprocess
import sys

POLICY_NAME = "traceledger-dead-letters"
# audit.ingest (traceledger.queues.INGEST_QUEUE_NAME; a test keeps the two equal).
QUEUE_PATTERN = r"^audit\.ingest$"
DEFINITION = {"dead-letter-strategy": "at-least-once", "overflow": "reject-publish"}


def policy_command(vhost: str, ctl: str = "rabbitmqctl", *, priority: int = 0) -> list[str]:
    return [
        ctl,
        "-q",
        "set_policy",
        "-p",
        vhost,
        "--apply-to",
        "queues",
        "--priority",
        str(priority),
        POLICY_NAME,
        QUEUE_PATTERN,
        json.dumps(DEFINITION, separators=(",", ":")),
    ]


def policy_apply(vhost: str, *, priority: int = 0) -> bool:
    """Sets the policy with the local ``rabbitmqctl``; False when there is none.

    Set again with another ``priority``, it makes RabbitMQ look up the dead-letter route
    anew, which releases messages dead-lettered while ``audit.ingest.dlq`` was missing
    (RabbitMQ 3.10 keeps them pending until then; README, "Dead letters"). Never clear the
    policy instead: RabbitMQ then drops what it kept."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return False
    # rabbitmqctl can hang on a wedged node: bounded, so a caller fails instead of hanging.
    subprocess.run(policy_command(vhost, ctl, priority=priority), check=True, timeout=60)
    return True


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vhost", help="the RabbitMQ vhost of CELERY_BROKER_URL ('/' by default)")
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="another value than the current one releases dead letters kept while the DLQ "
        "was missing (default 0)",
    )
    args = parser.parse_args(argv)
    return 0 if policy_apply(args.vhost, priority=args.priority) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
