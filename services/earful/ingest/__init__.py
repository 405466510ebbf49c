"""Ingest: where mentions enter Earful (HTTP push API → earful.mentions.raw.v1)."""
