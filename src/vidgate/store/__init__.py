"""Persistence: the run store (SQL) and its migrations."""
