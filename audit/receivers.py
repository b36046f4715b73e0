"""Receivers of other apps' signals (e.g. accounts changes recorded as audit events)."""
