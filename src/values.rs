//! DbValue ⇄ PostgreSQL, in one place.
//!
//! Parameters are bound against the type the server inferred for each placeholder of the
//! prepared statement, and columns are decoded by the type the server reports for them. So a
//! `Number` binds to `bigint`, `integer` and `smallint` columns (with a range check), a
//! `Timestamp` to `timestamptz`, `timestamp` and `date`, a `String` to `text`, `varchar` and
//! `uuid`: every column type the migration planner accepts and does not refuse is read and
//! written end to end (CONTRACT quirk Q5).

use std::error::Error as StdError;

use bytes::BytesMut;
use postgres_types::{IsNull, ToSql, Type};
use rustauth_core::db::sql::SqlParam;
use rustauth_core::db::{DbField, DbFieldType, DbRecord, DbValue, IdGeneration};
use rustauth_core::error::RustAuthError;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use tokio_postgres::Row;

use crate::error::{adapter, postgres_error};

/// One bound parameter, already converted to the Rust type that matches its Postgres type.
#[derive(Debug, Clone)]
pub(crate) enum PgParam {
    /// SQL NULL; accepted by every parameter type.
    Null,
    Text(String),
    Uuid(uuid::Uuid),
    Int8(i64),
    Int4(i32),
    Int2(i16),
    Bool(bool),
    TimestampTz(OffsetDateTime),
    Timestamp(PrimitiveDateTime),
    Date(Date),
    Json(serde_json::Value),
    TextArray(Vec<String>),
    UuidArray(Vec<uuid::Uuid>),
    Int8Array(Vec<i64>),
    Int4Array(Vec<i32>),
    Int2Array(Vec<i16>),
}

impl ToSql for PgParam {
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
            Self::Null => Ok(IsNull::Yes),
            Self::Text(value) => value.to_sql_checked(ty, out),
            Self::Uuid(value) => value.to_sql_checked(ty, out),
            Self::Int8(value) => value.to_sql_checked(ty, out),
            Self::Int4(value) => value.to_sql_checked(ty, out),
            Self::Int2(value) => value.to_sql_checked(ty, out),
            Self::Bool(value) => value.to_sql_checked(ty, out),
            Self::TimestampTz(value) => value.to_sql_checked(ty, out),
            Self::Timestamp(value) => value.to_sql_checked(ty, out),
            Self::Date(value) => value.to_sql_checked(ty, out),
            Self::Json(value) => value.to_sql_checked(ty, out),
            Self::TextArray(value) => value.to_sql_checked(ty, out),
            Self::UuidArray(value) => value.to_sql_checked(ty, out),
            Self::Int8Array(value) => value.to_sql_checked(ty, out),
            Self::Int4Array(value) => value.to_sql_checked(ty, out),
            Self::Int2Array(value) => value.to_sql_checked(ty, out),
        }
    }
}

/// Converts every parameter of a statement for the types the server inferred.
pub(crate) fn bind_all(params: &[SqlParam], types: &[Type]) -> Result<Vec<PgParam>, RustAuthError> {
    if params.len() != types.len() {
        return Err(adapter(format!(
            "statement expects {} parameters but {} were given",
            types.len(),
            params.len()
        )));
    }
    params
        .iter()
        .zip(types)
        .map(|(param, ty)| bind(param, ty))
        .collect()
}

/// Converts the parameters of a statement for their declared schema field types: the types an
/// unprepared (`query_typed`) statement announces to the server.
pub(crate) fn bind_declared(
    params: &[SqlParam],
) -> Result<(Vec<PgParam>, Vec<Type>), RustAuthError> {
    let types = params.iter().map(declared_type).collect::<Vec<_>>();
    let values = bind_all(params, &types)?;
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
/// "error serializing parameter N" with both type names.
pub(crate) fn bind(param: &SqlParam, ty: &Type) -> Result<PgParam, RustAuthError> {
    Ok(match &param.value {
        DbValue::Null => PgParam::Null,
        DbValue::String(value) if *ty == Type::UUID => PgParam::Uuid(parse_uuid(value)?),
        DbValue::String(value) => PgParam::Text(value.clone()),
        DbValue::Number(value) => bind_number(*value, ty)?,
        DbValue::Boolean(value) => PgParam::Bool(*value),
        DbValue::Timestamp(value) => bind_timestamp(*value, ty),
        DbValue::Json(value) => PgParam::Json(value.clone()),
        DbValue::StringArray(values) if *ty == Type::UUID_ARRAY => PgParam::UuidArray(
            values
                .iter()
                .map(|value| parse_uuid(value))
                .collect::<Result<_, _>>()?,
        ),
        DbValue::StringArray(values) => PgParam::TextArray(values.clone()),
        DbValue::NumberArray(values) => bind_number_array(values, ty)?,
        DbValue::Record(_) | DbValue::RecordArray(_) => {
            return Err(adapter(
                "joined records (Record/RecordArray) cannot be bound as SQL parameters",
            ))
        }
    })
}

fn parse_uuid(value: &str) -> Result<uuid::Uuid, RustAuthError> {
    uuid::Uuid::parse_str(value)
        .map_err(|error| adapter(format!("invalid UUID parameter `{value}`: {error}")))
}

fn bind_number(value: i64, ty: &Type) -> Result<PgParam, RustAuthError> {
    let out_of_range = || {
        adapter(format!(
            "number {value} does not fit the {} column",
            ty.name()
        ))
    };
    Ok(match *ty {
        Type::INT4 => PgParam::Int4(i32::try_from(value).map_err(|_| out_of_range())?),
        Type::INT2 => PgParam::Int2(i16::try_from(value).map_err(|_| out_of_range())?),
        _ => PgParam::Int8(value),
    })
}

fn bind_number_array(values: &[i64], ty: &Type) -> Result<PgParam, RustAuthError> {
    let out_of_range = |value: &i64| {
        adapter(format!(
            "number {value} does not fit the {} column",
            ty.name()
        ))
    };
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

fn bind_timestamp(value: OffsetDateTime, ty: &Type) -> PgParam {
    let utc = value.to_offset(UtcOffset::UTC);
    match *ty {
        Type::TIMESTAMP => PgParam::Timestamp(PrimitiveDateTime::new(utc.date(), utc.time())),
        Type::DATE => PgParam::Date(utc.date()),
        _ => PgParam::TimestampTz(value),
    }
}

/// Borrows a parameter list the way tokio-postgres' query methods take it.
pub(crate) fn param_refs(values: &[PgParam]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| value as &(dyn ToSql + Sync))
        .collect()
}

/// Reads column `index` of `row` as a `DbValue`, by the column's real Postgres type.
pub(crate) fn decode(row: &Row, index: usize, field: &DbField) -> Result<DbValue, RustAuthError> {
    let Some(column) = row.columns().get(index) else {
        return Err(adapter(format!(
            "result row has no column {index} for field `{}`",
            field.name
        )));
    };
    let ty = column.type_().clone();
    let value = match ty {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get::<String>(row, index)?.map(DbValue::String)
        }
        Type::UUID => get::<uuid::Uuid>(row, index)?.map(|id| DbValue::String(id.to_string())),
        Type::INT8 => get::<i64>(row, index)?.map(DbValue::Number),
        Type::INT4 => get::<i32>(row, index)?.map(|value| DbValue::Number(value.into())),
        Type::INT2 => get::<i16>(row, index)?.map(|value| DbValue::Number(value.into())),
        Type::BOOL => get::<bool>(row, index)?.map(DbValue::Boolean),
        Type::TIMESTAMPTZ => get::<OffsetDateTime>(row, index)?.map(DbValue::Timestamp),
        Type::TIMESTAMP => get::<PrimitiveDateTime>(row, index)?
            .map(|value| DbValue::Timestamp(value.assume_utc())),
        Type::DATE => get::<Date>(row, index)?.map(|value| {
            DbValue::Timestamp(PrimitiveDateTime::new(value, Time::MIDNIGHT).assume_utc())
        }),
        Type::JSON | Type::JSONB => get::<serde_json::Value>(row, index)?.map(DbValue::Json),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            get::<Vec<String>>(row, index)?.map(DbValue::StringArray)
        }
        Type::UUID_ARRAY => get::<Vec<uuid::Uuid>>(row, index)?
            .map(|values| DbValue::StringArray(values.iter().map(ToString::to_string).collect())),
        Type::INT8_ARRAY => get::<Vec<i64>>(row, index)?.map(DbValue::NumberArray),
        Type::INT4_ARRAY => get::<Vec<i32>>(row, index)?
            .map(|values| DbValue::NumberArray(values.into_iter().map(i64::from).collect())),
        Type::INT2_ARRAY => get::<Vec<i16>>(row, index)?
            .map(|values| DbValue::NumberArray(values.into_iter().map(i64::from).collect())),
        other => {
            return Err(adapter(format!(
                "column `{}` (field `{}`) has Postgres type `{}`, which this adapter cannot read",
                column.name(),
                field.name,
                other.name()
            )))
        }
    };
    Ok(value.unwrap_or(DbValue::Null))
}

/// Reads the column named `name` of `row` as a `DbValue`.
pub(crate) fn decode_named(
    row: &Row,
    name: &str,
    field: &DbField,
) -> Result<DbValue, RustAuthError> {
    let index = row
        .columns()
        .iter()
        .position(|column| column.name() == name)
        .ok_or_else(|| adapter(format!("result row has no column `{name}`")))?;
    decode(row, index, field)
}

/// Reads a whole record: column `i` of the row is the `i`-th selected field.
pub(crate) fn decode_record<'a, I>(row: &Row, fields: I) -> Result<DbRecord, RustAuthError>
where
    I: IntoIterator<Item = (&'a str, &'a DbField)>,
{
    fields
        .into_iter()
        .enumerate()
        .map(|(index, (logical_name, field))| {
            decode(row, index, field).map(|value| (logical_name.to_owned(), value))
        })
        .collect()
}

fn get<'a, T>(row: &'a Row, index: usize) -> Result<Option<T>, RustAuthError>
where
    T: postgres_types::FromSql<'a>,
{
    row.try_get::<_, Option<T>>(index).map_err(postgres_error)
}
