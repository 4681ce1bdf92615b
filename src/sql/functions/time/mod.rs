//! PostgreSQL's date/time functions where DataFusion's differ: `AT TIME ZONE` (rewritten to
//! `pg_at_time_zone`) and `timezone(zone, ts)`, `date_trunc` (two and three arguments),
//! `date_part`/`extract`, `to_char`, `to_timestamp(text, text)` and `to_date`.
//!
//! Invariant: `timestamp` and `timestamptz` are told apart by their Arrow field, never by
//! their values: a timestamp with an Arrow zone is a `timestamptz` unless its field records a
//! stored `timestamp` column (those are UTC-labelled in Arrow, see `pgtypes`). `timestamptz`
//! values are shown, truncated and taken apart in the session's `TimeZone`, which these
//! functions read from DataFusion's options at execution (`Session::sync_time_zone` keeps it
//! equal to the setting). Text and dates given where PostgreSQL expects a `timestamptz` are
//! read as one, in the session's zone. Template patterns are in `format`.

mod format;

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::scalar::ScalarValue;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};

use super::strings;
use crate::pgtypes::datetime::{DateTimeError, Stamp, parse_stamp};
use crate::pgtypes::zone::Zone;
use crate::pgtypes::{PgType, UTC};
use crate::sql::SqlError;

use format::Template;

/// What a function does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `pg_at_time_zone(ts, zone)`, the rewrite of `ts AT TIME ZONE zone`.
    AtTimeZone,
    /// `timezone(zone, ts)`.
    Timezone,
    DateTrunc,
    DatePart,
    ToChar,
    ToDate,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TimeUdf {
    kind: Kind,
    name: &'static str,
    signature: Signature,
    /// DataFusion's `date_part`, which `date_part` calls once its argument is in the right zone.
    inner: Option<Arc<ScalarUDF>>,
}

/// How an argument reads as a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamped {
    /// `timestamptz`: raw values are UTC.
    Tz,
    /// `timestamp`: raw values are the wall clock.
    Naive,
    /// `date`, text or NULL: read as a `timestamptz` in the session's zone.
    Other,
}

fn stamped(field: &Field) -> Stamped {
    match field.data_type() {
        DataType::Timestamp(_, Some(_)) if PgType::declared(field) != Some(PgType::Timestamp) => {
            Stamped::Tz
        }
        DataType::Timestamp(_, _) => Stamped::Naive,
        _ => Stamped::Other,
    }
}

fn sql(e: impl Into<SqlError>) -> DataFusionError {
    DataFusionError::External(Box::new(e.into()))
}

fn tz_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

fn naive_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

/// The session's zone, from DataFusion's options.
fn session_zone(config: &ConfigOptions) -> Zone {
    config
        .execution
        .time_zone
        .as_deref()
        .and_then(Zone::setting)
        .unwrap_or(Zone::Named(chrono_tz::UTC))
}

fn at_micros(micros: i64) -> DfResult<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc())
        .ok_or_else(|| sql(DateTimeError::Range(micros.to_string())))
}

fn micros_of(t: &NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// An argument's values as microseconds: UTC for `timestamptz` (and for dates and text, read in
/// `zone`), wall clock for `timestamp`.
fn stamps(value: &ArrayRef, how: Stamped, zone: &Zone) -> DfResult<Vec<Option<i64>>> {
    Ok(match value.data_type() {
        DataType::Timestamp(_, tz) => {
            let array = cast(
                value,
                &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            )?;
            let array = downcast::<TimestampMicrosecondArray>(&array)?;
            array.iter().collect()
        }
        DataType::Date32 => {
            let days = downcast::<Date32Array>(value)?;
            days.iter()
                .map(|d| {
                    d.map(|d| {
                        let local = DateTime::UNIX_EPOCH.naive_utc() + Duration::days(d.into());
                        micros_of(&if how == Stamped::Naive {
                            local
                        } else {
                            zone.to_utc(&local)
                        })
                    })
                })
                .collect()
        }
        DataType::Null => vec![None; value.len()],
        _ => {
            let text = cast(value, &DataType::Utf8)?;
            let text = downcast::<StringArray>(&text)?;
            text.iter()
                .map(|t| {
                    t.map(|t| {
                        let stamp = parse_stamp(t, "timestamp with time zone").map_err(sql)?;
                        Ok(micros_of(&stamp.utc(zone)))
                    })
                    .transpose()
                })
                .collect::<DfResult<_>>()?
        }
    })
}

fn downcast<T: 'static>(array: &ArrayRef) -> DfResult<&T> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| DataFusionError::Internal("unexpected array type".into()))
}

/// A zone argument, read as `AT TIME ZONE` reads it.
fn zone_arg(text: &str) -> DfResult<Zone> {
    Zone::parse(text).ok_or_else(|| {
        sql(SqlError::InvalidParameterValue(format!(
            "time zone \"{text}\" not recognized"
        )))
    })
}

fn output(values: Vec<Option<i64>>, data_type: &DataType, scalar: bool) -> DfResult<ColumnarValue> {
    let array: ArrayRef = match data_type {
        DataType::Timestamp(_, tz) => {
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone_opt(tz.clone()))
        }
        _ => {
            return Err(DataFusionError::Internal(
                "timestamp result expected".into(),
            ));
        }
    };
    Ok(if scalar {
        ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
    } else {
        ColumnarValue::Array(array)
    })
}

impl TimeUdf {
    /// The argument that holds the time, and the one that names a zone.
    fn positions(&self, args: usize) -> (usize, Option<usize>) {
        match (self.kind, args) {
            (Kind::AtTimeZone, _) => (0, Some(1)),
            (Kind::Timezone, _) => (1, Some(0)),
            (Kind::DateTrunc, 3) => (1, Some(2)),
            (Kind::DateTrunc | Kind::DatePart, _) => (1, None),
            _ => (0, None),
        }
    }

    fn result_type(&self, fields: &[FieldRef]) -> DataType {
        let (at, zone) = self.positions(fields.len());
        let how = fields.get(at).map_or(Stamped::Other, |f| stamped(f));
        match self.kind {
            Kind::AtTimeZone | Kind::Timezone if how == Stamped::Naive => tz_type(),
            Kind::AtTimeZone | Kind::Timezone => naive_type(),
            Kind::DateTrunc if how == Stamped::Naive && zone.is_none() => naive_type(),
            Kind::DateTrunc => tz_type(),
            Kind::ToChar => DataType::Utf8,
            Kind::ToDate => DataType::Date32,
            Kind::DatePart => DataType::Float64,
        }
    }

    fn shift(&self, args: &ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let (at, zone_at) = self.positions(args.args.len());
        let how = stamped(&args.arg_fields[at]);
        let session = session_zone(&args.config_options);
        let values = stamps(&args.args[at].to_array(rows)?, how, &session)?;
        let zones = match zone_at {
            Some(i) => strings(&args.args[i], rows)?,
            None => vec![None; rows],
        };
        let result_type = args.return_field.data_type().clone();
        let mut out = Vec::with_capacity(values.len());
        let mut cache: Option<(String, Zone)> = None;
        for (value, zone) in values.into_iter().zip(zones) {
            let (Some(value), Some(zone_text)) =
                (value, zone.or_else(|| zone_at.is_none().then(String::new)))
            else {
                out.push(None);
                continue;
            };
            let zone = match &cache {
                Some((text, zone)) if *text == zone_text => *zone,
                _ if zone_at.is_none() => session,
                _ => {
                    let zone = zone_arg(&zone_text)?;
                    cache = Some((zone_text, zone));
                    zone
                }
            };
            let t = at_micros(value)?;
            out.push(Some(micros_of(&match (self.kind, how) {
                (Kind::AtTimeZone | Kind::Timezone, Stamped::Naive) => zone.to_utc(&t),
                (Kind::AtTimeZone | Kind::Timezone, _) => zone.to_local(&t),
                _ => unreachable!("shift is only for zone conversions"),
            })));
        }
        output(out, &result_type, scalar)
    }

    fn date_trunc(&self, args: &ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let (at, zone_at) = self.positions(args.args.len());
        let how = stamped(&args.arg_fields[at]);
        let session = session_zone(&args.config_options);
        let units = strings(&args.args[0], rows)?;
        let values = stamps(&args.args[at].to_array(rows)?, how, &session)?;
        let zones = match zone_at {
            Some(i) => strings(&args.args[i], rows)?,
            None => vec![None; rows],
        };
        let mut out = Vec::with_capacity(rows);
        for ((unit, value), zone) in units.into_iter().zip(values).zip(zones) {
            let (Some(unit), Some(value)) = (unit, value) else {
                out.push(None);
                continue;
            };
            let t = at_micros(value)?;
            let truncated = match (how, zone_at, zone) {
                (_, Some(_), None) => None,
                // A `timestamp` given a zone is first read in the session's zone.
                (Stamped::Naive, Some(_), Some(zone)) => {
                    let zone = zone_arg(&zone)?;
                    let utc = session.to_utc(&t);
                    Some(zone.to_utc(&truncate(&unit, zone.to_local(&utc))?))
                }
                (Stamped::Naive, None, _) => Some(truncate(&unit, t)?),
                (_, _, zone) => {
                    let zone = match zone {
                        Some(z) => zone_arg(&z)?,
                        None => session,
                    };
                    Some(zone.to_utc(&truncate(&unit, zone.to_local(&t))?))
                }
            };
            out.push(truncated.map(|t| micros_of(&t)));
        }
        output(out, args.return_field.data_type(), scalar)
    }

    /// `date_part` of a `timestamptz` in the session's zone; of a stored `timestamp` as the
    /// wall clock it holds; anything else as DataFusion takes it apart.
    fn date_part(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let inner = self
            .inner
            .as_ref()
            .ok_or_else(|| DataFusionError::Internal("date_part without its body".into()))?;
        let mut args = args;
        if let Some(field) = args.arg_fields.get(1).cloned()
            && let DataType::Timestamp(_, _) = field.data_type()
        {
            let target = match stamped(&field) {
                Stamped::Tz => Some(session_zone(&args.config_options).label().into()),
                _ => None,
            };
            let data_type = DataType::Timestamp(TimeUnit::Microsecond, target);
            args.args[1] = match &args.args[1] {
                ColumnarValue::Scalar(s) => ColumnarValue::Scalar(relabel_scalar(s, &data_type)?),
                ColumnarValue::Array(a) => ColumnarValue::Array(relabel(a, &data_type)?),
            };
            args.arg_fields[1] = Arc::new(Field::new(field.name(), data_type, true));
        }
        inner.invoke_with_args(args)
    }

    fn to_char(&self, args: &ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let field = &args.arg_fields[0];
        let how = stamped(field);
        if !matches!(
            field.data_type(),
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Null
        ) {
            return Err(sql(SqlError::Unsupported(format!(
                "to_char of {} is not supported by deltagate",
                PgType::of_field(field)
                    .map_or_else(|| field.data_type().to_string(), |t| t.to_string())
            ))));
        }
        let session = session_zone(&args.config_options);
        let values = stamps(&args.args[0].to_array(rows)?, how, &session)?;
        let templates = strings(&args.args[1], rows)?;
        let mut cache: Option<(String, Template)> = None;
        let mut out = Vec::with_capacity(rows);
        for (value, template) in values.into_iter().zip(templates) {
            let (Some(value), Some(text)) = (value, template) else {
                out.push(None);
                continue;
            };
            if cache.as_ref().is_none_or(|(t, _)| *t != text) {
                cache = Some((text.clone(), Template::parse(&text).map_err(sql)?));
            }
            let template = &cache.as_ref().expect("just filled").1;
            let t = at_micros(value)?;
            out.push(Some(match how {
                // A date is a `timestamp` at midnight here (its zone would show as the
                // session's, as PostgreSQL casts it to `timestamptz`).
                Stamped::Naive => template.format(&t, None),
                _ => template.format(&session.to_local(&t), Some((&session, &t))),
            }));
        }
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        Ok(if all_scalar {
            super::constant_text(out.into_iter().next().flatten())
        } else {
            super::text_result(out)
        })
    }

    fn to_date(&self, args: &ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let out = read_each(args, |parsed| {
            (parsed.local.date() - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default())
                .num_days() as i32
        })?;
        let array: ArrayRef = Arc::new(Date32Array::from(out));
        Ok(ColumnarValue::Array(array))
    }
}

/// `to_timestamp(text, template)`: the text read by the template, as a `timestamptz` (in the
/// session's zone unless the text gives an offset).
pub(super) fn to_timestamp_text(args: &ScalarFunctionArgs) -> DfResult<ColumnarValue> {
    let session = session_zone(&args.config_options);
    let out = read_each(args, |parsed| micros_of(&parsed.utc(&session)))?;
    output(out, &tz_type(), false)
}

/// Reads each row's text (the first argument) by its template (the second), as
/// `to_timestamp` and `to_date` do; NULL where either is NULL.
fn read_each<T>(args: &ScalarFunctionArgs, value: impl Fn(Stamp) -> T) -> DfResult<Vec<Option<T>>> {
    let rows = args.number_rows;
    let texts = strings(&args.args[0], rows)?;
    let templates = strings(&args.args[1], rows)?;
    texts
        .into_iter()
        .zip(templates)
        .map(|pair| match pair {
            (Some(text), Some(template)) => {
                let parsed = Template::parse(&template)
                    .map_err(sql)?
                    .read(&text)
                    .map_err(sql)?;
                Ok(Some(value(parsed)))
            }
            _ => Ok(None),
        })
        .collect()
}

fn relabel(array: &ArrayRef, data_type: &DataType) -> DfResult<ArrayRef> {
    let micros = cast(
        array,
        &DataType::Timestamp(
            TimeUnit::Microsecond,
            match array.data_type() {
                DataType::Timestamp(_, tz) => tz.clone(),
                _ => None,
            },
        ),
    )?;
    let micros = downcast::<TimestampMicrosecondArray>(&micros)?;
    let DataType::Timestamp(_, tz) = data_type else {
        return Err(DataFusionError::Internal("timestamp expected".into()));
    };
    Ok(Arc::new(micros.clone().with_timezone_opt(tz.clone())))
}

fn relabel_scalar(value: &ScalarValue, data_type: &DataType) -> DfResult<ScalarValue> {
    let array = relabel(&value.to_array()?, data_type)?;
    ScalarValue::try_from_array(&array, 0)
}

/// A wall-clock time truncated to `unit`, as PostgreSQL's `date_trunc` does.
fn truncate(unit: &str, t: NaiveDateTime) -> DfResult<NaiveDateTime> {
    let date = t.date();
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or(t);
    let ymd = |y: i32, m: u32| {
        NaiveDate::from_ymd_opt(y, m, 1)
            .map(day)
            .ok_or_else(|| sql(DateTimeError::Range(t.to_string())))
    };
    let micros = i64::from(t.nanosecond() / 1000);
    Ok(match unit.to_ascii_lowercase().as_str() {
        "microseconds" | "microsecond" => t,
        "milliseconds" | "millisecond" => t - Duration::microseconds(micros % 1000),
        "second" | "seconds" => t - Duration::microseconds(micros),
        "minute" | "minutes" => t.with_second(0).unwrap_or(t) - Duration::microseconds(micros),
        "hour" | "hours" => {
            t.with_minute(0).and_then(|t| t.with_second(0)).unwrap_or(t)
                - Duration::microseconds(micros)
        }
        "day" | "days" => day(date),
        "week" | "weeks" => {
            day(date - Duration::days(date.weekday().num_days_from_monday().into()))
        }
        "month" | "months" => ymd(date.year(), date.month())?,
        "quarter" => ymd(date.year(), (date.month() - 1) / 3 * 3 + 1)?,
        "year" | "years" => ymd(date.year(), 1)?,
        "decade" | "decades" => ymd(date.year().div_euclid(10) * 10, 1)?,
        "century" | "centuries" => ymd((date.year() - 1).div_euclid(100) * 100 + 1, 1)?,
        "millennium" | "millennia" => ymd((date.year() - 1).div_euclid(1000) * 1000 + 1, 1)?,
        _ => {
            return Err(sql(SqlError::InvalidParameterValue(format!(
                "unit \"{unit}\" not recognized for type timestamp"
            ))));
        }
    })
}

impl ScalarUDFImpl for TimeUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let ok = match self.kind {
            Kind::AtTimeZone | Kind::Timezone | Kind::ToChar | Kind::ToDate => arg_types.len() == 2,
            Kind::DateTrunc => matches!(arg_types.len(), 2 | 3),
            Kind::DatePart => arg_types.len() == 2,
        };
        if !ok {
            return Err(sql(SqlError::UndefinedFunction(format!(
                "function {}({}) does not exist",
                self.name,
                arg_types
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))));
        }
        // Text of any Arrow flavour is read as Utf8; times keep their type (and field).
        Ok(arg_types
            .iter()
            .map(|t| match t {
                DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
                DataType::Date64 => DataType::Date32,
                other => other.clone(),
            })
            .collect())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Err(DataFusionError::Internal(
            "return_field_from_args is used".into(),
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        if let (Kind::DatePart, Some(inner)) = (self.kind, &self.inner) {
            return inner.return_field_from_args(args);
        }
        Ok(Arc::new(Field::new(
            self.name,
            self.result_type(args.arg_fields),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        match self.kind {
            Kind::AtTimeZone | Kind::Timezone => self.shift(&args),
            Kind::DateTrunc => self.date_trunc(&args),
            Kind::DatePart => self.date_part(args),
            Kind::ToChar => self.to_char(&args),
            Kind::ToDate => self.to_date(&args),
        }
    }
}

/// The functions of this module.
pub(super) fn functions() -> Vec<ScalarUDF> {
    let udf = |kind, name, inner| {
        ScalarUDF::new_from_impl(TimeUdf {
            kind,
            name,
            signature: Signature::user_defined(Volatility::Stable),
            inner,
        })
    };
    vec![
        udf(Kind::AtTimeZone, "pg_at_time_zone", None),
        udf(Kind::Timezone, "timezone", None),
        udf(Kind::DateTrunc, "date_trunc", None),
        udf(
            Kind::DatePart,
            "date_part",
            Some(datafusion::functions::datetime::date_part()),
        ),
        udf(Kind::ToChar, "to_char", None),
        udf(Kind::ToDate, "to_date", None),
    ]
}
