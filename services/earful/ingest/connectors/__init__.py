"""Ingest connectors: each reads one kind of source and hands normalised mentions to the Publisher."""
