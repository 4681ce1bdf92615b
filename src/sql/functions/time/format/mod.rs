//! PostgreSQL's date/time template patterns (`YYYY-MM-DD HH24:MI:SS`), for `to_char` (writing)
//! and `to_timestamp`/`to_date` (reading).
//!
//! A template is read once into [`Template`]'s nodes: patterns with their `FM` prefix and
//! `TH`/`th` suffix, and literal text (quoted text, `\\"`, and characters that are
//! no pattern, which PostgreSQL copies too). A pattern this module cannot read (`to_timestamp`
//! with `J`, `IYYY`, `TZ`, ...) is an error (0A000), never skipped.

use chrono::{Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, Timelike};

use crate::pgtypes::datetime::{DateTimeError, Stamp};
use crate::pgtypes::zone::{Zone, offset_text};
use crate::sql::SqlError;

mod pattern;
#[cfg(test)]
mod tests;

use pattern::{Case, KEYWORDS, Pattern};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Field {
        pattern: Pattern,
        fill: bool,
        /// `TH` (upper) or `th` suffix.
        ordinal: Option<bool>,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    nodes: Vec<Node>,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const ROMAN: [&str; 12] = [
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII",
];

fn unsupported(what: &str) -> SqlError {
    SqlError::Unsupported(format!(
        "template pattern \"{what}\" is not supported by deltagate"
    ))
}

impl Template {
    /// Reads a template.
    ///
    /// # Errors
    /// Patterns deltagate does not implement.
    pub fn parse(text: &str) -> Result<Template, SqlError> {
        let mut nodes = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('"') {
                // Quoted text; a backslash escapes the next character.
                let mut chars = after.char_indices();
                let mut end = after.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, next)) = chars.next() {
                                literal.push(next);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => literal.push(c),
                    }
                }
                rest = &after[end.min(after.len())..];
                continue;
            }
            // Outside quotes a backslash is literal, except before a double quote.
            if let Some(after) = rest.strip_prefix("\\\"") {
                literal.push('"');
                rest = after;
                continue;
            }
            let mut fill = false;
            let mut body = rest;
            loop {
                // `TM` (translated names) prints C-locale names unpadded, as `FM` does.
                if let Some(after) = ["FM", "fm", "TM", "tm"]
                    .iter()
                    .find_map(|p| body.strip_prefix(p))
                {
                    fill = true;
                    body = after;
                } else if let Some(after) =
                    body.strip_prefix("FX").or_else(|| body.strip_prefix("fx"))
                {
                    body = after;
                } else {
                    break;
                }
            }
            match KEYWORDS.iter().find(|(k, _)| body.starts_with(k)) {
                Some((keyword, pattern)) => {
                    if !literal.is_empty() {
                        nodes.push(Node::Text(std::mem::take(&mut literal)));
                    }
                    body = &body[keyword.len()..];
                    let mut ordinal = None;
                    if let Some(after) = body.strip_prefix("TH") {
                        ordinal = Some(true);
                        body = after;
                    } else if let Some(after) = body.strip_prefix("th") {
                        ordinal = Some(false);
                        body = after;
                    }
                    // PostgreSQL does not implement spell mode and prints the number.
                    if let Some(after) = body.strip_prefix("SP").or_else(|| body.strip_prefix("sp"))
                    {
                        body = after;
                    }
                    nodes.push(Node::Field {
                        pattern: *pattern,
                        fill,
                        ordinal,
                    });
                    rest = body;
                }
                None => {
                    // Not a pattern: copied as PostgreSQL copies it (a lone FM prints nothing).
                    rest = body;
                    if let Some(c) = rest.chars().next() {
                        literal.push(c);
                        rest = &rest[c.len_utf8()..];
                    }
                }
            }
        }
        if !literal.is_empty() {
            nodes.push(Node::Text(literal));
        }
        Ok(Template { nodes })
    }

    /// Writes a wall-clock time; `zone` is the zone and UTC time of a `timestamptz` (its `TZ`
    /// and `OF`), `None` for a `timestamp` (they print nothing).
    pub fn format(&self, t: &NaiveDateTime, zone: Option<(&Zone, &NaiveDateTime)>) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Field {
                    pattern,
                    fill,
                    ordinal,
                } => {
                    let (text, number) = field_text(*pattern, *fill, t, zone);
                    out.push_str(&text);
                    if let (Some(upper), Some(n)) = (ordinal, number) {
                        out.push_str(&ordinal_suffix(n, *upper));
                    }
                }
            }
        }
        out
    }

    /// Reads text by the template (`to_timestamp`, `to_date`), PostgreSQL's lenient way:
    /// separators match any separator, spaces before fields are skipped, missing trailing
    /// fields keep their defaults.
    ///
    /// # Errors
    /// Text that does not fit, fields out of range, patterns deltagate cannot read.
    pub fn read(&self, text: &str) -> Result<Stamp, SqlError> {
        let invalid = |what: String| SqlError::InvalidFormat(what);
        let mut input = text;
        let mut year = 1i32;
        let (mut month, mut day) = (1u32, 1u32);
        let (mut hour, mut minute, mut second, mut micros) = (0u32, 0u32, 0u32, 0i64);
        let mut pm: Option<bool> = None;
        let mut offset: Option<i32> = None;
        let mut offset_minutes = 0i32;
        for (index, node) in self.nodes.iter().enumerate() {
            match node {
                Node::Text(literal) => {
                    for c in literal.chars() {
                        if c.is_whitespace() {
                            input = input.trim_start();
                        } else if let Some(next) = input.chars().next()
                            && (next == c || !next.is_alphanumeric() && !next.is_whitespace())
                        {
                            input = &input[next.len_utf8()..];
                        }
                    }
                }
                Node::Field { pattern, .. } => {
                    input = input.trim_start();
                    if input.is_empty() {
                        break;
                    }
                    // Fixed widths when the next node is another field (`YYYYMMDD`).
                    let packed = matches!(self.nodes.get(index + 1), Some(Node::Field { .. }));
                    let mut number = |width: usize, name: &str| -> Result<(i64, usize), SqlError> {
                        let limit = if packed { width } else { usize::MAX };
                        let (negative, body) = match input.strip_prefix('-') {
                            Some(b) if name == "TZH" => (true, b),
                            _ => (false, input.strip_prefix('+').unwrap_or(input)),
                        };
                        let digits = body
                            .bytes()
                            .take_while(u8::is_ascii_digit)
                            .take(limit)
                            .count();
                        if digits == 0 {
                            return Err(invalid(format!(
                                "invalid value \"{}\" for \"{name}\"",
                                input.chars().take(width.max(1)).collect::<String>()
                            )));
                        }
                        let value: i64 = body[..digits].parse().map_err(|_| {
                            invalid(format!(
                                "value for \"{name}\" in source string is out of range"
                            ))
                        })?;
                        input = &body[digits..];
                        Ok((if negative { -value } else { value }, digits))
                    };
                    match pattern {
                        Pattern::Year(4) => year = number(4, "YYYY")?.0 as i32,
                        Pattern::Year(2) => {
                            let y = number(2, "YY")?.0 as i32;
                            year = if y < 70 { 2000 + y } else { 1900 + y };
                        }
                        Pattern::Month => month = number(2, "MM")?.0 as u32,
                        Pattern::DayOfMonth => day = number(2, "DD")?.0 as u32,
                        Pattern::Hour24 => hour = number(2, "HH24")?.0 as u32,
                        Pattern::Hour12 => {
                            hour = number(2, "HH12")?.0 as u32;
                            if !(1..=12).contains(&hour) {
                                return Err(DateTimeError::Range(format!(
                                    "hour \"{hour}\" is invalid for the 12-hour clock"
                                ))
                                .into());
                            }
                        }
                        Pattern::Minute => minute = number(2, "MI")?.0 as u32,
                        Pattern::Second => second = number(2, "SS")?.0 as u32,
                        Pattern::Milli | Pattern::Micro | Pattern::Fraction(_) => {
                            let width = match pattern {
                                Pattern::Milli => 3,
                                Pattern::Fraction(n) => *n,
                                _ => 6,
                            };
                            let (value, digits) = number(width, "US")?;
                            if digits > width {
                                return Err(invalid("fraction out of range".into()));
                            }
                            // Digits are a fraction: `.5` with MS is 500 ms.
                            let scaled = value * 10i64.pow((width - digits) as u32);
                            micros += scaled * 10i64.pow((6 - width) as u32);
                        }
                        Pattern::ZoneHour => offset = Some(number(2, "TZH")?.0 as i32),
                        Pattern::ZoneMinute => offset_minutes = number(2, "TZM")?.0 as i32,
                        Pattern::MonthName(_) | Pattern::MonthAbbr(_) => {
                            let full = matches!(pattern, Pattern::MonthName(_));
                            let (i, len) = name_at(input, &MONTHS, full).ok_or_else(|| {
                                invalid(format!("invalid value \"{input}\" for \"Month\""))
                            })?;
                            month = i as u32 + 1;
                            input = &input[len..];
                        }
                        Pattern::DayName(_) | Pattern::DayAbbr(_) => {
                            let full = matches!(pattern, Pattern::DayName(_));
                            let (_, len) = name_at(input, &DAYS, full).ok_or_else(|| {
                                invalid(format!("invalid value \"{input}\" for \"Day\""))
                            })?;
                            input = &input[len..];
                        }
                        Pattern::Meridiem { dots, .. } => {
                            let len = if *dots { 4 } else { 2 };
                            let word = input.get(..len).unwrap_or("").to_ascii_lowercase();
                            pm = Some(match word.replace('.', "").as_str() {
                                "am" => false,
                                "pm" => true,
                                _ => {
                                    return Err(invalid(format!(
                                        "invalid value \"{word}\" for \"AM\""
                                    )));
                                }
                            });
                            input = &input[len..];
                        }
                        Pattern::DayOfWeek | Pattern::Quarter => {
                            number(1, "D")?;
                        }
                        Pattern::Zone { .. } | Pattern::Offset => {
                            return Err(SqlError::Unsupported(
                                "formatting field \"TZ\"/\"OF\" is only supported in to_char"
                                    .into(),
                            ));
                        }
                        other => return Err(unsupported(&format!("{other:?} in to_timestamp"))),
                    }
                }
            }
        }
        match pm {
            Some(true) if hour < 12 => hour += 12,
            Some(false) if hour == 12 => hour = 0,
            _ => {}
        }
        let range = || SqlError::from(DateTimeError::Range(text.to_string()));
        let date = NaiveDate::from_ymd_opt(year, month, day).ok_or_else(range)?;
        if hour > 24 || minute > 59 || second > 60 {
            return Err(range());
        }
        let local = date.and_hms_opt(0, 0, 0).ok_or_else(range)?
            + Duration::seconds(i64::from(hour * 3600 + minute * 60 + second))
            + Duration::microseconds(micros);
        let zone = match offset {
            Some(h) => {
                let minutes = if h < 0 {
                    -offset_minutes
                } else {
                    offset_minutes
                };
                let seconds = h * 3600 + minutes * 60;
                Some(Zone::Fixed(
                    FixedOffset::east_opt(seconds).ok_or_else(range)?,
                ))
            }
            None => None,
        };
        Ok(Stamp { local, zone })
    }
}

/// Which of `names` the text starts with (case-insensitively), and its length in the text.
fn name_at(text: &str, names: &[&str], full: bool) -> Option<(usize, usize)> {
    names.iter().enumerate().find_map(|(i, name)| {
        let name = if full { name } else { &name[..3] };
        text.get(..name.len())
            .filter(|t| t.eq_ignore_ascii_case(name))
            .map(|_| (i, name.len()))
    })
}

fn ordinal_suffix(n: i64, upper: bool) -> String {
    let suffix = match (n % 100, n % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    };
    if upper {
        suffix.to_ascii_uppercase()
    } else {
        suffix.to_string()
    }
}

fn cased(name: &str, case: Case, fill: bool, width: usize) -> String {
    let text = match case {
        Case::Upper => name.to_ascii_uppercase(),
        Case::Capital => name.to_string(),
        Case::Lower => name.to_ascii_lowercase(),
    };
    if fill {
        text
    } else {
        format!("{text:<width$}")
    }
}

/// A pattern's text, and its number (for `TH`).
fn field_text(
    pattern: Pattern,
    fill: bool,
    t: &NaiveDateTime,
    zone: Option<(&Zone, &NaiveDateTime)>,
) -> (String, Option<i64>) {
    let num = |n: i64, width: usize| {
        let text = if fill {
            n.to_string()
        } else {
            format!("{n:0width$}")
        };
        (text, Some(n))
    };
    let year = i64::from(t.year());
    let iso = t.iso_week();
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    match pattern {
        Pattern::YearComma => (format!("{},{:03}", year / 1000, year % 1000), Some(year)),
        Pattern::Year(4) => num(year, 4),
        Pattern::Year(n) => num(year % 10i64.pow(n as u32), n),
        Pattern::IsoYear(4) => num(iso.year().into(), 4),
        Pattern::IsoYear(n) => num(i64::from(iso.year()) % 10i64.pow(n as u32), n),
        Pattern::MonthName(case) => (cased(MONTHS[t.month0() as usize], case, fill, 9), None),
        Pattern::MonthAbbr(case) => (
            cased(&MONTHS[t.month0() as usize][..3], case, fill, 3),
            None,
        ),
        Pattern::Month => num(t.month().into(), 2),
        Pattern::DayName(case) => (
            cased(
                DAYS[t.weekday().num_days_from_sunday() as usize],
                case,
                fill,
                9,
            ),
            None,
        ),
        Pattern::DayAbbr(case) => (
            cased(
                &DAYS[t.weekday().num_days_from_sunday() as usize][..3],
                case,
                fill,
                3,
            ),
            None,
        ),
        Pattern::DayOfYear => num(t.ordinal().into(), 3),
        Pattern::DayOfMonth => num(t.day().into(), 2),
        Pattern::DayOfWeek => num(i64::from(t.weekday().number_from_sunday()), 1),
        Pattern::IsoDayOfYear => num(
            i64::from((iso.week() - 1) * 7 + t.weekday().number_from_monday()),
            3,
        ),
        Pattern::IsoDayOfWeek => num(t.weekday().number_from_monday().into(), 1),
        Pattern::WeekOfYear => num(i64::from((t.ordinal() - 1) / 7 + 1), 2),
        Pattern::WeekOfMonth => num(i64::from((t.day() - 1) / 7 + 1), 1),
        Pattern::IsoWeek => num(iso.week().into(), 2),
        Pattern::Quarter => num(i64::from(t.month0() / 3 + 1), 1),
        Pattern::Century => num((year + 99).div_euclid(100), 2),
        Pattern::Julian => num(i64::from(t.num_days_from_ce()) + 1_721_425, 1),
        Pattern::Hour12 => num(hour12.into(), 2),
        Pattern::Hour24 => num(t.hour().into(), 2),
        Pattern::Minute => num(t.minute().into(), 2),
        Pattern::Second => num(t.second().into(), 2),
        Pattern::SecondsOfDay => num(t.num_seconds_from_midnight().into(), 1),
        Pattern::Milli => num(i64::from(t.nanosecond() / 1_000_000), 3),
        Pattern::Micro => num(i64::from(t.nanosecond() / 1000), 6),
        Pattern::Fraction(n) => {
            let digits = format!("{:06}", t.nanosecond() / 1000);
            (digits[..n].to_string(), None)
        }
        Pattern::Meridiem { upper, dots } => {
            let text = match (t.hour() >= 12, dots) {
                (false, false) => "am",
                (true, false) => "pm",
                (false, true) => "a.m.",
                (true, true) => "p.m.",
            };
            (
                if upper {
                    text.to_ascii_uppercase()
                } else {
                    text.into()
                },
                None,
            )
        }
        Pattern::Era { upper, dots } => {
            let text = match (t.year() > 0, dots) {
                (true, false) => "ad",
                (false, false) => "bc",
                (true, true) => "a.d.",
                (false, true) => "b.c.",
            };
            (
                if upper {
                    text.to_ascii_uppercase()
                } else {
                    text.into()
                },
                None,
            )
        }
        Pattern::Zone { upper } => match zone {
            Some((zone, utc)) => {
                let abbr = zone.abbreviation(utc);
                (
                    if upper {
                        abbr
                    } else {
                        abbr.to_ascii_lowercase()
                    },
                    None,
                )
            }
            None => (String::new(), None),
        },
        Pattern::ZoneHour | Pattern::ZoneMinute | Pattern::Offset => {
            // A `timestamp` has offset zero here, as in PostgreSQL.
            let seconds = zone.map_or(0, |(zone, utc)| zone.offset(utc).local_minus_utc());
            {
                let text = match pattern {
                    Pattern::ZoneHour => {
                        format!(
                            "{}{:02}",
                            if seconds < 0 { '-' } else { '+' },
                            seconds.abs() / 3600
                        )
                    }
                    Pattern::ZoneMinute => format!("{:02}", seconds.abs() / 60 % 60),
                    _ => offset_text(seconds, true),
                };
                (text, None)
            }
        }
        Pattern::Roman { upper } => {
            let text = ROMAN[t.month0() as usize];
            let text = if upper {
                text.to_string()
            } else {
                text.to_ascii_lowercase()
            };
            (if fill { text } else { format!("{text:<4}") }, None)
        }
    }
}
