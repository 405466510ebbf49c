"""Earful: self-hosted, Kafka-native social listening."""

__version__ = "0.1.0"
