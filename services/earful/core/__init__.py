"""The shared core every service builds on: settings, codecs, topics, Kafka, metrics, health, errors."""
