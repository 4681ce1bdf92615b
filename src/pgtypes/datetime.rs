//! Date, timestamp and interval text as PostgreSQL reads and writes it.
//!
//! Input covers the forms clients send (`2024-01-01 12:00`, `2024-01-01T12:00:00.5+05:30`,
//! `epoch`; intervals as `1 day 02:03:04`, `1.5 hours`, `@ 1 day ago`, ISO 8601 `P1DT2H`);
//! anything else is an error, never a guess. `infinity` has no Arrow value and is refused.
//! Output of intervals is PostgreSQL's `postgres` style. Callers: the literal rewrites of
//! `sql::rewrite`, the casts and functions of `sql::functions::time`.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime};

use super::zone::Zone;

/// Why date/time text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateTimeError {
    #[error("invalid input syntax for type {0}: \"{1}\"")]
    Syntax(&'static str, String),
    #[error("date/time field value out of range: \"{0}\"")]
    Range(String),
    #[error("date/time value \"{0}\" is not supported by deltagate")]
    Unsupported(String),
}

/// A timestamp read from text: its local date and time, and the zone it named, if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stamp {
    pub local: NaiveDateTime,
    pub zone: Option<Zone>,
}

impl Stamp {
    /// The UTC time, reading a stamp without a zone in `session`.
    pub fn utc(&self, session: &Zone) -> NaiveDateTime {
        self.zone.as_ref().unwrap_or(session).to_utc(&self.local)
    }
}

/// Reads `timestamp`, `timestamptz` or `date` text (`what` names the type in errors).
///
/// # Errors
/// Text that is not a date/time, fields out of range, `infinity`.
pub fn parse_stamp(text: &str, what: &'static str) -> Result<Stamp, DateTimeError> {
    let syntax = || DateTimeError::Syntax(what, text.to_string());
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    match lower.as_str() {
        "epoch" => {
            return Ok(Stamp {
                local: DateTime::UNIX_EPOCH.naive_utc(),
                zone: Some(Zone::Named(chrono_tz::UTC)),
            });
        }
        "infinity" | "+infinity" | "-infinity" | "now" | "today" | "tomorrow" | "yesterday" => {
            return Err(DateTimeError::Unsupported(text.to_string()));
        }
        _ => {}
    }
    // Date: Y-M-D.
    let ((year, month, day), rest) = split_date(trimmed).ok_or_else(syntax)?;
    let date = NaiveDate::from_ymd_opt(year, month, day)
        .ok_or_else(|| DateTimeError::Range(text.to_string()))?;
    let rest = rest.strip_prefix(['T', 't']).unwrap_or(rest).trim_start();
    let (time_text, zone_text) =
        match rest.find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.')) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
    let mut local = date.and_time(NaiveTime::MIN);
    if !time_text.is_empty() {
        local += parse_clock(time_text)
            .ok_or_else(syntax)?
            .map_err(|()| DateTimeError::Range(text.to_string()))?;
    }
    let zone = if zone_text.is_empty() {
        None
    } else {
        // Offsets in timestamp text are ISO 8601 (east positive), as the setting reads them.
        Some(Zone::setting(zone_text).ok_or_else(syntax)?)
    };
    Ok(Stamp { local, zone })
}

/// `Y-M-D` at the start of `text`, and what follows it.
fn split_date(text: &str) -> Option<((i32, u32, u32), &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(text.len());
    let mut parts = text[..end].splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    Some(((year, month, day), &text[end..]))
}

/// `H:MM[:SS[.ffffff]]` as a duration since midnight: `None` for bad syntax, `Some(Err)` for
/// fields out of range. `24:00:00` is allowed, as in PostgreSQL.
fn parse_clock(text: &str) -> Option<Result<Duration, ()>> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let hour: i64 = digits(parts[0])?;
    let minute: i64 = digits(parts[1])?;
    let micros = match parts.get(2) {
        Some(s) => seconds_micros(s)?,
        None => 0,
    };
    if hour > 24 || minute > 59 || micros > 60_000_000 || hour == 24 && (minute > 0 || micros > 0) {
        return Some(Err(()));
    }
    Some(Ok(Duration::microseconds(
        (hour * 60 + minute) * 60_000_000 + micros,
    )))
}

fn digits(text: &str) -> Option<i64> {
    (!text.is_empty() && text.len() <= 2 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `SS[.fff]` in microseconds, rounding beyond six digits as PostgreSQL does.
fn seconds_micros(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole = digits(whole)?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: f64 = format!("0.{fraction}0").parse().ok()?;
    Some(whole * 1_000_000 + (value * 1e6).round() as i64)
}

/// A PostgreSQL interval: months, days and microseconds, kept apart as PostgreSQL keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

const MICROS_PER_HOUR: f64 = 3_600_000_000.0;

impl Interval {
    /// Adds `amount` of `unit`, spilling fractions down as PostgreSQL does (a month is 30
    /// days, a day 24 hours).
    fn add(&mut self, amount: f64, unit: Unit) {
        let spill_months = |this: &mut Interval, months: f64| {
            let whole = months.trunc();
            this.months += whole as i32;
            let days = (months - whole) * 30.0;
            let whole_days = days.trunc();
            this.days += whole_days as i32;
            this.micros += ((days - whole_days) * 24.0 * MICROS_PER_HOUR).round() as i64;
        };
        match unit {
            Unit::Months(per) => spill_months(self, amount * per),
            Unit::Days(per) => {
                let days = amount * per;
                let whole = days.trunc();
                self.days += whole as i32;
                self.micros += ((days - whole) * 24.0 * MICROS_PER_HOUR).round() as i64;
            }
            Unit::Micros(per) => self.micros += (amount * per).round() as i64,
        }
    }

    fn negate(self) -> Interval {
        Interval {
            months: -self.months,
            days: -self.days,
            micros: -self.micros,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Months(f64),
    Days(f64),
    Micros(f64),
}

fn unit(word: &str) -> Option<Unit> {
    Some(match word {
        "millennium" | "millennia" | "millenniums" | "mil" | "mils" => Unit::Months(12_000.0),
        "century" | "centuries" | "c" | "cent" => Unit::Months(1200.0),
        "decade" | "decades" | "dec" | "decs" => Unit::Months(120.0),
        "year" | "years" | "y" | "yr" | "yrs" => Unit::Months(12.0),
        "month" | "months" | "mon" | "mons" => Unit::Months(1.0),
        "week" | "weeks" | "w" => Unit::Days(7.0),
        "day" | "days" | "d" => Unit::Days(1.0),
        "hour" | "hours" | "h" | "hr" | "hrs" => Unit::Micros(MICROS_PER_HOUR),
        "minute" | "minutes" | "m" | "min" | "mins" => Unit::Micros(60e6),
        "second" | "seconds" | "s" | "sec" | "secs" => Unit::Micros(1e6),
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => Unit::Micros(1e3),
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => Unit::Micros(1.0),
        _ => return None,
    })
}

/// Reads interval text in PostgreSQL's input forms.
///
/// # Errors
/// Text that is not an interval.
pub fn parse_interval(text: &str) -> Result<Interval, DateTimeError> {
    let syntax = || DateTimeError::Syntax("interval", text.to_string());
    let lower = text.trim().to_ascii_lowercase();
    if let Some(iso) = lower.strip_prefix('p') {
        return parse_iso_interval(iso).ok_or_else(syntax);
    }
    let mut body = lower.strip_prefix('@').unwrap_or(&lower).trim();
    let ago = body.ends_with(" ago") || body == "ago";
    if ago {
        body = body.trim_end_matches("ago").trim_end();
    }
    // Split `90min` into `90 min`, keeping clock times (`02:03:04`) whole.
    let mut tokens: Vec<String> = Vec::new();
    for word in body.split_whitespace() {
        let split = word
            .find(|c: char| c.is_ascii_alphabetic())
            .filter(|&i| i > 0 && !word.contains(':'));
        match split {
            Some(i) => {
                tokens.push(word[..i].to_string());
                tokens.push(word[i..].to_string());
            }
            None => tokens.push(word.to_string()),
        }
    }
    if tokens.is_empty() {
        return Err(syntax());
    }
    let mut value = Interval::default();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token.contains(':') {
            let (sign, clock) = match token.as_bytes()[0] {
                b'-' => (-1, &token[1..]),
                b'+' => (1, &token[1..]),
                _ => (1, &token[..]),
            };
            value.micros += sign * interval_clock(clock).ok_or_else(syntax)?;
            i += 1;
            continue;
        }
        let amount: f64 = token.parse().map_err(|_| syntax())?;
        if !amount.is_finite() {
            return Err(syntax());
        }
        match tokens.get(i + 1).and_then(|w| unit(w)) {
            Some(u) => {
                value.add(amount, u);
                i += 2;
            }
            // A bare number is seconds.
            None if i + 1 == tokens.len() => {
                value.add(amount, Unit::Micros(1e6));
                i += 1;
            }
            None => return Err(syntax()),
        }
    }
    Ok(if ago { value.negate() } else { value })
}

/// `H:MM[:SS[.f]]` of any number of hours, in microseconds.
fn interval_clock(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) || !parts[0].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = parts[0].parse().ok()?;
    let minutes = digits(parts[1])?;
    let micros = match parts.get(2) {
        Some(s) => seconds_micros(s)?,
        None => 0,
    };
    Some((hours * 60 + minutes) * 60_000_000 + micros)
}

/// ISO 8601 `P…` after the `P`: `1Y2M3W4DT5H6M7.5S`.
fn parse_iso_interval(text: &str) -> Option<Interval> {
    let mut value = Interval::default();
    let mut in_time = false;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        match c {
            't' if number.is_empty() && !in_time => in_time = true,
            '0'..='9' | '.' | '-' => number.push(c),
            _ => {
                let amount: f64 = number.parse().ok()?;
                number.clear();
                let u = match (c, in_time) {
                    ('y', false) => Unit::Months(12.0),
                    ('m', false) => Unit::Months(1.0),
                    ('w', false) => Unit::Days(7.0),
                    ('d', false) => Unit::Days(1.0),
                    ('h', true) => Unit::Micros(MICROS_PER_HOUR),
                    ('m', true) => Unit::Micros(60e6),
                    ('s', true) => Unit::Micros(1e6),
                    _ => return None,
                };
                value.add(amount, u);
                any = true;
            }
        }
    }
    (any && number.is_empty()).then_some(value)
}

/// An interval as PostgreSQL's `postgres` style writes it: `1 year 2 mons -3 days 04:05:06.5`.
pub fn interval_text(value: Interval) -> String {
    let mut parts = Vec::new();
    let plural = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let (years, months) = (value.months / 12, value.months % 12);
    if years != 0 {
        parts.push(plural(years.into(), "year", "years"));
    }
    if months != 0 {
        parts.push(plural(months.into(), "mon", "mons"));
    }
    if value.days != 0 {
        parts.push(plural(value.days.into(), "day", "days"));
    }
    if value.micros != 0 || parts.is_empty() {
        let negative = value.micros < 0;
        let micros = value.micros.unsigned_abs();
        let seconds = micros / 1_000_000;
        let fraction = micros % 1_000_000;
        let fraction = if fraction == 0 {
            String::new()
        } else {
            format!(".{fraction:06}").trim_end_matches('0').to_string()
        };
        // A time after negative fields carries an explicit sign.
        let sign = if negative {
            "-"
        } else if value.months < 0 || value.days < 0 {
            "+"
        } else {
            ""
        };
        parts.push(format!(
            "{sign}{:02}:{:02}:{:02}{fraction}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        ));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        interval_text(parse_interval(text).unwrap())
    }

    #[test]
    fn intervals_read_and_write_as_postgres() {
        // PostgreSQL 15's answers.
        for (input, output) in [
            ("1 day 02:03:04", "1 day 02:03:04"),
            ("02:03:04", "02:03:04"),
            ("1 year 2 mons", "1 year 2 mons"),
            ("P1DT2H", "1 day 02:00:00"),
            ("-1 day", "-1 days"),
            ("1.5 hours", "01:30:00"),
            ("@ 1 day ago", "-1 days"),
            ("1 day -02:00", "1 day -02:00:00"),
            ("3 weeks", "21 days"),
            ("1.5 years", "1 year 6 mons"),
            ("90 minutes", "01:30:00"),
            ("-1 day +02:03", "-1 days +02:03:00"),
            ("0", "00:00:00"),
            ("P1Y2M3DT4H5M6.5S", "1 year 2 mons 3 days 04:05:06.5"),
            ("-02:03:04.25", "-02:03:04.25"),
            ("100:00:00", "100:00:00"),
            ("PT1H30M", "01:30:00"),
        ] {
            assert_eq!(round_trip(input), output, "{input}");
        }
        assert!(parse_interval("xyz").is_err());
        assert!(parse_interval("1 fortnight").is_err());
    }

    #[test]
    fn timestamps_read_as_postgres_reads_them() {
        let utc = Zone::Named(chrono_tz::UTC);
        let at = |t: &str| parse_stamp(t, "timestamp").unwrap();
        assert_eq!(
            at("2024-01-01 12:00").local.to_string(),
            "2024-01-01 12:00:00"
        );
        assert_eq!(
            at("2024-01-01T12:00").local.to_string(),
            "2024-01-01 12:00:00"
        );
        assert_eq!(at("2024-01-01").local.to_string(), "2024-01-01 00:00:00");
        assert_eq!(
            at("2024-01-01 12:00:00.5+05:30").utc(&utc).to_string(),
            "2024-01-01 06:30:00.500"
        );
        assert_eq!(at("epoch").utc(&utc).to_string(), "1970-01-01 00:00:00");
        assert!(matches!(
            parse_stamp("2024-13-01", "timestamp"),
            Err(DateTimeError::Range(_))
        ));
        assert!(matches!(
            parse_stamp("2024-01-01 25:00", "timestamp"),
            Err(DateTimeError::Range(_))
        ));
        assert!(matches!(
            parse_stamp("infinity", "timestamp"),
            Err(DateTimeError::Unsupported(_))
        ));
        assert!(parse_stamp("allballs", "timestamp").is_err());
    }
}
