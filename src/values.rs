//! DbValue ⇄ PostgreSQL, in one place.
//!
//! Parameters are bound against the type the server inferred for each placeholder of the
//! prepared statement, and columns are decoded by the type the server reports for them. So a
//! `Number` binds to `bigint`, `integer` and `smallint` columns (with a range check), a
//! `Timestamp` to `timestamptz`, `timestamp` and `date`, a `String` to `text`, `varchar` and
//! `uuid`: every column type the migration planner accepts and does not refuse is read and
//! written end to end (`docs/behaviour.md` §4; quirk Q5 in UPSTREAM.md).
//!
//! Rows become records here too: [`RecordTemplate`] holds a record's keys once, so that each
//! record of those keys is a clone instead of hashing every key again.

use std::borrow::Cow;
use std::error::Error as StdError;

use bytes::BytesMut;
use postgres_types::{FromSql, IsNull, Kind, ToSql, Type};
use rustauth_core::db::sql::SqlParam;
use rustauth_core::db::{DbField, DbFieldType, DbRecord, DbValue, IdGeneration};
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use tokio_postgres::Row;

use crate::error::{value_error, Error, Result};

/// One bound parameter, already converted to the Rust type that matches its Postgres type;
/// text, JSON and text arrays are borrowed from the query's values, not copied.
#[derive(Debug, Clone)]
pub(crate) enum PgParam<'a> {
    /// SQL NULL; accepted by every parameter type.
    Null,
    Text(Cow<'a, str>),
    Uuid(uuid::Uuid),
    Int8(i64),
    Int4(i32),
    Int2(i16),
    Bool(bool),
    TimestampTz(OffsetDateTime),
    Timestamp(PrimitiveDateTime),
    Date(Date),
    Json(Cow<'a, serde_json::Value>),
    TextArray(Cow<'a, [String]>),
    UuidArray(Vec<uuid::Uuid>),
    Int8Array(Vec<i64>),
    Int4Array(Vec<i32>),
    Int2Array(Vec<i16>),
}

impl PgParam<'_> {
    /// The same value owning what it borrowed.
    pub(crate) fn into_owned(self) -> PgParam<'static> {
        match self {
            Self::Null => PgParam::Null,
            Self::Text(value) => PgParam::Text(Cow::Owned(value.into_owned())),
            Self::Uuid(value) => PgParam::Uuid(value),
            Self::Int8(value) => PgParam::Int8(value),
            Self::Int4(value) => PgParam::Int4(value),
            Self::Int2(value) => PgParam::Int2(value),
            Self::Bool(value) => PgParam::Bool(value),
            Self::TimestampTz(value) => PgParam::TimestampTz(value),
            Self::Timestamp(value) => PgParam::Timestamp(value),
            Self::Date(value) => PgParam::Date(value),
            Self::Json(value) => PgParam::Json(Cow::Owned(value.into_owned())),
            Self::TextArray(value) => PgParam::TextArray(Cow::Owned(value.into_owned())),
            Self::UuidArray(value) => PgParam::UuidArray(value),
            Self::Int8Array(value) => PgParam::Int8Array(value),
            Self::Int4Array(value) => PgParam::Int4Array(value),
            Self::Int2Array(value) => PgParam::Int2Array(value),
        }
    }
}

impl ToSql for PgParam<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.to_sql_checked(ty, out)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // A domain is written as its base type; an enum as its label's text (its binary form).
        let ty = base(ty);
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Text(value) if matches!(ty.kind(), Kind::Enum(_)) => {
                out.extend_from_slice(value.as_bytes());
                Ok(IsNull::No)
            }
            Self::Text(value) => value.as_ref().to_sql_checked(ty, out),
            Self::Uuid(value) => value.to_sql_checked(ty, out),
            Self::Int8(value) => value.to_sql_checked(ty, out),
            Self::Int4(value) => value.to_sql_checked(ty, out),
            Self::Int2(value) => value.to_sql_checked(ty, out),
            Self::Bool(value) => value.to_sql_checked(ty, out),
            Self::TimestampTz(value) => value.to_sql_checked(ty, out),
            Self::Timestamp(value) => value.to_sql_checked(ty, out),
            Self::Date(value) => value.to_sql_checked(ty, out),
            Self::Json(value) => value.as_ref().to_sql_checked(ty, out),
            Self::TextArray(value) => value.as_ref().to_sql_checked(ty, out),
            Self::UuidArray(value) => value.to_sql_checked(ty, out),
            Self::Int8Array(value) => value.to_sql_checked(ty, out),
            Self::Int4Array(value) => value.to_sql_checked(ty, out),
            Self::Int2Array(value) => value.to_sql_checked(ty, out),
        }
    }
}

/// Converts every parameter of a statement for its type (`types`), naming the column each
/// one meets (`targets`, when known) in any error.
pub(crate) fn bind_all<'a>(
    params: &'a [SqlParam],
    types: &[Type],
    targets: &[Option<&str>],
) -> Result<Vec<PgParam<'a>>> {
    if params.len() != types.len() {
        return Err(value_error(format!(
            "statement expects {} parameters but {} were given",
            types.len(),
            params.len()
        )));
    }
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(index, (param, ty))| {
            bind(param, base(ty)).map_err(|problem| {
                let target = targets.get(index).copied().flatten();
                value_error(match target {
                    Some(column) => format!("column `{column}`: {problem}"),
                    None => format!("parameter ${}: {problem}", index + 1),
                })
            })
        })
        .collect()
}

/// The type a value of `ty` is written and read as: a domain's base type (at any depth),
/// else `ty` itself.
pub(crate) fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base(inner),
        _ => ty,
    }
}

/// Converts the parameters of a statement for their declared schema field types: the types an
/// unprepared (`query_typed`) statement announces to the server.
pub(crate) fn bind_declared(params: &[SqlParam]) -> Result<(Vec<PgParam<'_>>, Vec<Type>)> {
    let types = params.iter().map(declared_type).collect::<Vec<_>>();
    let values = bind_all(params, &types, &[])?;
    Ok((values, types))
}

/// The Postgres type a parameter has when the server is not asked to infer it: the column's
/// (its schema field type, with the uuid tag of database-generated ids), never the value's.
/// A value of another kind then fails to bind with tokio-postgres' "error serializing
/// parameter N", exactly as against a prepared statement's inferred type.
pub(crate) fn declared_type(param: &SqlParam) -> Type {
    let uuid = param.generated_id == Some(IdGeneration::Uuid);
    match param.field_type {
        DbFieldType::String if uuid => Type::UUID,
        DbFieldType::String => Type::TEXT,
        DbFieldType::Number => Type::INT8,
        DbFieldType::Boolean => Type::BOOL,
        DbFieldType::Timestamp => Type::TIMESTAMPTZ,
        DbFieldType::Json => Type::JSONB,
        DbFieldType::StringArray if uuid => Type::UUID_ARRAY,
        DbFieldType::StringArray => Type::TEXT_ARRAY,
        DbFieldType::NumberArray => Type::INT8_ARRAY,
    }
}

/// Converts one value for the parameter type `ty`. A value whose variant cannot be written to
/// that type is left in its natural Rust type, so tokio-postgres reports the mismatch as
/// "error serializing parameter N" with both type names. The error is a plain description;
/// [`bind_all`] says which column it is about.
fn bind<'a>(param: &'a SqlParam, ty: &Type) -> std::result::Result<PgParam<'a>, String> {
    Ok(match &param.value {
        DbValue::Null => PgParam::Null,
        DbValue::String(value) if *ty == Type::UUID => PgParam::Uuid(parse_uuid(value)?),
        DbValue::String(value) => PgParam::Text(Cow::Borrowed(value)),
        DbValue::Number(value) => bind_number(*value, ty)?,
        DbValue::Boolean(value) => PgParam::Bool(*value),
        DbValue::Timestamp(value) => bind_timestamp(*value, ty),
        DbValue::Json(value) => PgParam::Json(Cow::Borrowed(value)),
        DbValue::StringArray(values) if *ty == Type::UUID_ARRAY => PgParam::UuidArray(
            values
                .iter()
                .map(|value| parse_uuid(value))
                .collect::<Result<_, _>>()?,
        ),
        DbValue::StringArray(values) => PgParam::TextArray(Cow::Borrowed(values)),
        DbValue::NumberArray(values) => bind_number_array(values, ty)?,
        DbValue::Record(_) | DbValue::RecordArray(_) => {
            return Err(
                "joined records (Record/RecordArray) cannot be bound as SQL parameters".to_owned(),
            )
        }
    })
}

/// A UUID column's value; the error does not repeat the value (it may be a token).
fn parse_uuid(value: &str) -> std::result::Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(value).map_err(|error| format!("value is not a valid UUID ({error})"))
}

fn bind_number(value: i64, ty: &Type) -> std::result::Result<PgParam<'static>, String> {
    let out_of_range = || format!("number {value} does not fit the {} column", ty.name());
    Ok(match *ty {
        Type::INT4 => PgParam::Int4(i32::try_from(value).map_err(|_| out_of_range())?),
        Type::INT2 => PgParam::Int2(i16::try_from(value).map_err(|_| out_of_range())?),
        _ => PgParam::Int8(value),
    })
}

fn bind_number_array(values: &[i64], ty: &Type) -> std::result::Result<PgParam<'static>, String> {
    let out_of_range =
        |value: &i64| format!("number {value} does not fit the {} column", ty.name());
    Ok(match *ty {
        Type::INT4_ARRAY => PgParam::Int4Array(
            values
                .iter()
                .map(|value| i32::try_from(*value).map_err(|_| out_of_range(value)))
                .collect::<Result<_, _>>()?,
        ),
        Type::INT2_ARRAY => PgParam::Int2Array(
            values
                .iter()
                .map(|value| i16::try_from(*value).map_err(|_| out_of_range(value)))
                .collect::<Result<_, _>>()?,
        ),
        _ => PgParam::Int8Array(values.to_vec()),
    })
}

fn bind_timestamp(value: OffsetDateTime, ty: &Type) -> PgParam<'static> {
    let utc = value.to_offset(UtcOffset::UTC);
    match *ty {
        Type::TIMESTAMP => PgParam::Timestamp(PrimitiveDateTime::new(utc.date(), utc.time())),
        Type::DATE => PgParam::Date(utc.date()),
        _ => PgParam::TimestampTz(value),
    }
}

/// A parameter of a one-round-trip statement on a client without a catalog (the `driver`
/// module): strings, timestamps and NULLs are sent as text with no declared type, so the
/// server reads them for whatever column they meet, exactly as it types a prepared
/// statement's parameters (`text`, `varchar`, `citext`, `uuid`; `timestamp` and
/// `timestamptz`); everything else is sent in binary with its schema field's type.
#[derive(Debug, Clone)]
pub(crate) enum LooseParam<'a> {
    /// Text for the server to read as the column's type (borrowed from the query's value, or
    /// a timestamp's literal); `None` is SQL NULL.
    Text(Option<Cow<'a, str>>),
    /// A binary value of the declared type.
    Bound(PgParam<'a>),
}

impl ToSql for LooseParam<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.to_sql_checked(ty, out)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Self::Text(None) => Ok(IsNull::Yes),
            Self::Text(Some(text)) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            Self::Bound(value) => value.to_sql_checked(ty, out),
        }
    }

    fn encode_format(&self, _ty: &Type) -> postgres_types::Format {
        match self {
            Self::Text(_) => postgres_types::Format::Text,
            Self::Bound(_) => postgres_types::Format::Binary,
        }
    }
}

/// "Let the server infer it": parameter type OID 0.
fn unspecified() -> Type {
    Type::new(String::new(), 0, Kind::Simple, String::new())
}

/// The parameters of a statement as [`LooseParam`]s with their declared types.
pub(crate) fn bind_loose(params: &[SqlParam]) -> Result<(Vec<LooseParam<'_>>, Vec<Type>)> {
    let mut values = Vec::with_capacity(params.len());
    let mut types = Vec::with_capacity(params.len());
    for (index, param) in params.iter().enumerate() {
        let text = match &param.value {
            DbValue::Null => Some(None),
            DbValue::String(value) => Some(Some(Cow::Borrowed(value.as_str()))),
            DbValue::Timestamp(value) => {
                timestamp_literal(*value).map(|text| Some(Cow::Owned(text)))
            }
            _ => None,
        };
        match text {
            Some(text) => {
                values.push(LooseParam::Text(text));
                types.push(unspecified());
            }
            None => {
                let ty = declared_type(param);
                let value = bind(param, &ty).map_err(|problem| {
                    value_error(format!("parameter ${}: {problem}", index + 1))
                })?;
                values.push(LooseParam::Bound(value));
                types.push(ty);
            }
        }
    }
    Ok((values, types))
}

/// `2024-01-31 23:59:59.123456+00`: the instant in UTC, which PostgreSQL reads as that
/// instant for `timestamptz` and as its UTC wall-clock time for `timestamp` (the offset is
/// ignored there). `None` outside years 1 to 9999, which the literal cannot spell plainly.
fn timestamp_literal(value: OffsetDateTime) -> Option<String> {
    let utc = value.to_offset(UtcOffset::UTC);
    (1..=9999).contains(&utc.year()).then(|| {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second(),
            utc.microsecond()
        )
    })
}

/// Borrows a parameter list the way tokio-postgres' query methods take it.
pub(crate) fn param_refs<'a>(values: &'a [PgParam<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| value as &(dyn ToSql + Sync))
        .collect()
}

/// How a column of type `ty` is read, or `None` when this adapter cannot read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Text,
    Uuid,
    Int8,
    Int4,
    Int2,
    Bool,
    TimestampTz,
    Timestamp,
    Date,
    Json,
    TextArray,
    UuidArray,
    Int8Array,
    Int4Array,
    Int2Array,
    /// An enum: its label, as text.
    Label,
}

/// An enum value's label (its binary form is the label's text).
struct Label(String);

impl<'a> FromSql<'a> for Label {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Self(std::str::from_utf8(raw)?.to_owned()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Enum(_))
    }
}

fn reader(ty: &Type) -> Option<Reader> {
    // The built-in types first: `String::accepts` compares the type's name with `citext` and
    // others for every type that is not text, and this runs for every column of every row.
    Some(match *ty {
        Type::TEXT | Type::VARCHAR => Reader::Text,
        Type::UUID => Reader::Uuid,
        Type::INT8 => Reader::Int8,
        Type::INT4 => Reader::Int4,
        Type::INT2 => Reader::Int2,
        Type::BOOL => Reader::Bool,
        Type::TIMESTAMPTZ => Reader::TimestampTz,
        Type::TIMESTAMP => Reader::Timestamp,
        Type::DATE => Reader::Date,
        Type::JSON | Type::JSONB => Reader::Json,
        Type::UUID_ARRAY => Reader::UuidArray,
        Type::INT8_ARRAY => Reader::Int8Array,
        Type::INT4_ARRAY => Reader::Int4Array,
        Type::INT2_ARRAY => Reader::Int2Array,
        // Every other type a Rust `String` reads: bpchar, name, unknown, citext, ….
        _ if <String as FromSql>::accepts(ty) => Reader::Text,
        _ => match ty.kind() {
            Kind::Array(element) if <String as FromSql>::accepts(element) => Reader::TextArray,
            Kind::Enum(_) => Reader::Label,
            _ => return None,
        },
    })
}

/// Whether a column of type `ty` can be read into a `DbValue` (a domain as its base type: the
/// server describes a result column of a domain type by its base type).
pub(crate) fn readable(ty: &Type) -> bool {
    reader(base(ty)).is_some()
}

/// The error for a column this adapter cannot read.
pub(crate) fn unreadable(table: &str, column: &str, ty: &Type) -> Error {
    value_error(format!(
        "column `{column}` of table `{table}` has PostgreSQL type `{}`, which this adapter \
         cannot read (it reads text, varchar, char, name, citext, smallint, integer, bigint, \
         boolean, timestamp, timestamptz, date, uuid, json, jsonb, enums, arrays of these, and \
         domains over any of them)",
        ty.name()
    ))
}

/// Reads column `index` of `row` as a `DbValue`, by the column's real Postgres type.
pub(crate) fn decode(row: &Row, index: usize, field: &DbField) -> Result<DbValue> {
    let Some(column) = row.columns().get(index) else {
        return Err(value_error(format!(
            "result row has no column {index} for field `{}`",
            field.name
        )));
    };
    let Some(reader) = reader(column.type_()) else {
        return Err(value_error(format!(
            "column `{}` (field `{}`) has PostgreSQL type `{}`, which this adapter cannot read",
            column.name(),
            field.name,
            column.type_().name()
        )));
    };
    let value = match reader {
        Reader::Text => get::<String>(row, index)?.map(DbValue::String),
        Reader::Uuid => get::<uuid::Uuid>(row, index)?.map(|id| DbValue::String(id.to_string())),
        Reader::Int8 => get::<i64>(row, index)?.map(DbValue::Number),
        Reader::Int4 => get::<i32>(row, index)?.map(|value| DbValue::Number(value.into())),
        Reader::Int2 => get::<i16>(row, index)?.map(|value| DbValue::Number(value.into())),
        Reader::Bool => get::<bool>(row, index)?.map(DbValue::Boolean),
        Reader::TimestampTz => get::<OffsetDateTime>(row, index)?.map(DbValue::Timestamp),
        // A timestamp without time zone holds the UTC wall-clock time of the instant (as
        // Prisma and Drizzle write it, and as `bind_timestamp` does).
        Reader::Timestamp => get::<PrimitiveDateTime>(row, index)?
            .map(|value| DbValue::Timestamp(value.assume_utc())),
        Reader::Date => get::<Date>(row, index)?.map(|value| {
            DbValue::Timestamp(PrimitiveDateTime::new(value, Time::MIDNIGHT).assume_utc())
        }),
        Reader::Json => get::<serde_json::Value>(row, index)?.map(DbValue::Json),
        Reader::TextArray => get::<Vec<String>>(row, index)?.map(DbValue::StringArray),
        Reader::UuidArray => get::<Vec<uuid::Uuid>>(row, index)?
            .map(|values| DbValue::StringArray(values.iter().map(ToString::to_string).collect())),
        Reader::Int8Array => get::<Vec<i64>>(row, index)?.map(DbValue::NumberArray),
        Reader::Int4Array => get::<Vec<i32>>(row, index)?
            .map(|values| DbValue::NumberArray(values.into_iter().map(i64::from).collect())),
        Reader::Int2Array => get::<Vec<i16>>(row, index)?
            .map(|values| DbValue::NumberArray(values.into_iter().map(i64::from).collect())),
        Reader::Label => get::<Label>(row, index)?.map(|label| DbValue::String(label.0)),
    };
    Ok(value.unwrap_or(DbValue::Null))
}

/// Reads the column named `name` of `row` as a `DbValue`.
pub(crate) fn decode_named(row: &Row, name: &str, field: &DbField) -> Result<DbValue> {
    let index = row
        .columns()
        .iter()
        .position(|column| column.name() == name)
        .ok_or_else(|| value_error(format!("result row has no column `{name}`")))?;
    decode(row, index, field)
}

/// A record's keys, made once and cloned for every record of the same keys: a `DbRecord`
/// (rustauth-core's `IndexMap<String, DbValue>`, its hasher fixed as SipHash) hashes every key
/// it is given, about 370 instructions a key with the insertion, where a clone copies the hash
/// table. Used by the typed path (a template per row type and pick, `typed/rows.rs`) and the
/// generic path (one per planned shape, `shapes::Fields`).
#[derive(Debug)]
pub(crate) struct RecordTemplate {
    /// Every distinct name, in first-occurrence order, each with `Null`.
    record: DbRecord,
    /// For each entry of `record`, the column its value comes from (the first column of that
    /// name: a name given twice is read once).
    columns: Vec<usize>,
}

impl RecordTemplate {
    /// The template of `(column, name)` pairs in record order, with room for `room` keys more
    /// that a caller may add without growing the record (a clone keeps the capacity).
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = (usize, &'a str)>, room: usize) -> Self {
        let names = names.into_iter();
        let mut record = DbRecord::with_capacity(names.size_hint().0);
        let mut columns = Vec::with_capacity(names.size_hint().0);
        for (column, name) in names {
            if !record.contains_key(name) {
                record.insert(name.to_owned(), DbValue::Null);
                columns.push(column);
            }
        }
        record.reserve(room);
        Self { record, columns }
    }

    /// A record of these keys, each value from `value(column)` (`None` leaves `Null`).
    pub(crate) fn fill<E>(
        &self,
        mut value: impl FnMut(usize) -> std::result::Result<Option<DbValue>, E>,
    ) -> std::result::Result<DbRecord, E> {
        let mut record = self.record.clone();
        for (slot, column) in record.values_mut().zip(&self.columns) {
            if let Some(value) = value(*column)? {
                *slot = value;
            }
        }
        Ok(record)
    }

    /// The keys, in record order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<&str> {
        self.record.keys().map(String::as_str).collect()
    }

    /// The column of each key, in record order.
    #[cfg(test)]
    pub(crate) fn columns(&self) -> &[usize] {
        &self.columns
    }
}

fn get<'a, T>(row: &'a Row, index: usize) -> Result<Option<T>>
where
    T: postgres_types::FromSql<'a>,
{
    row.try_get::<_, Option<T>>(index).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_like_types_and_their_arrays_are_readable() {
        let citext = Type::new(
            "citext".to_owned(),
            16_385,
            Kind::Simple,
            "public".to_owned(),
        );
        for ty in [
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::UNKNOWN,
            citext.clone(),
        ] {
            assert_eq!(reader(&ty), Some(Reader::Text), "{ty}");
        }
        let citext_array = Type::new(
            "_citext".to_owned(),
            16_390,
            Kind::Array(citext),
            "public".to_owned(),
        );
        assert_eq!(reader(&citext_array), Some(Reader::TextArray));
        assert_eq!(reader(&Type::VARCHAR_ARRAY), Some(Reader::TextArray));
        assert_eq!(reader(&Type::NUMERIC), None);
        assert_eq!(reader(&Type::MONEY), None);
    }

    #[test]
    fn numbers_that_do_not_fit_name_the_column_but_never_a_uuid_value() {
        let field = DbField::new("n", rustauth_core::db::DbFieldType::Number);
        let params = [SqlParam::new(&field, DbValue::Number(1 << 40))];
        let error = bind_all(&params, &[Type::INT4], &[Some("n")]).map(|_| ());
        assert!(
            matches!(&error, Err(e) if e.to_string().contains("column `n`") && e.to_string().contains("int4")),
            "{error:?}"
        );
        let field = DbField::new("id", rustauth_core::db::DbFieldType::String);
        let params = [SqlParam::new(
            &field,
            DbValue::String("secret-token".to_owned()),
        )];
        let error = bind_all(&params, &[Type::UUID], &[Some("id")]).map(|_| ());
        assert!(
            matches!(&error, Err(e) if e.to_string().contains("column `id`") && !e.to_string().contains("secret-token")),
            "{error:?}"
        );
    }
}
