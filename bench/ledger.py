"""The ledger's share of the worker's time per batch (issue 9 target 4)."""


def ledger_figures(**kwargs) -> dict:
    return {"share": None, "note": "not measured yet"}
