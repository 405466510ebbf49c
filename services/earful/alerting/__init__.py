"""Alerting: detect brewing crises per watchlist within seconds, and notify on-call staff the way
Alertmanager and PagerDuty do (routes, groups, dedup, silences, acknowledgements, signed webhooks,
Slack, PagerDuty, retries and a notification log)."""
