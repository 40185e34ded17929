-- Typed statements on "sessions" (logical model `session`). Column lists follow the schema's
-- field order: id, expires_at, token, created_at, updated_at, ip_address, user_agent, user_id.

--: Session(ip_address?, user_agent?)
--# doc = " One row of `sessions`, columns in the schema's field order."

--! session_by_token : Session
--- The session with this token (`find_one session WHERE token = $1`, every authenticated request).
SELECT "id", "expires_at", "token", "created_at", "updated_at", "ip_address", "user_agent",
    "user_id"
FROM "sessions"
WHERE "token" = :token;

--! sessions_by_user_id : Session
--- Every session of a user, in no particular order (`find_many session WHERE user_id = $1`).
SELECT "id", "expires_at", "token", "created_at", "updated_at", "ip_address", "user_agent",
    "user_id"
FROM "sessions"
WHERE "user_id" = :user_id;

--! newest_sessions_by_user_id : Session
--- The newest sessions of a user, at most `limit` of them (`find_many session WHERE user_id = $1
--- ORDER BY created_at DESC LIMIT n`, a "list sessions" page).
SELECT "id", "expires_at", "token", "created_at", "updated_at", "ip_address", "user_agent",
    "user_id"
FROM "sessions"
WHERE "user_id" = :user_id
ORDER BY "created_at" DESC
LIMIT :limit;

--! insert_session (ip_address?, user_agent?)
--- Inserts a session (sign-up, sign-in); returns its id.
INSERT INTO "sessions" ("id", "expires_at", "token", "created_at", "updated_at", "ip_address",
    "user_agent", "user_id")
VALUES (:id, :expires_at, :token, :created_at, :updated_at, :ip_address, :user_agent, :user_id)
RETURNING "id";

--! update_session_expiry : Session
--- Sets `expires_at` and `updated_at` of the session with this token and returns the stored row
--- (`update session WHERE token = $1`, the session refresh).
UPDATE "sessions"
SET "expires_at" = :expires_at, "updated_at" = :updated_at
WHERE "token" = :token
RETURNING "id", "expires_at", "token", "created_at", "updated_at", "ip_address", "user_agent",
    "user_id";

--! delete_session_by_token
--- Deletes the session with this token (sign-out, expired session); returns the deleted id.
DELETE FROM "sessions"
WHERE "token" = :token
RETURNING "id";

--! delete_sessions_by_user_id
--- Deletes every session of a user (`delete_many session WHERE user_id = $1`, optional after a
--- password reset); returns one id per deleted row.
DELETE FROM "sessions"
WHERE "user_id" = :user_id
RETURNING "id";
