//! Run-time parameters (GUCs): what `SET`, `SHOW`, `RESET`, `current_setting` and
//! `ParameterStatus` see.
//!
//! Names are case-insensitive and displayed in PostgreSQL's spelling (`DateStyle`, `TimeZone`).
//! Parameters that change how deltagate formats data are validated, because accepting a value
//! deltagate would not honour (a non-ISO `DateStyle`, a non-UTF8 encoding) would silently give
//! clients wrong results. Unknown names are an error, except qualified custom names
//! (`myapp.x`), which PostgreSQL also allows. Owned by [`super::Session`].

use std::collections::BTreeMap;
use std::str::FromStr;

use super::{Result, SqlError};

/// Parameters reported to the client in `ParameterStatus` at startup and whenever they change.
const REPORTED_PARAMETERS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// One known parameter: canonical name, default, whether clients may change it, description.
struct Definition {
    name: &'static str,
    default: &'static str,
    settable: bool,
    description: &'static str,
}

const fn def(
    name: &'static str,
    default: &'static str,
    settable: bool,
    description: &'static str,
) -> Definition {
    Definition {
        name,
        default,
        settable,
        description,
    }
}

const DEFINITIONS: &[Definition] = &[
    def(
        "application_name",
        "",
        true,
        "Sets the application name to be reported in statistics and logs.",
    ),
    def(
        "bytea_output",
        "hex",
        true,
        "Sets the output format for bytea.",
    ),
    def(
        "client_encoding",
        "UTF8",
        true,
        "Sets the client's character set encoding.",
    ),
    def(
        "client_min_messages",
        "notice",
        true,
        "Sets the message levels that are sent to the client.",
    ),
    def(
        "DateStyle",
        "ISO, MDY",
        true,
        "Sets the display format for date and time values.",
    ),
    def(
        "deltagate.historian_duplicates",
        "skip",
        true,
        "What an INSERT or COPY into an Ignition historian data table does with a row whose (tagid, t_stamp) is already stored: skip it (the default, so re-sent batches succeed) or error (23505, as PostgreSQL).",
    ),
    def(
        "default_transaction_isolation",
        "read committed",
        true,
        "Sets the transaction isolation level of each new transaction.",
    ),
    def(
        "default_transaction_read_only",
        "off",
        true,
        "Sets the default read-only status of new transactions.",
    ),
    def(
        "enable_indexscan",
        "on",
        true,
        "Enables key seeks: queries for the first or last rows of primary-key values within a range, ordered by the next key column with a LIMIT, read only the pages that can hold them instead of planning a scan.",
    ),
    def(
        "extra_float_digits",
        "1",
        true,
        "Sets the number of digits displayed for floating-point values.",
    ),
    def(
        "idle_in_transaction_session_timeout",
        "0",
        true,
        "Sets the maximum allowed idle time between queries, when in a transaction.",
    ),
    def(
        "in_hot_standby",
        "off",
        false,
        "Shows whether hot standby is currently active.",
    ),
    def(
        "integer_datetimes",
        "on",
        false,
        "Shows whether datetimes are integer based.",
    ),
    def(
        "IntervalStyle",
        "postgres",
        true,
        "Sets the display format for interval values.",
    ),
    def(
        "is_superuser",
        "on",
        false,
        "Shows whether the current user is a superuser.",
    ),
    def(
        "lc_collate",
        "C",
        false,
        "Shows the collation order locale.",
    ),
    def(
        "lc_ctype",
        "C",
        false,
        "Shows the character classification and case conversion locale.",
    ),
    def(
        "lc_messages",
        "C",
        true,
        "Sets the language in which messages are displayed.",
    ),
    def(
        "lc_monetary",
        "C",
        true,
        "Sets the locale for formatting monetary amounts.",
    ),
    def(
        "lc_numeric",
        "C",
        true,
        "Sets the locale for formatting numbers.",
    ),
    def(
        "lc_time",
        "C",
        true,
        "Sets the locale for formatting date and time values.",
    ),
    def(
        "lock_timeout",
        "0",
        true,
        "Sets the maximum allowed duration of any wait for a lock.",
    ),
    def(
        "max_connections",
        "100",
        false,
        "Sets the maximum number of concurrent connections.",
    ),
    def(
        "max_identifier_length",
        "63",
        false,
        "Shows the maximum identifier length.",
    ),
    def("row_security", "on", true, "Enable row security."),
    def(
        "search_path",
        "\"$user\", public",
        true,
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    def(
        "server_encoding",
        "UTF8",
        false,
        "Shows the server (database) character set encoding.",
    ),
    def("server_version", "16.6", false, "Shows the server version."),
    def(
        "server_version_num",
        "160006",
        false,
        "Shows the server version as an integer.",
    ),
    def(
        "session_authorization",
        "",
        false,
        "Sets the session user name.",
    ),
    def(
        "standard_conforming_strings",
        "on",
        true,
        "Causes '...' strings to treat backslashes literally.",
    ),
    def(
        "statement_timeout",
        "0",
        true,
        "Sets the maximum allowed duration of any statement.",
    ),
    def(
        "synchronous_commit",
        "on",
        true,
        "Sets the current transaction's synchronization level.",
    ),
    def(
        "TimeZone",
        "UTC",
        true,
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    def(
        "transaction_isolation",
        "read committed",
        true,
        "Sets the current transaction's isolation level.",
    ),
    def(
        "transaction_read_only",
        "off",
        true,
        "Sets the current transaction's read-only status.",
    ),
    def(
        "xmloption",
        "content",
        true,
        "Sets whether XML data in implicit parsing and serialization operations is to be considered as documents or content fragments.",
    ),
];

fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

/// The parameters of one session.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Current values by lower-cased name.
    values: BTreeMap<String, String>,
    /// Values a `RESET` returns to (defaults overridden by startup parameters).
    session_defaults: BTreeMap<String, String>,
    /// The values of [`REPORTED_PARAMETERS`] the client was last told, in that order.
    told: Vec<String>,
    /// Whether a value may have changed since `told`: statements check this one flag rather
    /// than comparing every reported value.
    changed: bool,
}

impl Settings {
    /// Settings for a new session of `user`: the server's `defaults` (configured values that
    /// replace built-in defaults), then the startup packet's parameters.
    ///
    /// # Errors
    /// Invalid values for known parameters (a startup packet asking for `DateStyle=SQL`).
    pub fn new(
        user: &str,
        server_version: &str,
        defaults: &[(String, String)],
        startup: &[(String, String)],
    ) -> Result<Settings> {
        let mut values = BTreeMap::new();
        for d in DEFINITIONS {
            values.insert(d.name.to_ascii_lowercase(), d.default.to_string());
        }
        values.insert("session_authorization".into(), user.to_string());
        values.insert("server_version".into(), server_version.to_string());
        values.insert("server_version_num".into(), version_num(server_version));
        let mut settings = Settings {
            values,
            session_defaults: BTreeMap::new(),
            told: Vec::new(),
            changed: false,
        };
        for (name, value) in defaults {
            settings.set(name, value)?;
        }
        for (name, value) in startup {
            match name.as_str() {
                "user" | "database" | "replication" => {}
                "options" => {
                    for (k, v) in parse_options(value) {
                        settings.set(&k, &v)?;
                    }
                }
                _ => {
                    // Unknown startup parameters are ignored, as they would break the connection.
                    if definition(name).is_some() || name.contains('.') {
                        settings.set(name, value)?;
                    }
                }
            }
        }
        settings.session_defaults = settings.values.clone();
        settings.told = settings.reported().into_iter().map(|(_, v)| v).collect();
        settings.changed = false;
        Ok(settings)
    }

    /// The current values of [`REPORTED_PARAMETERS`], as startup reports them.
    pub fn reported(&self) -> Vec<(&'static str, String)> {
        REPORTED_PARAMETERS
            .iter()
            .filter_map(|name| self.get(name).ok().map(|value| (*name, value)))
            .collect()
    }

    /// The reported parameters whose value changed since the client was last told, which it
    /// is now taken to be (`ParameterStatus` after a statement).
    pub fn take_unreported(&mut self) -> Vec<(&'static str, String)> {
        if !std::mem::take(&mut self.changed) {
            return Vec::new();
        }
        let mut unreported = Vec::new();
        for ((name, value), told) in self.reported().into_iter().zip(&mut self.told) {
            if *told != value {
                told.clone_from(&value);
                unreported.push((name, value));
            }
        }
        unreported
    }

    /// The canonical (display) name of a parameter.
    pub fn canonical_name(name: &str) -> String {
        definition(name).map_or_else(|| name.to_ascii_lowercase(), |d| d.name.to_string())
    }

    /// Current value of a parameter.
    ///
    /// # Errors
    /// [`SqlError::UndefinedParameter`] for unknown names.
    pub fn get(&self, name: &str) -> Result<String> {
        self.values
            .get(&name.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| SqlError::UndefinedParameter(name.to_string()))
    }

    /// Sets a parameter after validating the value.
    ///
    /// # Errors
    /// Unknown or read-only parameters, invalid values.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let key = name.to_ascii_lowercase();
        let value = match definition(name) {
            Some(d) if !d.settable => {
                return Err(SqlError::InvalidParameterValue(format!(
                    "parameter \"{}\" cannot be changed",
                    d.name
                )));
            }
            Some(d) => validate(d.name, value)?,
            None if key.contains('.') => value.to_string(),
            None => return Err(SqlError::UndefinedParameter(name.to_string())),
        };
        self.values.insert(key, value);
        self.changed = true;
        Ok(())
    }

    /// Returns a parameter to its session default.
    ///
    /// # Errors
    /// [`SqlError::UndefinedParameter`] for unknown names.
    pub fn reset(&mut self, name: &str) -> Result<()> {
        let key = name.to_ascii_lowercase();
        self.changed = true;
        match self.session_defaults.get(&key) {
            Some(value) => {
                self.values.insert(key, value.clone());
                Ok(())
            }
            None if key.contains('.') => {
                self.values.remove(&key);
                Ok(())
            }
            None => Err(SqlError::UndefinedParameter(name.to_string())),
        }
    }

    /// Returns every parameter to its session default.
    pub fn reset_all(&mut self) {
        self.values = self.session_defaults.clone();
        self.changed = true;
    }

    /// All parameters as `(name, value, description)` for `SHOW ALL` and `pg_settings`.
    pub fn all(&self) -> Vec<(String, String, String)> {
        DEFINITIONS
            .iter()
            .map(|d| {
                (
                    d.name.to_string(),
                    self.values
                        .get(&d.name.to_ascii_lowercase())
                        .cloned()
                        .unwrap_or_default(),
                    d.description.to_string(),
                )
            })
            .collect()
    }

    /// The schemas of `search_path`, with `"$user"` resolved.
    pub fn search_path(&self) -> Vec<String> {
        let user = self.get("session_authorization").unwrap_or_default();
        self.get("search_path")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.eq_ignore_ascii_case("\"$user\"") || s == "$user" {
                    user.clone()
                } else if s.starts_with('"') && s.ends_with('"') && s.len() >= 2 {
                    s[1..s.len() - 1].replace("\"\"", "\"")
                } else {
                    s.to_ascii_lowercase()
                }
            })
            .collect()
    }

    /// The session time zone.
    pub fn time_zone(&self) -> String {
        self.get("TimeZone").unwrap_or_else(|_| "UTC".into())
    }
}

fn version_num(version: &str) -> String {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(16);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major * 10000 + minor).to_string()
}

/// Parses the startup `options` value: `-c name=value --name=value`.
fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let assignment = if word == "-c" {
            words.next().map(str::to_string)
        } else if let Some(rest) = word.strip_prefix("-c") {
            Some(rest.to_string())
        } else {
            word.strip_prefix("--").map(str::to_string)
        };
        if let Some((k, v)) = assignment.as_deref().and_then(|a| a.split_once('=')) {
            out.push((k.replace('-', "_"), v.to_string()));
        }
    }
    out
}

fn invalid(name: &str, value: &str) -> SqlError {
    SqlError::InvalidParameterValue(format!(
        "invalid value for parameter \"{name}\": \"{value}\""
    ))
}

fn validate(name: &str, value: &str) -> Result<String> {
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
            datafusion::arrow::array::timezone::Tz::from_str(tz)
                .map(|_| tz.to_string())
                .map_err(|_| invalid(name, value))
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
            let lowered = trimmed.to_ascii_lowercase();
            match lowered.as_str() {
                "read committed" | "read uncommitted" | "repeatable read" | "serializable" => {
                    Ok(lowered)
                }
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
pub fn parse_duration_ms(text: &str) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_parameters_and_reset() {
        let startup = vec![
            ("DateStyle".to_string(), "ISO".to_string()),
            ("TimeZone".to_string(), "America/Chicago".to_string()),
            (
                "options".to_string(),
                "-c search_path=ignition,public".to_string(),
            ),
        ];
        let mut s = Settings::new("alice", "16.6", &[], &startup).unwrap();
        assert_eq!(s.get("datestyle").unwrap(), "ISO, MDY");
        assert_eq!(s.get("timezone").unwrap(), "America/Chicago");
        assert_eq!(s.search_path(), vec!["ignition", "public"]);
        s.set("search_path", "\"$user\", public").unwrap();
        assert_eq!(s.search_path(), vec!["alice", "public"]);
        s.reset("search_path").unwrap();
        assert_eq!(s.search_path(), vec!["ignition", "public"]);
        assert_eq!(s.get("server_version_num").unwrap(), "160006");
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        let mut s = Settings::new("u", "16.6", &[], &[]).unwrap();
        assert!(matches!(
            s.set("DateStyle", "SQL, DMY"),
            Err(SqlError::Unsupported(_))
        ));
        assert!(matches!(
            s.set("client_encoding", "LATIN1"),
            Err(SqlError::Unsupported(_))
        ));
        assert!(matches!(
            s.set("nosuch", "1"),
            Err(SqlError::UndefinedParameter(_))
        ));
        assert!(matches!(
            s.set("TimeZone", "Mars/Base"),
            Err(SqlError::InvalidParameterValue(_))
        ));
        assert!(s.set("myapp.flag", "x").is_ok());
        assert!(matches!(
            s.set("server_version", "1"),
            Err(SqlError::InvalidParameterValue(_))
        ));
        assert_eq!(parse_duration_ms("5s"), Some(5000));
    }
}
