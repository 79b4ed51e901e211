"""Backends: one module per local renderer or remote provider."""
