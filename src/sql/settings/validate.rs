//! Validation of parameter values: what deltagate cannot honour is refused rather than
//! silently ignored (a non-ISO `DateStyle`, an encoding other than UTF8), and values are
//! normalised to PostgreSQL's spelling (`on`/`off`, durations in milliseconds).
//!
//! Used by [`Settings`](super::Settings) whenever a value is set, at startup or by `SET`.

use super::{Result, SqlError};

fn invalid(name: &str, value: &str) -> SqlError {
    SqlError::InvalidParameterValue(format!(
        "invalid value for parameter \"{name}\": \"{value}\""
    ))
}

/// Why a transaction cannot run at `level` (`repeatable read` or `serializable`).
///
/// Every deltagate transaction is READ COMMITTED: each statement reads the newest committed
/// state, no snapshot is kept for the transaction and no row is locked. Accepting a stronger
/// level would let an application believe it is protected from anomalies it is not protected
/// from, so the level is refused wherever it can be asked for (`BEGIN`, `START TRANSACTION`,
/// `SET TRANSACTION`, `SET SESSION CHARACTERISTICS`, `default_transaction_isolation`, and the
/// startup packet). `READ ONLY` does not help: a read-only block still sees a new state per
/// statement, so pg_dump's `REPEATABLE READ, READ ONLY` is refused too.
pub fn unsupported_isolation(level: &str) -> SqlError {
    SqlError::Unsupported(format!(
        "transaction isolation level {} is not supported: deltagate runs every transaction \
         at READ COMMITTED (no transaction snapshot, no row locks)",
        level.to_ascii_uppercase()
    ))
}

/// The value `name` takes when set to `value`, or why it cannot.
pub(super) fn validate(name: &str, value: &str) -> Result<String> {
    let trimmed = value.trim();
    let bool_value = || match trimmed.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Ok("on".to_string()),
        "off" | "false" | "no" | "0" | "f" | "n" => Ok("off".to_string()),
        _ => Err(invalid(name, value)),
    };
    match name {
        // Like PostgreSQL, compare names with everything but letters and digits removed
        // (asyncpg sends `'utf-8'`, quotes included).
        "client_encoding" => match trimmed
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_uppercase()
            .as_str()
        {
            "UTF8" | "UNICODE" => Ok("UTF8".into()),
            // SQL_ASCII clients receive UTF-8 bytes unchanged, as PostgreSQL would send them.
            "SQLASCII" => Ok("SQL_ASCII".into()),
            _ => Err(SqlError::Unsupported(format!(
                "conversion between {trimmed} and UTF8 is not supported"
            ))),
        },
        "DateStyle" => {
            let upper = trimmed.to_ascii_uppercase();
            let parts: Vec<&str> = upper.split(',').map(str::trim).collect();
            if parts
                .iter()
                .any(|p| matches!(*p, "SQL" | "POSTGRES" | "GERMAN"))
            {
                Err(SqlError::Unsupported(
                    "deltagate supports only the ISO date style".into(),
                ))
            } else {
                let order = parts
                    .iter()
                    .find(|p| matches!(**p, "MDY" | "DMY" | "YMD" | "US" | "EURO" | "EUROPEAN"))
                    .map(|p| match *p {
                        "US" => "MDY",
                        "EURO" | "EUROPEAN" => "DMY",
                        other => other,
                    })
                    .unwrap_or("MDY");
                Ok(format!("ISO, {order}"))
            }
        }
        "IntervalStyle" => match trimmed.to_ascii_lowercase().as_str() {
            "postgres" => Ok("postgres".into()),
            _ => Err(SqlError::Unsupported(
                "deltagate supports only the postgres interval style".into(),
            )),
        },
        "TimeZone" => {
            let tz = trimmed.trim_matches('\'');
            if tz.eq_ignore_ascii_case("utc") || tz.eq_ignore_ascii_case("gmt") {
                return Ok("UTC".into());
            }
            if tz.eq_ignore_ascii_case("local") || tz.eq_ignore_ascii_case("default") {
                return Ok("UTC".into());
            }
            // Stored as a name Arrow knows (canonical case, offsets as `+02:00`): it labels
            // timestamps and is what DataFusion reads as the session's zone.
            crate::pgtypes::zone::Zone::setting(tz)
                .map(|zone| zone.label())
                .ok_or_else(|| invalid(name, value))
        }
        "deltagate.historian_duplicates" => match trimmed.to_ascii_lowercase().as_str() {
            "skip" => Ok("skip".into()),
            "error" => Ok("error".into()),
            _ => Err(invalid(name, value)),
        },
        "extra_float_digits" => match trimmed.parse::<i32>() {
            Ok(n) if (-15..=3).contains(&n) => Ok(n.to_string()),
            _ => Err(invalid(name, value)),
        },
        "bytea_output" => match trimmed.to_ascii_lowercase().as_str() {
            "hex" => Ok("hex".into()),
            _ => Err(SqlError::Unsupported(
                "deltagate supports only bytea_output = hex".into(),
            )),
        },
        "standard_conforming_strings" => match bool_value()?.as_str() {
            "on" => Ok("on".into()),
            _ => Err(SqlError::Unsupported(
                "deltagate supports only standard_conforming_strings = on".into(),
            )),
        },
        "default_transaction_read_only"
        | "transaction_read_only"
        | "row_security"
        | "enable_indexscan" => bool_value(),
        "transaction_isolation" | "default_transaction_isolation" => {
            let lowered = trimmed.trim_matches('\'').to_ascii_lowercase();
            match lowered.as_str() {
                "read committed" | "read uncommitted" => Ok(lowered),
                "repeatable read" | "serializable" => Err(unsupported_isolation(&lowered)),
                _ => Err(invalid(name, value)),
            }
        }
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
            parse_duration_ms(trimmed)
                .map(|ms| ms.to_string())
                .ok_or_else(|| invalid(name, value))
        }
        _ => Ok(trimmed.to_string()),
    }
}

/// Parses a PostgreSQL time setting (`5000`, `5s`, `1min`) to milliseconds.
pub(super) fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim().trim_matches('\'');
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        "us" => 0.001,
        _ => return None,
    };
    Some((number * factor) as u64)
}
