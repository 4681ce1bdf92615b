//! What deltagate knows about Ignition's SQL tag historian tables.
//!
//! Ignition names its data tables `sqlt_data_<driver>_<yyyy>_<mm>` (monthly partitions),
//! `sqlt_data_<driver>_<yyyymmdd>` (daily) and `sqlth_<driver>_data` (partitioning off), each
//! keyed by `(tagid, t_stamp)`. Such a table is a *historian data table*: a store-and-forward
//! engine re-sends its batches, so duplicate keys there are skipped rather than refused (when
//! the session's `deltagate.historian_duplicates` is `skip`, the default; [`on_duplicate`]).
//! This module recognises names and shapes and states the duplicate rule; the key check
//! (`keys::check`) applies it, the storage catalog maps months.
//!
//! Rooms: `partition` (a month as a partition of its driver's Delta table) and `months` (the
//! catalog's month lifecycle).

pub(super) mod months;
pub(super) mod partition;

use super::TableMeta;
use super::keys::OnDuplicate;

/// An Ignition data table name, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistorianName {
    /// `sqlt_data_<driver>_<yyyy>_<mm>` (`period` is `yyyy-mm`) or
    /// `sqlt_data_<driver>_<yyyymmdd>` (`period` is `yyyy-mm-dd`).
    Partition { driver: u32, period: String },
    /// `sqlth_<driver>_data`.
    Single { driver: u32 },
}

impl HistorianName {
    /// Recognises a data table name (already folded to lower case); `None` for anything else.
    pub fn parse(name: &str) -> Option<HistorianName> {
        if let Some(driver) = name
            .strip_prefix("sqlth_")
            .and_then(|rest| rest.strip_suffix("_data"))
        {
            return Some(HistorianName::Single {
                driver: number(driver)?,
            });
        }
        let rest = name.strip_prefix("sqlt_data_")?;
        let (driver, date) = rest.split_once('_')?;
        let driver = number(driver)?;
        let period = match date.split_once('_') {
            Some((year, month)) if digits(year, 4) && digits(month, 2) => {
                valid_month(month).then(|| format!("{year}-{month}"))?
            }
            None if digits(date, 8) => {
                let (year, month, day) = (&date[..4], &date[4..6], &date[6..]);
                let day_ok = matches!(day.parse::<u32>(), Ok(1..=31));
                (valid_month(month) && day_ok).then(|| format!("{year}-{month}-{day}"))?
            }
            _ => return None,
        };
        Some(HistorianName::Partition { driver, period })
    }
}

fn digits(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit())
}

fn number(text: &str) -> Option<u32> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn valid_month(month: &str) -> bool {
    matches!(month.parse::<u32>(), Ok(1..=12))
}

/// Whether a table is a historian data table: an Ignition data table name and the primary key
/// `(tagid, t_stamp)`.
pub fn is_data_table(name: &str, meta: &TableMeta) -> bool {
    HistorianName::parse(name).is_some()
        && meta
            .primary_key
            .as_ref()
            .is_some_and(|pk| pk.columns == ["tagid", "t_stamp"])
}

/// What an insert into the table `name` does with a duplicate key: skipped on historian data
/// tables while the session's `deltagate.historian_duplicates` is not `error`
/// (`session_skips`), since Ignition's store-and-forward re-sends a whole batch whenever an
/// answer goes missing, and PostgreSQL's 23505 would make it quarantine the batch's good rows
/// with it; refused everywhere else.
pub fn on_duplicate(name: &str, meta: &TableMeta, session_skips: bool) -> OnDuplicate {
    if session_skips && is_data_table(name, meta) {
        OnDuplicate::Skip
    } else {
        OnDuplicate::Reject
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ignition_names() {
        let partition = |driver, period: &str| {
            Some(HistorianName::Partition {
                driver,
                period: period.into(),
            })
        };
        assert_eq!(
            HistorianName::parse("sqlt_data_1_2026_11"),
            partition(1, "2026-11")
        );
        assert_eq!(
            HistorianName::parse("sqlt_data_12_20261201"),
            partition(12, "2026-12-01")
        );
        assert_eq!(
            HistorianName::parse("sqlth_3_data"),
            Some(HistorianName::Single { driver: 3 })
        );
        for other in [
            "sqlt_data_1_2026_13",
            "sqlt_data_1_2026_1",
            "sqlt_data_x_2026_11",
            "sqlt_data_1_20261232",
            "sqlt_data__2026_11",
            "sqlth_te",
            "sqlth_data",
            "sqlt_data_1_2026_11_x",
        ] {
            assert_eq!(HistorianName::parse(other), None, "{other}");
        }
    }
}
