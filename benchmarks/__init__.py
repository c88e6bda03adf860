"""Reproducible measurements against named peers; each prints its figures as one JSON line, last."""
