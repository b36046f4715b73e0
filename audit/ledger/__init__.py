"""The tamper-evident ledger: per-tenant hash chain, signed checkpoints, verification.

See ``docs/ledger.md`` for the canonical form and the guarantees.
"""
