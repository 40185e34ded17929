-- Not in core's default schema: the expired-verification cleanup
-- (`DELETE FROM verifications WHERE expires_at < $1`) runs before every verification lookup,
-- so it must not scan the whole table. `run_migrations` creates this index too.

CREATE INDEX IF NOT EXISTS "idx_verifications_expires_at" ON "verifications" ("expires_at");
