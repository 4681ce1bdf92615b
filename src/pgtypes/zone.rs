//! Time zones as PostgreSQL reads their names, and local times resolved in them as PostgreSQL
//! resolves them.
//!
//! Two readings of a zone's text exist in PostgreSQL and both are kept here: the `TimeZone`
//! setting reads a bare offset (`'+02'`) as ISO 8601 does (east of Greenwich), while
//! `AT TIME ZONE`, `timezone(zone, ts)` and `date_trunc(unit, ts, zone)` read it, and any
//! `UTC+3`-style string, as a POSIX zone: hours *west* of Greenwich. Zone names are matched
//! without regard to case, as PostgreSQL matches them. A local time that a daylight-saving
//! change skips is read with the offset before the change, one it repeats with the offset after
//! it (PostgreSQL's `DetermineTimeZoneOffset`). Callers: `sql::settings` (the `TimeZone`
//! check), `sql::functions::time` and the literal rewrites.

use chrono::{Duration, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::OffsetName;

/// A time zone: an IANA zone, or a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

impl Zone {
    /// A zone named in `AT TIME ZONE` or a function's zone argument (POSIX offsets: west).
    pub fn parse(text: &str) -> Option<Zone> {
        let text = text.trim();
        if let Some(zone) = named(text) {
            return Some(zone);
        }
        let upper = text.to_ascii_uppercase();
        let rest = upper
            .strip_prefix("UTC")
            .or_else(|| upper.strip_prefix("GMT"))
            .unwrap_or(&upper);
        offset_seconds(rest).and_then(|s| fixed(-s))
    }

    /// The `TimeZone` setting's value (ISO offsets: east; `UTC+3` is still POSIX).
    pub fn setting(text: &str) -> Option<Zone> {
        let text = text.trim();
        if let Some(zone) = named(text) {
            return Some(zone);
        }
        if let Some(seconds) = offset_seconds(text) {
            return fixed(seconds);
        }
        Zone::parse(text)
    }

    /// The zone as an Arrow time zone (`America/Chicago`, `+05:30`).
    pub fn label(&self) -> String {
        match self {
            Zone::Named(tz) => tz.name().to_string(),
            Zone::Fixed(offset) => {
                let s = offset.local_minus_utc();
                let sign = if s < 0 { '-' } else { '+' };
                let s = s.abs();
                format!("{sign}{:02}:{:02}", s / 3600, s / 60 % 60)
            }
        }
    }

    /// The offset in effect at a UTC time.
    pub fn offset(&self, utc: &NaiveDateTime) -> FixedOffset {
        match self {
            Zone::Named(tz) => tz.offset_from_utc_datetime(utc).fix(),
            Zone::Fixed(offset) => *offset,
        }
    }

    /// The zone's abbreviation at a UTC time (`CST`), or its offset when it has none (`+02`).
    pub fn abbreviation(&self, utc: &NaiveDateTime) -> String {
        if let Zone::Named(tz) = self
            && let Some(abbr) = tz.offset_from_utc_datetime(utc).abbreviation()
        {
            return abbr.to_string();
        }
        offset_text(self.offset(utc).local_minus_utc(), false)
    }

    /// The local time of a UTC time.
    pub fn to_local(&self, utc: &NaiveDateTime) -> NaiveDateTime {
        *utc + Duration::seconds(i64::from(self.offset(utc).local_minus_utc()))
    }

    /// The UTC time of a local time (see the module comment for skipped and repeated times).
    pub fn to_utc(&self, local: &NaiveDateTime) -> NaiveDateTime {
        let minus = |o: FixedOffset| *local - Duration::seconds(i64::from(o.local_minus_utc()));
        match self {
            Zone::Fixed(offset) => minus(*offset),
            Zone::Named(tz) => match tz.offset_from_local_datetime(local) {
                LocalResult::Single(o) => minus(o.fix()),
                // Repeated: the offset after the change, which gives the later instant.
                LocalResult::Ambiguous(a, b) => minus(a.fix()).max(minus(b.fix())),
                // Skipped: the offset before the change (no zone changes twice in a day).
                LocalResult::None => minus(
                    tz.offset_from_utc_datetime(&(*local - Duration::days(1)))
                        .fix(),
                ),
            },
        }
    }
}

/// `+05:30`, `-06` (PostgreSQL's `OF`): minutes only when nonzero; with `colon` false as
/// `+0530`.
pub fn offset_text(seconds: i32, colon: bool) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.abs();
    let (h, m) = (s / 3600, s / 60 % 60);
    match (m, colon) {
        (0, _) => format!("{sign}{h:02}"),
        (_, true) => format!("{sign}{h:02}:{m:02}"),
        (_, false) => format!("{sign}{h:02}{m:02}"),
    }
}

fn named(text: &str) -> Option<Zone> {
    if ["utc", "gmt", "z", "zulu", "ut", "etc/utc"]
        .iter()
        .any(|n| text.eq_ignore_ascii_case(n))
    {
        return Some(Zone::Named(chrono_tz::UTC));
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(text))
        .map(|tz| Zone::Named(*tz))
}

fn fixed(seconds: i32) -> Option<Zone> {
    // PostgreSQL refuses offsets beyond 15 hours.
    (seconds.abs() <= 15 * 3600)
        .then(|| FixedOffset::east_opt(seconds).map(Zone::Fixed))
        .flatten()
}

/// `+2`, `-05:30`, `+0530`, `+05:30:15` as signed seconds (east positive, as written).
fn offset_seconds(text: &str) -> Option<i32> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        b'0'..=b'9' => (1, text),
        _ => return None,
    };
    let parts: Vec<&str> = digits.split(':').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let num = |p: &str| p.parse::<i32>().ok();
    let (h, m, s) = match parts.as_slice() {
        [hm] if hm.len() == 4 => (num(&hm[..2])?, num(&hm[2..])?, 0),
        [h] if h.len() <= 2 => (num(h)?, 0, 0),
        [h, m] if h.len() <= 2 && m.len() == 2 => (num(h)?, num(m)?, 0),
        [h, m, s] if h.len() <= 2 && m.len() == 2 && s.len() == 2 => (num(h)?, num(m)?, num(s)?),
        _ => return None,
    };
    (m < 60 && s < 60).then_some(sign * (h * 3600 + m * 60 + s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn names_and_offsets_read_as_postgres_reads_them() {
        assert_eq!(
            Zone::parse("america/CHICAGO").unwrap().label(),
            "America/Chicago"
        );
        assert_eq!(Zone::parse("+02").unwrap().label(), "-02:00");
        assert_eq!(Zone::parse("UTC+3").unwrap().label(), "-03:00");
        assert_eq!(Zone::parse("utc+3:30").unwrap().label(), "-03:30");
        assert_eq!(Zone::setting("+02").unwrap().label(), "+02:00");
        assert_eq!(Zone::parse("Z").unwrap().label(), "UTC");
        assert!(Zone::parse("Mars/Base").is_none());
        assert!(Zone::parse("+99").is_none());
    }

    #[test]
    fn skipped_and_repeated_local_times() {
        let chicago = Zone::parse("America/Chicago").unwrap();
        // Skipped: read with the offset before the change (CST).
        assert_eq!(
            chicago.to_utc(&at("2024-03-10 02:30:00")),
            at("2024-03-10 08:30:00")
        );
        // Repeated: the offset after the change (CST again).
        assert_eq!(
            chicago.to_utc(&at("2024-11-03 01:30:00")),
            at("2024-11-03 07:30:00")
        );
        assert_eq!(
            chicago.to_local(&at("2024-03-10 08:00:00")),
            at("2024-03-10 03:00:00")
        );
        assert_eq!(chicago.abbreviation(&at("2024-07-01 00:00:00")), "CDT");
    }
}
