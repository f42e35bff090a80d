"""Persistence adapters: the append-only audit log (and, later, the gate's database)."""
