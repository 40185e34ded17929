-- Typed statements on "accounts" (logical model `account`). Column lists follow the schema's
-- field order: id, account_id, provider_id, user_id, access_token, refresh_token, id_token,
-- access_token_expires_at, refresh_token_expires_at, scope, password, created_at, updated_at.

--: Account(access_token?, refresh_token?, id_token?, access_token_expires_at?, refresh_token_expires_at?, scope?, password?)
--# doc = " One row of `accounts`, columns in the schema's field order."

--! insert_account (access_token?, refresh_token?, id_token?, access_token_expires_at?, refresh_token_expires_at?, scope?, password?)
--- Inserts an account (sign-up's credential account); returns its id.
INSERT INTO "accounts" ("id", "account_id", "provider_id", "user_id", "access_token",
    "refresh_token", "id_token", "access_token_expires_at", "refresh_token_expires_at", "scope",
    "password", "created_at", "updated_at")
VALUES (:id, :account_id, :provider_id, :user_id, :access_token, :refresh_token, :id_token,
    :access_token_expires_at, :refresh_token_expires_at, :scope, :password, :created_at,
    :updated_at)
RETURNING "id";

--! update_account_password : Account
--- Sets `password` and `updated_at` of one account of this user and provider and returns the
--- stored row (`update account WHERE user_id = $1 AND provider_id = $2`, password reset).
--- Like core's single-row update it changes at most one row; it addresses that row by `id`
--- and re-checks the filter, exactly as the generic path does.
UPDATE "accounts"
SET "password" = :password, "updated_at" = :updated_at
WHERE "id" = (
    SELECT "id" FROM "accounts" WHERE "user_id" = :user_id AND "provider_id" = :provider_id
    LIMIT 1
) AND ("user_id" = :user_id AND "provider_id" = :provider_id)
RETURNING "id", "account_id", "provider_id", "user_id", "access_token", "refresh_token",
    "id_token", "access_token_expires_at", "refresh_token_expires_at", "scope", "password",
    "created_at", "updated_at";
