-- The helpdesk webhook of cases (EARFUL_CASES_WEBHOOK_URL, earful.storage.case_webhook): `case_events`
-- is also its outbox. delivered_at stays null until the webhook acknowledged the event, apart from
-- published_at (the topic), so each destination goes at its own pace.
ALTER TABLE case_events ADD COLUMN delivered_at timestamptz;
CREATE INDEX case_events_undelivered_idx ON case_events (id) WHERE delivered_at IS NULL;
