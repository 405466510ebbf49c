"""Alerting: detect brewing crises per watchlist within seconds, and notify on-call staff the way
Alertmanager and PagerDuty do (routes, groups, dedup, silences, acknowledgements, signed webhooks,
Slack, PagerDuty, retries and a notification log).

Where things are, starting from `__main__`:

* `service.AlertingService`: builds and holds every part (the Faust app, PostgreSQL, the
  notification runtime, the HTTP API, the agents).
* `agents`: the stream processors: enriched mentions → per watchlist → detector → alert events →
  PostgreSQL and the dispatcher.
* `detection`: the detector (one module per rule, the episode life cycle, the typed state), the
  rules per watchlist, and `earful backtest`.
* `notification`: routing → store → grouping → dispatcher → receivers → delivery.
* `case_sla`: customer-care cases (earful.cases.v1) → case_sla_warning / case_sla_breach alerts.
* `events` (decisions → AlertEvent records), `explain` (why an alert fired), `api` (/v1/alerts,
  silences, acknowledgements, the notification log).
"""

SERVICE = "alerting"  # the service's name in metrics labels, logs and health checks
