"""Notification: from alert events to on-call staff, the way Alertmanager does it.

In the order an alert travels:

1. `routing`: receivers, routes (which receivers, grouped by which labels, with which timing) and
   inhibit rules, loaded from the receivers file and EARFUL_WEBHOOK_URLS; `targets`: the SSRF guard.
2. `store`: every alert event recorded in PostgreSQL (alert state, its group, when the group is
   due), with the notification log, silences and acknowledgements.
3. `grouping`: group_wait / group_interval / repeat_interval, the mute stages (inhibit, silence,
   quiet hours, acknowledgement) and the plan: what one receiver is told about one group, and why.
4. `dispatcher`: flushes due groups, one queue per receiver, plans, sends, records.
5. `receivers`: the HTTP request each kind of receiver gets (webhook, Slack, PagerDuty,
   Alertmanager); `signing`: the webhook signatures (Standard Webhooks).
6. `delivery`: sending it, with retries, backoff, Retry-After and a circuit breaker per receiver.
"""
