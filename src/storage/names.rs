//! Folder names for PostgreSQL identifiers: the one mapping from a schema or table name to the
//! path segment that holds it in the warehouse.
//!
//! PostgreSQL identifiers may hold any character but NUL: `/`, `..`, tabs, `%`, `\`, emoji. The
//! warehouse's paths pass through several layers that each read some of those characters (a
//! URL parser that resolves `..` and drops tabs, percent-decoding when a `file://` URL becomes a
//! path, `object_store`'s own escaping, Spark's path globs), so a name must reach them already
//! made of characters that every layer leaves alone. [`encode`] keeps ASCII letters, digits,
//! `_`, `-` and a `.` that is not the first character, and writes every other byte of the
//! name's UTF-8 as `!XX` (two upper-case hex digits): `!` means nothing to URLs, to
//! `object_store`, to S3 or to Hadoop's globs. So:
//!
//! - the mapping is injective: [`decode`] inverts it, and accepts only canonical encodings;
//! - every encoding is one path segment strictly inside its parent: never empty, never `.` or
//!   `..`, never starting with `.` (so never `.deltagate`, where the server keeps its own files),
//!   never containing `/`, `\`, `%`, control or non-ASCII characters;
//! - never `_delta_log`, which Delta tooling takes for a table's log (that name's `_` is
//!   escaped too);
//! - ordinary names (`readings`, `sqlt_data_1`, `Sensor-2026.v2`) are their own folder, so Spark
//!   users read `<warehouse>/public/readings` as before.
//!
//! The mapping is case-sensitive, as PostgreSQL's quoted identifiers are: the warehouse must be
//! on a case-sensitive store (Linux file systems, S3, ADLS, GCS). Used by the catalog for every
//! path it builds, and by the `names` fuzz target.

use std::fmt::Write as _;

/// The escape character of [`encode`].
const ESCAPE: char = '!';

/// The longest name PostgreSQL keeps (`NAMEDATALEN - 1` bytes); longer ones are refused on
/// creation, since PostgreSQL would truncate them and deltagate does not.
pub const MAX_NAME_BYTES: usize = 63;

/// Why a name cannot be given a folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("zero-length delimited identifier")]
    Empty,
    #[error("identifier \"{0}\" is longer than {MAX_NAME_BYTES} bytes")]
    TooLong(String),
}

/// Names whose folder would mean something to Delta readers: `_delta_log` is where a table's
/// log lives, and a table folder of that name is taken for its parent's log. Their first byte
/// is escaped.
const RESERVED: &[&str] = &["_delta_log"];

/// Whether `byte` at position `at` of a name stands for itself in the folder name.
fn is_plain(byte: u8, at: usize) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && at > 0)
}

/// The folder of a schema or table name.
///
/// # Errors
/// [`NameError::Empty`] for the empty name, which no folder can stand for.
pub fn encode(name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let reserved = RESERVED.contains(&name);
    let mut out = String::with_capacity(name.len());
    for (at, byte) in name.bytes().enumerate() {
        if is_plain(byte, at) && !(reserved && at == 0) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "{ESCAPE}{byte:02X}");
        }
    }
    Ok(out)
}

/// Checks a name a client wants to create: not empty, not longer than PostgreSQL allows.
///
/// # Errors
/// [`NameError`].
pub fn check_new(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.to_string()));
    }
    Ok(())
}

/// The name whose folder is `folder`; `None` when `folder` is not what [`encode`] makes of
/// any name (a folder another tool created, or one deltagate must not serve).
pub fn decode(folder: &str) -> Option<String> {
    let bytes = folder.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == ESCAPE as u8 {
            let hex = folder.get(at + 1..at + 3)?;
            if !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    // One encoding per name: anything else (a byte escaped that stands for itself, or left
    // plain that must not) is not one of ours.
    (encode(&name).ok()? == folder).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_their_own_folder() {
        for name in ["readings", "sqlt_data_1", "Sensor-2026.v2", "a..b", "T"] {
            assert_eq!(encode(name).as_deref(), Ok(name));
            assert_eq!(decode(name).as_deref(), Some(name));
        }
    }

    #[test]
    fn hostile_names_stay_one_segment_inside() {
        let cases = [
            ("..", "!2E."),
            (".", "!2E"),
            (".deltagate", "!2Edeltagate"),
            ("../../x2", "!2E.!2F..!2Fx2"),
            ("ta\tb", "ta!09b"),
            ("a/b", "a!2Fb"),
            ("a\\b", "a!5Cb"),
            ("a%2Fb", "a!252Fb"),
            ("a!b", "a!21b"),
            ("Öl", "!C3!96l"),
            ("a b", "a!20b"),
            ("_delta_log", "!5Fdelta_log"),
        ];
        for (name, folder) in cases {
            assert_eq!(encode(name).as_deref(), Ok(folder), "{name:?}");
            assert_eq!(decode(folder).as_deref(), Some(name), "{folder:?}");
        }
        assert_eq!(encode(""), Err(NameError::Empty));
    }

    #[test]
    fn only_canonical_folders_decode() {
        for folder in [
            "",
            ".x",
            "!2e",
            "!41",
            "a!2",
            "a!",
            "a b",
            "a%2Fb",
            "!FF",
            "..",
            "!2D",
            "a~b",
            "_delta_log",
            "!5Fx",
        ] {
            assert_eq!(decode(folder), None, "{folder:?}");
        }
    }

    #[test]
    fn new_names_are_checked_for_length() {
        assert!(check_new(&"x".repeat(63)).is_ok());
        assert!(matches!(
            check_new(&"x".repeat(64)),
            Err(NameError::TooLong(_))
        ));
        assert_eq!(check_new(""), Err(NameError::Empty));
    }
}
