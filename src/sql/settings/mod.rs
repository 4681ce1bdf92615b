//! Run-time parameters (GUCs): what `SET`, `SHOW`, `RESET`, `current_setting` and
//! `ParameterStatus` see.
//!
//! Names are case-insensitive and displayed in PostgreSQL's spelling (`DateStyle`, `TimeZone`).
//! Parameters that change how deltagate formats data are validated, because accepting a value
//! deltagate would not honour (a non-ISO `DateStyle`, a non-UTF8 encoding) would silently give
//! clients wrong results. Unknown names are an error, except qualified custom names
//! (`myapp.x`), which PostgreSQL also allows. Owned by [`super::Session`].
//!
//! This file holds a session's [`Settings`]; `definitions` lists the parameters deltagate
//! knows (PostgreSQL's names, defaults and descriptions, and which are reported to the client),
//! and `validate` checks a value before it is taken.

use std::collections::BTreeMap;

use super::{Result, SqlError};

mod definitions;
mod validate;

use definitions::{DEFINITIONS, REPORTED_PARAMETERS, definition};
pub use validate::unsupported_isolation;
use validate::validate;

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

#[cfg(test)]
mod tests {
    use super::validate::parse_duration_ms;
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
