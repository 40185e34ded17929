//! DbValue ⇄ PostgreSQL round trips (behaviour.md §3, b.6, b.8, b.9; behaviour.md §10): select
//! order and keys, every `DbFieldType` in required and nullable columns, JSON null versus SQL
//! NULL, arrays (empty ones too), microsecond timestamps, numeric extremes, Unicode and long
//! strings, and values Postgres refuses (as errors, never panics).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::crud_common;
use crate::fixtures;

use crud_common::{adapter_with, assert_adapter_error, at, extended_schema, keys, s, string};
use rustauth_core::db::{
    Count, Create, DbAdapter, DbRecord, DbValue, FindMany, FindOne, Sort, SortDirection, Update,
    UpdateMany, Where, WhereOperator,
};
use serde_json::json;
use time::OffsetDateTime;

async fn read(adapter: &dyn DbAdapter, model: &str, id: &str) -> DbRecord {
    adapter
        .find_one(FindOne::new(model).where_clause(Where::new("id", s(id))))
        .await
        .expect("find_one")
        .unwrap_or_else(|| panic!("{model} {id} exists"))
}

async fn profile_of(adapter: &dyn DbAdapter, id: &str) -> DbValue {
    read(adapter, "user", id)
        .await
        .get("profile")
        .cloned()
        .expect("profile key present")
}

/// Every required and nullable `gadget` field set to a distinctive value.
fn full_gadget(id: &str) -> Create {
    Create::new("gadget")
        .data("id", s(id))
        .data("text", s("required text"))
        .data("text_opt", s("optional text"))
        .data("number", DbValue::Number(i64::MAX))
        .data("number_opt", DbValue::Number(i64::MIN))
        .data("flag", DbValue::Boolean(true))
        .data("flag_opt", DbValue::Boolean(false))
        .data("moment", DbValue::Timestamp(at(1)))
        .data("moment_opt", DbValue::Timestamp(at(-86_400)))
        .data(
            "doc",
            DbValue::Json(json!({ "a": 1, "b": [true, null, "x"], "c": { "d": 2.5 } })),
        )
        .data("doc_opt", DbValue::Json(json!(["array", 2, null])))
        .data(
            "tags",
            DbValue::StringArray(vec![
                "alpha".to_owned(),
                "with space".to_owned(),
                "comma,quote\"brace{}".to_owned(),
                "ünï 🦀".to_owned(),
                String::new(),
            ]),
        )
        .data("tags_opt", DbValue::StringArray(vec!["only".to_owned()]))
        .data(
            "scores",
            DbValue::NumberArray(vec![0, -1, i64::MAX, i64::MIN]),
        )
        .data("scores_opt", DbValue::NumberArray(vec![42]))
}

const GADGET_KEYS: [&str; 15] = [
    "id",
    "text",
    "text_opt",
    "number",
    "number_opt",
    "flag",
    "flag_opt",
    "moment",
    "moment_opt",
    "doc",
    "doc_opt",
    "tags",
    "tags_opt",
    "scores",
    "scores_opt",
];

// ---------------------------------------------------------------------------------------------
// Selection order and keys.

#[tokio::test]
async fn create_select_returns_exactly_the_selected_keys_in_order() {
    let (adapter, _url) = adapter_with("select", &extended_schema()).await;
    let profile = DbValue::Json(json!({ "theme": "dark" }));

    let created = adapter
        .create(user_with_profile("u1", profile.clone()).select(["id", "profile"]))
        .await
        .expect("create");
    assert_eq!(keys(&created), ["id", "profile"]);
    assert_eq!(created.get("profile"), Some(&profile));

    let created = adapter
        .create(user_with_profile("u2", DbValue::Null).select(["profile", "email", "id"]))
        .await
        .expect("create");
    assert_eq!(keys(&created), ["profile", "email", "id"]);

    // No select: the whole data map, in the caller's order.
    let created = adapter
        .create(user_with_profile("u3", DbValue::Null))
        .await
        .expect("create");
    assert_eq!(
        keys(&created),
        [
            "id",
            "name",
            "email",
            "email_verified",
            "image",
            "created_at",
            "updated_at",
            "profile"
        ]
    );

    // Reads: select order is kept, no select means every field in schema order.
    let found = adapter
        .find_one(
            FindOne::new("user")
                .where_clause(Where::new("id", s("u1")))
                .select(["profile", "email", "id"]),
        )
        .await
        .expect("find_one")
        .expect("row");
    assert_eq!(keys(&found), ["profile", "email", "id"]);
    assert_eq!(found.get("profile"), Some(&profile));
    let all = read(&adapter, "user", "u1").await;
    assert_eq!(
        keys(&all),
        [
            "id",
            "name",
            "email",
            "email_verified",
            "image",
            "created_at",
            "updated_at",
            "profile"
        ]
    );
    let many = adapter
        .find_many(
            FindMany::new("user")
                .sort_by(Sort::new("id", SortDirection::Asc))
                .select(["email", "id"]),
        )
        .await
        .expect("find_many");
    assert_eq!(many.len(), 3);
    for record in &many {
        assert_eq!(keys(record), ["email", "id"]);
    }
    assert_eq!(string(&many[2], "email"), "u3@example.com");
}

// ---------------------------------------------------------------------------------------------
// JSON, arrays.

#[tokio::test]
async fn json_values_round_trip() {
    let (adapter, _url) = adapter_with("json", &extended_schema()).await;
    let cases = [
        (
            "object",
            json!({
                "theme": "dark",
                "nested": { "list": [1, 2, { "deep": null }], "flag": false },
                "unicode": "Zoë 🦀 日本語",
                "float": 1.5,
                "big": 9_007_199_254_740_993_i64
            }),
        ),
        ("array", json!([1, "two", null, true, { "x": [] }])),
        ("empty_object", json!({})),
        ("empty_array", json!([])),
        ("string", json!("just a string")),
        ("number", json!(-42)),
        ("boolean", json!(true)),
        ("json_null", serde_json::Value::Null),
    ];
    for (id, value) in &cases {
        adapter
            .create(user_with_profile(id, DbValue::Json(value.clone())))
            .await
            .expect("create");
    }
    for (id, value) in &cases {
        assert_eq!(
            profile_of(&adapter, id).await,
            DbValue::Json(value.clone()),
            "{id}"
        );
    }

    // Update writes JSON too and returns it decoded.
    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(Where::new("id", s("object")))
                .data("profile", DbValue::Json(json!({ "replaced": [1] }))),
        )
        .await
        .expect("update")
        .expect("row");
    assert_eq!(
        updated.get("profile"),
        Some(&DbValue::Json(json!({ "replaced": [1] })))
    );
}

#[tokio::test]
async fn json_null_is_not_sql_null() {
    let (adapter, _url) = adapter_with("json null", &extended_schema()).await;
    adapter
        .create(user_with_profile(
            "json_null",
            DbValue::Json(serde_json::Value::Null),
        ))
        .await
        .expect("create");
    adapter
        .create(user_with_profile("sql_null", DbValue::Null))
        .await
        .expect("create");

    assert_eq!(
        profile_of(&adapter, "json_null").await,
        DbValue::Json(serde_json::Value::Null)
    );
    assert_eq!(profile_of(&adapter, "sql_null").await, DbValue::Null);

    // IS NULL sees only the SQL NULL.
    let ids = |records: Vec<DbRecord>| {
        records
            .iter()
            .map(|record| string(record, "id").to_owned())
            .collect::<Vec<_>>()
    };
    let is_null = adapter
        .find_many(FindMany::new("user").where_clause(Where::new("profile", DbValue::Null)))
        .await
        .expect("find_many");
    assert_eq!(ids(is_null), ["sql_null"]);
    let not_null = adapter
        .find_many(
            FindMany::new("user")
                .where_clause(Where::new("profile", DbValue::Null).operator(WhereOperator::Ne)),
        )
        .await
        .expect("find_many");
    assert_eq!(ids(not_null), ["json_null"]);

    // And they convert into each other through updates.
    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(Where::new("id", s("json_null")))
                .data("profile", DbValue::Null),
        )
        .await
        .expect("update")
        .expect("row");
    assert_eq!(updated.get("profile"), Some(&DbValue::Null));
    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(Where::new("id", s("sql_null")))
                .data("profile", DbValue::Json(serde_json::Value::Null)),
        )
        .await
        .expect("update")
        .expect("row");
    assert_eq!(
        updated.get("profile"),
        Some(&DbValue::Json(serde_json::Value::Null))
    );
}

#[tokio::test]
async fn string_and_number_arrays_round_trip_including_empty() {
    let (adapter, _url) = adapter_with("arrays", &extended_schema()).await;
    adapter.create(full_gadget("full")).await.expect("create");
    adapter
        .create(
            full_gadget("empty")
                .data("tags", DbValue::StringArray(Vec::new()))
                .data("tags_opt", DbValue::StringArray(Vec::new()))
                .data("scores", DbValue::NumberArray(Vec::new()))
                .data("scores_opt", DbValue::NumberArray(Vec::new())),
        )
        .await
        .expect("create with empty arrays");

    let full = read(&adapter, "gadget", "full").await;
    assert_eq!(
        full.get("tags"),
        Some(&DbValue::StringArray(vec![
            "alpha".to_owned(),
            "with space".to_owned(),
            "comma,quote\"brace{}".to_owned(),
            "ünï 🦀".to_owned(),
            String::new(),
        ]))
    );
    assert_eq!(
        full.get("scores"),
        Some(&DbValue::NumberArray(vec![0, -1, i64::MAX, i64::MIN]))
    );

    let empty = read(&adapter, "gadget", "empty").await;
    for key in ["tags", "tags_opt"] {
        assert_eq!(
            empty.get(key),
            Some(&DbValue::StringArray(Vec::new())),
            "{key}"
        );
    }
    for key in ["scores", "scores_opt"] {
        assert_eq!(
            empty.get(key),
            Some(&DbValue::NumberArray(Vec::new())),
            "{key}"
        );
    }

    // Arrays through update, and back to SQL NULL.
    let updated = adapter
        .update(
            Update::new("gadget")
                .where_clause(Where::new("id", s("empty")))
                .data("tags", DbValue::StringArray(vec!["x".to_owned(); 3]))
                .data("scores_opt", DbValue::Null),
        )
        .await
        .expect("update")
        .expect("row");
    assert_eq!(
        updated.get("tags"),
        Some(&DbValue::StringArray(vec!["x".to_owned(); 3]))
    );
    assert_eq!(updated.get("scores_opt"), Some(&DbValue::Null));
}

#[tokio::test]
async fn every_field_type_round_trips_required_and_nullable() {
    let (adapter, _url) = adapter_with("every type", &extended_schema()).await;
    let create = full_gadget("full");
    let expected = create.data.clone();
    adapter.create(create).await.expect("create");

    let stored = read(&adapter, "gadget", "full").await;
    assert_eq!(keys(&stored), GADGET_KEYS);
    for key in GADGET_KEYS {
        assert_eq!(stored.get(key), expected.get(key), "{key}");
    }

    // Nullable columns left out or given Null read back as SQL NULL, keys never omitted.
    adapter
        .create(
            Create::new("gadget")
                .data("id", s("sparse"))
                .data("text", s(""))
                .data("number", DbValue::Number(0))
                .data("flag", DbValue::Boolean(false))
                .data("moment", DbValue::Timestamp(OffsetDateTime::UNIX_EPOCH))
                .data("doc", DbValue::Json(json!(null)))
                .data("tags", DbValue::StringArray(Vec::new()))
                .data("scores", DbValue::NumberArray(Vec::new()))
                .data("text_opt", DbValue::Null)
                .data("doc_opt", DbValue::Null),
        )
        .await
        .expect("create sparse");
    let sparse = read(&adapter, "gadget", "sparse").await;
    assert_eq!(keys(&sparse), GADGET_KEYS);
    for key in GADGET_KEYS.iter().filter(|key| key.ends_with("_opt")) {
        assert_eq!(sparse.get(*key), Some(&DbValue::Null), "{key}");
    }
    assert_eq!(sparse.get("text"), Some(&s("")), "empty string is not NULL");
    assert_eq!(sparse.get("doc"), Some(&DbValue::Json(json!(null))));
    assert_eq!(
        sparse.get("moment"),
        Some(&DbValue::Timestamp(OffsetDateTime::UNIX_EPOCH))
    );

    // Fill every nullable column through update; the returned record carries the values.
    let mut update = Update::new("gadget").where_clause(Where::new("id", s("sparse")));
    for key in GADGET_KEYS.iter().filter(|key| key.ends_with("_opt")) {
        update = update.data(*key, expected.get(*key).cloned().expect("value"));
    }
    let updated = adapter.update(update).await.expect("update").expect("row");
    assert_eq!(keys(&updated), GADGET_KEYS);
    for key in GADGET_KEYS.iter().filter(|key| key.ends_with("_opt")) {
        assert_eq!(updated.get(*key), expected.get(*key), "{key}");
    }

    // And clear them again with update_many.
    let mut clear = UpdateMany::new("gadget");
    for key in GADGET_KEYS.iter().filter(|key| key.ends_with("_opt")) {
        clear = clear.data(*key, DbValue::Null);
    }
    assert_eq!(adapter.update_many(clear).await.expect("update_many"), 2);
    let cleared = adapter
        .count(Count::new("gadget").where_clause(Where::new("scores_opt", DbValue::Null)))
        .await
        .expect("count");
    assert_eq!(cleared, 2);
    let full = read(&adapter, "gadget", "full").await;
    assert_eq!(full.get("moment_opt"), Some(&DbValue::Null));
    assert_eq!(full.get("number"), Some(&DbValue::Number(i64::MAX)));
}

// ---------------------------------------------------------------------------------------------
// b.8: timestamps, numbers, strings.

fn utc(
    year: i32,
    month: time::Month,
    day: u8,
    (hour, minute, second): (u8, u8, u8),
    micro: u32,
) -> OffsetDateTime {
    time::Date::from_calendar_date(year, month, day)
        .expect("date")
        .with_hms_micro(hour, minute, second, micro)
        .expect("time")
        .assume_utc()
}

#[tokio::test]
async fn timestamps_round_trip_at_microsecond_precision() {
    let (adapter, _url) = adapter_with("timestamps", &extended_schema()).await;
    let micro = at(0) + time::Duration::microseconds(123_456);
    let nano = at(0) + time::Duration::nanoseconds(987_654_321);
    let offset = (at(7200) + time::Duration::microseconds(1))
        .to_offset(time::UtcOffset::from_hms(-7, 0, 0).expect("offset"));
    let old = utc(1901, time::Month::February, 3, (4, 5, 6), 7);
    let future = utc(2999, time::Month::December, 31, (23, 59, 59), 999_999);
    let cases = [
        ("micro", micro),
        ("nano", nano),
        ("offset", offset),
        ("old", old),
        ("future", future),
    ];
    for (id, moment) in cases {
        let created = adapter
            .create(
                Create::new("gadget")
                    .data("id", s(id))
                    .data("text", s(id))
                    .data("number", DbValue::Number(0))
                    .data("flag", DbValue::Boolean(true))
                    .data("moment", DbValue::Timestamp(moment))
                    .data("moment_opt", DbValue::Timestamp(moment))
                    .data("doc", DbValue::Json(json!({})))
                    .data("tags", DbValue::StringArray(Vec::new()))
                    .data("scores", DbValue::NumberArray(Vec::new())),
            )
            .await
            .expect("create");
        // Quirk Q10: without a database-generated id the caller's data is echoed.
        assert_eq!(created.get("moment"), Some(&DbValue::Timestamp(moment)));
    }
    let stored = |record: &DbRecord, key: &str| match record.get(key) {
        Some(DbValue::Timestamp(value)) => *value,
        other => panic!("expected a timestamp at {key}, got {other:?}"),
    };
    for (id, moment) in cases {
        let record = read(&adapter, "gadget", id).await;
        for key in ["moment", "moment_opt"] {
            let value = stored(&record, key);
            assert_eq!(
                value.offset(),
                time::UtcOffset::UTC,
                "{id}: read back in UTC"
            );
            if id == "nano" {
                assert_eq!(value.nanosecond() % 1_000, 0, "{id}: microsecond precision");
                assert!(
                    (moment - value).abs() < time::Duration::microseconds(1),
                    "{id}: {value} vs {moment}"
                );
            } else {
                assert_eq!(value, moment, "{id}: exact at microsecond precision");
            }
        }
    }
    // The stored microseconds are exact and usable in equality filters.
    let found = adapter
        .find_many(
            FindMany::new("gadget").where_clause(Where::new("moment", DbValue::Timestamp(micro))),
        )
        .await
        .expect("find_many");
    assert_eq!(found.len(), 1);
    assert_eq!(string(&found[0], "id"), "micro");
}

#[tokio::test]
async fn unicode_and_long_strings_round_trip() {
    let (adapter, _url) = adapter_with("strings", &extended_schema()).await;
    let unicode = "Zoë — 🦀 日本語 \u{202e}rtl\u{202c} e\u{301} 'quote' \"double\" \\ back";
    let long = "xyz🦀".repeat(250_000);
    for (id, text) in [("unicode", unicode), ("long", long.as_str()), ("empty", "")] {
        adapter
            .create(
                Create::new("gadget")
                    .data("id", s(id))
                    .data("text", s(text))
                    .data("text_opt", s(text))
                    .data("number", DbValue::Number(0))
                    .data("flag", DbValue::Boolean(true))
                    .data("moment", DbValue::Timestamp(at(0)))
                    .data("doc", DbValue::Json(json!({ "text": text })))
                    .data("tags", DbValue::StringArray(vec![text.to_owned()]))
                    .data("scores", DbValue::NumberArray(Vec::new())),
            )
            .await
            .expect("create");
        let record = read(&adapter, "gadget", id).await;
        assert_eq!(record.get("text"), Some(&s(text)), "{id}");
        assert_eq!(record.get("text_opt"), Some(&s(text)), "{id}");
        assert_eq!(
            record.get("doc"),
            Some(&DbValue::Json(json!({ "text": text }))),
            "{id}"
        );
        assert_eq!(
            record.get("tags"),
            Some(&DbValue::StringArray(vec![text.to_owned()])),
            "{id}"
        );
    }
    // Unicode in filters: equality, patterns, insensitive matching of non-ASCII letters.
    let count = |clause: Where| {
        let adapter = adapter.clone();
        async move {
            adapter
                .count(Count::new("gadget").where_clause(clause))
                .await
                .expect("count")
        }
    };
    assert_eq!(count(Where::new("text", s(unicode))).await, 1);
    assert_eq!(count(Where::new("text", s(&long))).await, 1);
    assert_eq!(
        count(Where::new("text", s("🦀 日本")).operator(WhereOperator::Contains)).await,
        1
    );
    assert_eq!(
        count(
            Where::new("text", s("ZOË"))
                .operator(WhereOperator::StartsWith)
                .insensitive()
        )
        .await,
        1
    );
    assert_eq!(
        count(Where::new("text", s("🦀xyz🦀")).operator(WhereOperator::Contains)).await,
        1,
        "only the long string"
    );
}

#[tokio::test]
async fn values_postgres_refuses_are_adapter_errors() {
    let (adapter, _url) = adapter_with("refused values", &extended_schema()).await;
    // Postgres text cannot hold NUL.
    assert_adapter_error(
        adapter
            .create(user_with_profile("nul", DbValue::Null).data("name", s("a\u{0}b")))
            .await,
        "tokio-postgres error",
    );
    // jsonb cannot hold \u0000 either.
    assert_adapter_error(
        adapter
            .create(user_with_profile(
                "json_nul",
                DbValue::Json(json!({ "k": "\u{0}" })),
            ))
            .await,
        "tokio-postgres error",
    );
    // A Number for a text column is refused when binding.
    assert_adapter_error(
        adapter
            .count(Count::new("user").where_clause(Where::new("email", DbValue::Number(1))))
            .await,
        "tokio-postgres error",
    );
    // Nothing was written and the connection is still usable.
    assert_eq!(adapter.count(Count::new("user")).await.expect("count"), 0);
}

/// A user created at `at(0)` with a `profile` (the JSON column these tests add).
fn user_with_profile(id: &str, profile: DbValue) -> Create {
    fixtures::user_at(id, at(0)).data("profile", profile)
}
