-- Typed statements on "verifications" (logical model `verification`). Column lists follow the
-- schema's field order: id, identifier, value, expires_at, created_at, updated_at.

--: Verification()
--# doc = " One row of `verifications`, columns in the schema's field order."

--! insert_verification
--- Inserts a verification (password-reset request); returns its id.
INSERT INTO "verifications" ("id", "identifier", "value", "expires_at", "created_at",
    "updated_at")
VALUES (:id, :identifier, :value, :expires_at, :created_at, :updated_at)
RETURNING "id";

--! newest_verification_by_identifier : Verification
--- The newest verification with this identifier (`find_many verification WHERE identifier = $1
--- ORDER BY created_at DESC LIMIT 1`).
SELECT "id", "identifier", "value", "expires_at", "created_at", "updated_at"
FROM "verifications"
WHERE "identifier" = :identifier
ORDER BY "created_at" DESC
LIMIT 1;

--! delete_verification_by_identifier
--- Deletes one verification with this identifier (`delete verification WHERE identifier = $1`,
--- which like every core `delete` removes at most one row); returns the deleted id.
DELETE FROM "verifications"
WHERE "id" = (SELECT "id" FROM "verifications" WHERE "identifier" = :identifier LIMIT 1)
    AND ("identifier" = :identifier)
RETURNING "id";

--! delete_expired_verifications
--- Deletes every verification that expired before `now` (`delete_many verification WHERE
--- expires_at < $1`, run before each verification lookup); returns one id per deleted row.
DELETE FROM "verifications"
WHERE "expires_at" < :now
RETURNING "id";
