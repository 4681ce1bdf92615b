//! Date/time spellings of PostgreSQL, in DataFusion's terms.
//!
//! - `ts AT TIME ZONE zone` becomes `pg_at_time_zone(ts, zone)` (DataFusion would only relabel
//!   the zone, returning a `timestamptz` unchanged), and `EXTRACT(f FROM x)` becomes
//!   `date_part('f', x)`, so both reach `sql::functions::time`, which knows the session's zone.
//! - Date, timestamp and interval literals (`timestamp '2024-01-01 12:00'`,
//!   `'1 day 02:03:04'::interval`) are read as PostgreSQL reads them (`pgtypes::datetime`) and
//!   written in a form Arrow's parser takes exactly; text PostgreSQL would refuse is left for
//!   DataFusion to refuse, except `infinity` and friends, which are refused here.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Interval, ObjectName, TimezoneInfo, TypedString, Value, ValueWithSpan,
    VisitMut, VisitorMut,
};

use crate::pgtypes::datetime::{DateTimeError, parse_interval, parse_stamp};
use crate::pgtypes::zone::offset_text;

use super::parse_expr;

/// Applies the rewrites of the module comment; the first literal PostgreSQL would refuse is
/// the error.
///
/// # Errors
/// A date/time literal deltagate cannot represent (`infinity`), or out of range.
pub fn datetime_spellings(
    statement: &mut datafusion::sql::sqlparser::ast::Statement,
) -> Result<(), DateTimeError> {
    struct Rewrite(Option<DateTimeError>);
    impl VisitorMut for Rewrite {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            match expr {
                Expr::AtTimeZone {
                    timestamp,
                    time_zone,
                } => {
                    if let Ok(call) =
                        parse_expr(&format!("pg_at_time_zone({timestamp}, {time_zone})"))
                    {
                        *expr = call;
                    }
                }
                Expr::Extract {
                    field, expr: inner, ..
                } => {
                    let field = field.to_string().to_lowercase().replace('\'', "''");
                    if let Ok(call) = parse_expr(&format!("date_part('{field}', {inner})")) {
                        *expr = call;
                    }
                }
                Expr::TypedString(TypedString {
                    data_type, value, ..
                }) => {
                    if let Err(e) = literal(data_type, value) {
                        self.0 = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                Expr::Cast {
                    expr: inner,
                    data_type,
                    ..
                } => {
                    if let Expr::Value(value) = inner.as_mut()
                        && let Err(e) = literal(data_type, value)
                    {
                        self.0 = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                Expr::Interval(Interval {
                    value,
                    leading_field: None,
                    last_field: None,
                    ..
                }) => {
                    if let Expr::Value(value) = value.as_mut()
                        && let Err(e) = literal(&interval_type(), value)
                    {
                        self.0 = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut rewrite = Rewrite(None);
    let _ = VisitMut::visit(statement, &mut rewrite);
    rewrite.0.map_or(Ok(()), Err)
}

fn interval_type() -> DataType {
    DataType::Interval {
        fields: None,
        precision: None,
    }
}

/// Rewrites a string literal of a date/time type in place.
fn literal(data_type: &DataType, value: &mut ValueWithSpan) -> Result<(), DateTimeError> {
    let Value::SingleQuotedString(text) = &value.value else {
        return Ok(());
    };
    let custom = |name: &ObjectName| name.to_string().to_ascii_lowercase();
    let rewritten = match data_type {
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            stamp_text(text, "timestamp with time zone", true)?
        }
        DataType::Custom(name, _) if custom(name) == "timestamptz" => {
            stamp_text(text, "timestamp with time zone", true)?
        }
        DataType::Timestamp(_, _) => stamp_text(text, "timestamp", false)?,
        DataType::Date => {
            let stamp = parse_stamp(text, "date")?;
            stamp.local.date().format("%Y-%m-%d").to_string()
        }
        DataType::Interval { fields: None, .. } => arrow_interval(text)?,
        _ => return Ok(()),
    };
    value.value = Value::SingleQuotedString(rewritten);
    Ok(())
}

/// A timestamp's text in the form Arrow parses: wall clock to the microsecond, with the
/// offset it gave for a `timestamptz` (a `timestamp` ignores a zone, as in PostgreSQL); a
/// `timestamptz` without one is read in the session's zone by DataFusion.
fn stamp_text(text: &str, what: &'static str, with_zone: bool) -> Result<String, DateTimeError> {
    let stamp = parse_stamp(text, what)?;
    let mut out = stamp.local.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    if with_zone && let Some(zone) = stamp.zone {
        let utc = zone.to_utc(&stamp.local);
        let seconds = zone.offset(&utc).local_minus_utc();
        let mut offset = offset_text(seconds, true);
        if !offset.contains(':') {
            offset.push_str(":00");
        }
        out.push_str(&offset);
    }
    Ok(out)
}

/// An interval's text in the units Arrow's parser takes, which keep its months, days and
/// microseconds apart as PostgreSQL does.
fn arrow_interval(text: &str) -> Result<String, DateTimeError> {
    let value = parse_interval(text)?;
    Ok(format!(
        "{} months {} days {} microseconds",
        value.months, value.days, value.micros
    ))
}
