//! Type names to [`PgType`]s: the spellings PostgreSQL's `format_type` writes (and deltagate
//! persists in Delta column metadata) and those a user may declare (`int`, `varchar(20)`,
//! `timestamp with time zone`, `serial`), with PostgreSQL's checks of their modifiers.
//!
//! Real PostgreSQL types deltagate cannot store are told apart from names that are no type
//! (0A000, not 42704). Used when a table is created or altered, when a cast names a type, and
//! when a column's persisted type is read back.

use super::{MAX_NUMERIC_PRECISION, PgType, TypeError};

impl PgType {
    /// Parses a type name as PostgreSQL's `format_type` writes it or as a user may declare it
    /// (`int`, `varchar(20)`, `timestamp with time zone`, `numeric(10,2)`, ...).
    ///
    /// # Errors
    /// [`TypeError::Unknown`] for names that are not types, [`TypeError::Unsupported`] for real
    /// PostgreSQL types deltagate cannot store, [`TypeError::InvalidModifier`] for bad modifiers.
    pub fn parse(text: &str) -> Result<PgType, TypeError> {
        let lowered = text.trim().to_ascii_lowercase();
        let (base, modifiers) = match lowered.find('(') {
            Some(open) => {
                let close = lowered.rfind(')').unwrap_or(lowered.len());
                let mods: Vec<&str> = lowered[open + 1..close.max(open + 1)]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect();
                let rest = lowered[(close + 1).min(lowered.len())..].trim();
                (format!("{} {rest}", lowered[..open].trim()), mods)
            }
            None => (lowered.clone(), Vec::new()),
        };
        let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
        let base = base.trim_start_matches("pg_catalog.");
        let numbers = modifiers
            .iter()
            .map(|m| {
                m.parse::<i64>().map_err(|_| {
                    TypeError::InvalidModifier(format!("invalid type modifier \"{m}\""))
                })
            })
            .collect::<Result<Vec<i64>, TypeError>>()?;
        PgType::from_name(base, &numbers).ok_or_else(|| {
            if KNOWN_UNSUPPORTED.contains(&base) {
                TypeError::Unsupported(base.to_string())
            } else {
                TypeError::Unknown(text.trim().to_string())
            }
        })?
    }

    /// Builds a type from a base name and its numeric modifiers.
    fn from_name(base: &str, mods: &[i64]) -> Option<Result<PgType, TypeError>> {
        let no_mods = |t: PgType| {
            if mods.is_empty() {
                Ok(t)
            } else {
                Err(TypeError::InvalidModifier(format!(
                    "type modifier is not allowed for type \"{}\"",
                    t.typname()
                )))
            }
        };
        let length = |kind: &str| -> Result<Option<u32>, TypeError> {
            match mods {
                [] => Ok(None),
                [n] if *n >= 1 && *n <= 10_485_760 => Ok(Some(*n as u32)),
                [_] => Err(TypeError::InvalidModifier(format!(
                    "length for type {kind} must be between 1 and 10485760"
                ))),
                _ => Err(TypeError::InvalidModifier(format!(
                    "invalid type modifier for type {kind}"
                ))),
            }
        };
        Some(match base {
            "bool" | "boolean" => no_mods(PgType::Bool),
            "int2" | "smallint" | "smallserial" | "serial2" => no_mods(PgType::Int2),
            "int" | "int4" | "integer" | "serial" | "serial4" => no_mods(PgType::Int4),
            "int8" | "bigint" | "bigserial" | "serial8" => no_mods(PgType::Int8),
            "float4" | "real" => no_mods(PgType::Float4),
            "float8" | "double precision" | "double" => no_mods(PgType::Float8),
            "float" => match mods {
                [] => Ok(PgType::Float8),
                [p] if (1..=24).contains(p) => Ok(PgType::Float4),
                [p] if (25..=53).contains(p) => Ok(PgType::Float8),
                _ => Err(TypeError::InvalidModifier(
                    "precision for type float must be between 1 and 53 bits".into(),
                )),
            },
            "numeric" | "decimal" => match mods {
                [] => Ok(PgType::Numeric(None)),
                [p] | [p, _] if *p < 1 || *p > MAX_NUMERIC_PRECISION as i64 => {
                    Err(TypeError::InvalidModifier(format!(
                        "NUMERIC precision {p} must be between 1 and {MAX_NUMERIC_PRECISION}"
                    )))
                }
                [p] => Ok(PgType::Numeric(Some((*p as u8, 0)))),
                [p, s] if *s >= 0 && s <= p => Ok(PgType::Numeric(Some((*p as u8, *s as i8)))),
                [_, s] => Err(TypeError::InvalidModifier(format!(
                    "NUMERIC scale {s} must be between 0 and precision"
                ))),
                _ => Err(TypeError::InvalidModifier(
                    "invalid NUMERIC type modifier".into(),
                )),
            },
            "text" => no_mods(PgType::Text),
            "varchar" | "character varying" | "char varying" => {
                length("character varying").map(PgType::Varchar)
            }
            "bpchar" | "char" | "character" => {
                length("character").map(|n| PgType::Bpchar(n.unwrap_or(1)))
            }
            "date" => no_mods(PgType::Date),
            "timestamp" | "timestamp without time zone" => {
                timestamp_precision(mods).map(|_| PgType::Timestamp)
            }
            "timestamptz" | "timestamp with time zone" => {
                timestamp_precision(mods).map(|_| PgType::Timestamptz)
            }
            "bytea" => no_mods(PgType::Bytea),
            "json" => no_mods(PgType::Json),
            "jsonb" => no_mods(PgType::Jsonb),
            "uuid" => no_mods(PgType::Uuid),
            _ => return None,
        })
    }

    /// Whether a declared type name is a serial pseudo-type (implies a sequence default).
    pub fn is_serial_name(name: &str) -> bool {
        matches!(
            name.trim().to_ascii_lowercase().as_str(),
            "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2"
        )
    }
}

/// Timestamp precision modifiers are accepted (0..=6) and ignored: storage is microseconds.
fn timestamp_precision(mods: &[i64]) -> Result<(), TypeError> {
    match mods {
        [] => Ok(()),
        [p] if (0..=6).contains(p) => Ok(()),
        _ => Err(TypeError::InvalidModifier(
            "TIMESTAMP precision must be between 0 and 6".into(),
        )),
    }
}

/// Real PostgreSQL types that deltagate does not (yet) store; they get 0A000, not 42704.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "time",
    "time without time zone",
    "time with time zone",
    "timetz",
    "interval",
    "money",
    "inet",
    "cidr",
    "macaddr",
    "xml",
    "bit",
    "bit varying",
    "varbit",
    "point",
    "line",
    "box",
    "polygon",
    "circle",
    "tsvector",
    "tsquery",
    "int4range",
    "int8range",
    "tsrange",
    "tstzrange",
    "daterange",
    "oid",
    "name",
];
