"""Alerting: detect spikes per watchlist within seconds and deliver alerts to webhooks."""
