-- The rate-limit consume on "rate_limits" (logical model `rate_limit`): the statement text of
-- `consume_statement` in src/rate_limit.rs for the default physical names, with named
-- parameters, numbered as cornucopia numbers them (first appearance): key $1, now_ms $2,
-- window_ms $3, max $4.

--: RateLimitConsumed()
--# doc = " The outcome of one consume: `permitted`, then the row's `count` and `last_request`."

--! consume_rate_limit : RateLimitConsumed
--- Counts one request against `key` in one atomic statement: inside the window and under
--- `max` it increments the count, outside the window it restarts at 1, at the limit it
--- changes nothing and returns the stored row with `permitted = false`. No row means the
--- denying row was inserted after this statement's snapshot: run it again.
WITH "consumed" AS (INSERT INTO "rate_limits" AS "r" ("key", "count", "last_request") VALUES (:key, 1, :now_ms::bigint) ON CONFLICT ("key") DO UPDATE SET "count" = CASE WHEN LEAST(GREATEST(:now_ms::numeric - "r"."last_request"::numeric, -9223372036854775808), 9223372036854775807) <= :window_ms::bigint THEN "r"."count" + 1 ELSE 1 END, "last_request" = :now_ms::bigint WHERE "r"."count" >= 0 AND NOT (LEAST(GREATEST(:now_ms::numeric - "r"."last_request"::numeric, -9223372036854775808), 9223372036854775807) <= :window_ms::bigint AND "r"."count" >= :max::bigint) RETURNING "r"."count", "r"."last_request") SELECT TRUE AS "permitted", "count" AS "count", "last_request" AS "last_request" FROM "consumed" UNION ALL SELECT FALSE, "count", "last_request" FROM "rate_limits" WHERE "key" = :key AND NOT EXISTS (SELECT 1 FROM "consumed");
