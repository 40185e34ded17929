-- Typed statements on "users" (logical model `user`). Column lists follow the schema's field
-- order: id, name, email, email_verified, image, created_at, updated_at.

--: User(image?)
--# doc = " One row of `users`, columns in the schema's field order."

--: UserWithAccount(image?, account_id?, account_account_id?, account_provider_id?, account_user_id?, account_access_token?, account_refresh_token?, account_id_token?, account_access_token_expires_at?, account_refresh_token_expires_at?, account_scope?, account_password?, account_created_at?, account_updated_at?)
--# doc = " A user joined with one of its accounts: the seven user columns, then every `accounts`"
--# doc = " column prefixed with `account_` (all `None` when the user has no account)."

--! user_by_id : User
--- The user with this id (`find_one user WHERE id = $1`).
SELECT "id", "name", "email", "email_verified", "image", "created_at", "updated_at"
FROM "users"
WHERE "id" = :id;

--! user_by_email : User
--- The user with this email (`find_one user WHERE email = $1`); core lowercases the email first.
SELECT "id", "name", "email", "email_verified", "image", "created_at", "updated_at"
FROM "users"
WHERE "email" = :email;

--! user_by_email_with_accounts : UserWithAccount
--- The user with this email and its accounts, one row per account (sign-in's
--- `find_one user WHERE email = $1 JOIN account`): the user columns repeat on every row,
--- accounts come in `id` order, at most 100 of them; a user without accounts gives one row
--- whose `account_*` columns are all `None`, and an unknown email gives no row.
SELECT "u"."id", "u"."name", "u"."email", "u"."email_verified", "u"."image", "u"."created_at",
    "u"."updated_at",
    "a"."id" AS "account_id", "a"."account_id" AS "account_account_id",
    "a"."provider_id" AS "account_provider_id", "a"."user_id" AS "account_user_id",
    "a"."access_token" AS "account_access_token", "a"."refresh_token" AS "account_refresh_token",
    "a"."id_token" AS "account_id_token",
    "a"."access_token_expires_at" AS "account_access_token_expires_at",
    "a"."refresh_token_expires_at" AS "account_refresh_token_expires_at",
    "a"."scope" AS "account_scope", "a"."password" AS "account_password",
    "a"."created_at" AS "account_created_at", "a"."updated_at" AS "account_updated_at"
FROM "users" AS "u"
LEFT JOIN "accounts" AS "a" ON "a"."user_id" = "u"."id"
WHERE "u"."email" = :email
ORDER BY "a"."id" ASC
LIMIT 100;

--! insert_user (image?)
--- Inserts a user (sign-up's `create user`); returns its id.
INSERT INTO "users" ("id", "name", "email", "email_verified", "image", "created_at", "updated_at")
VALUES (:id, :name, :email, :email_verified, :image, :created_at, :updated_at)
RETURNING "id";

--! set_user_email_verified : User
--- Sets `email_verified` and `updated_at` of the user with this id and returns the stored row
--- (`update user WHERE id = $1`, email verification).
UPDATE "users"
SET "email_verified" = :email_verified, "updated_at" = :updated_at
WHERE "id" = :id
RETURNING "id", "name", "email", "email_verified", "image", "created_at", "updated_at";
