-- Erasures are published to earful.erasures.v1 after they commit (a transactional outbox, as for
-- corrections): published_at stays null until the broker acknowledged the record. author_key is
-- the hash of the identity the erasure named, the topic key; erasures recorded before this
-- migration take their first hash, and are published once like new ones.
ALTER TABLE erasures ADD COLUMN author_key text;
UPDATE erasures SET author_key = author_hashes[1] WHERE author_key IS NULL;
ALTER TABLE erasures ALTER COLUMN author_key SET NOT NULL;
ALTER TABLE erasures ADD COLUMN published_at timestamptz;
CREATE INDEX erasures_unpublished_idx ON erasures (id) WHERE published_at IS NULL;
