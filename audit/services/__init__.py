"""Writes of the audit app, one module per sub-domain (submission, ingest, outbox, ...)."""
