//! The binary format: the signature and header, then tuples of length-prefixed fields, each
//! rendered as the text PostgreSQL would accept for the same value so that all formats share
//! one typed conversion.
//!
//! A tuple is decoded only once all of it has arrived; a field that does not decode as its
//! column's type (a wrong length, say) is `invalid_binary_representation`. Called by [`Decoder`]'s format dispatch
//! in the parent module.

use chrono::{DateTime, NaiveDate};

use crate::pgtypes::PgType;

use super::{CopyFault, DataError, Decoder, Result};

/// The bytes a binary COPY input starts with, before its flags and header extension.
pub(super) const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl Decoder {
    /// Decodes the header, then the complete tuples at the start of `input`; returns the bytes
    /// consumed.
    pub(super) fn binary_records(&mut self, input: &[u8]) -> Result<usize> {
        let mut pos = 0;
        if !self.header_done {
            if input.len() < BINARY_SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &input[..BINARY_SIGNATURE.len()] != BINARY_SIGNATURE {
                return Err(self.error(
                    CopyFault::BadCopyFileFormat,
                    "COPY file signature not recognized".into(),
                ));
            }
            let flags = be_i32(&input[11..15]);
            if flags & (1 << 16) != 0 {
                return Err(self.error(
                    CopyFault::BadCopyFileFormat,
                    "COPY file has OIDs, which are not supported".into(),
                ));
            }
            let extension = be_i32(&input[15..19]).max(0) as usize;
            if input.len() < 19 + extension {
                return Ok(0);
            }
            pos = 19 + extension;
            self.header_done = true;
        }
        loop {
            let tuple_start = pos;
            if input.len() < pos + 2 {
                return Ok(tuple_start);
            }
            let count = i16::from_be_bytes([input[pos], input[pos + 1]]);
            pos += 2;
            if count == -1 {
                self.ended = true;
                return Ok(input.len());
            }
            if count as usize != self.builders.len() {
                return Err(self.error(
                    CopyFault::BadCopyFileFormat,
                    format!(
                        "row field count is {count}, expected {}",
                        self.builders.len()
                    ),
                ));
            }
            // Check the whole tuple is here before decoding any of it.
            let mut scan = pos;
            for _ in 0..count {
                if input.len() < scan + 4 {
                    return Ok(tuple_start);
                }
                let len = be_i32(&input[scan..scan + 4]);
                scan += 4 + len.max(0) as usize;
            }
            if input.len() < scan {
                return Ok(tuple_start);
            }
            for column in 0..count as usize {
                let len = be_i32(&input[pos..pos + 4]);
                pos += 4;
                if len < 0 {
                    self.push_null(column)?;
                    continue;
                }
                let bytes = &input[pos..pos + len as usize];
                pos += len as usize;
                self.text.clear();
                let mut text = std::mem::take(&mut self.text);
                if let Err(message) = binary_to_text(self.types[column], bytes, &mut text) {
                    return Err(DataError {
                        code: CopyFault::InvalidBinaryRepresentation,
                        ..self.value_error(column, message, b"")
                    });
                }
                self.builders[column].append_value(&text);
                self.text = text;
            }
            self.lines.push(self.line);
            self.line += 1;
        }
    }
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

const PG_EPOCH_DAYS: i64 = 10_957; // 2000-01-01 - 1970-01-01

/// Renders a binary COPY field as the text PostgreSQL would accept for the same value.
fn binary_to_text(
    pg_type: PgType,
    bytes: &[u8],
    out: &mut String,
) -> std::result::Result<(), String> {
    use std::fmt::Write;
    let exact = |n: usize| -> std::result::Result<(), String> {
        if bytes.len() == n {
            Ok(())
        } else {
            Err(format!(
                "incorrect binary data format: {} bytes for {pg_type}",
                bytes.len()
            ))
        }
    };
    let fixed = |n: usize| -> std::result::Result<[u8; 8], String> {
        exact(n)?;
        let mut buf = [0u8; 8];
        buf[8 - n..].copy_from_slice(bytes);
        Ok(buf)
    };
    match pg_type {
        PgType::Bool => {
            exact(1)?;
            out.push(if bytes[0] != 0 { 't' } else { 'f' });
        }
        PgType::Int2 => {
            let b = fixed(2)?;
            let _ = write!(out, "{}", i16::from_be_bytes([b[6], b[7]]));
        }
        PgType::Int4 => {
            let b = fixed(4)?;
            let _ = write!(out, "{}", i32::from_be_bytes([b[4], b[5], b[6], b[7]]));
        }
        PgType::Int8 => {
            let _ = write!(out, "{}", i64::from_be_bytes(fixed(8)?));
        }
        PgType::Float4 => {
            let b = fixed(4)?;
            let _ = write!(out, "{:?}", f32::from_be_bytes([b[4], b[5], b[6], b[7]]));
        }
        PgType::Float8 => {
            let _ = write!(out, "{:?}", f64::from_be_bytes(fixed(8)?));
        }
        PgType::Text | PgType::Varchar(_) | PgType::Bpchar(_) | PgType::Json => {
            out.push_str(std::str::from_utf8(bytes).map_err(|_| "invalid UTF-8".to_string())?);
        }
        PgType::Jsonb => match bytes.split_first() {
            Some((1, rest)) => {
                out.push_str(std::str::from_utf8(rest).map_err(|_| "invalid UTF-8".to_string())?)
            }
            _ => return Err("unsupported jsonb version number".into()),
        },
        PgType::Bytea => {
            out.push_str("\\x");
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
        }
        PgType::Uuid => {
            exact(16)?;
            for (i, b) in bytes.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push('-');
                }
                let _ = write!(out, "{b:02x}");
            }
        }
        PgType::Date => {
            let b = fixed(4)?;
            let days = i64::from(i32::from_be_bytes([b[4], b[5], b[6], b[7]])) + PG_EPOCH_DAYS;
            let date = NaiveDate::from_num_days_from_ce_opt((days + 719_163) as i32)
                .ok_or_else(|| "date out of range".to_string())?;
            let _ = write!(out, "{}", date.format("%Y-%m-%d"));
        }
        PgType::Timestamp | PgType::Timestamptz => {
            let micros = i64::from_be_bytes(fixed(8)?)
                .checked_add(PG_EPOCH_DAYS * 86_400_000_000)
                .ok_or_else(|| "timestamp out of range".to_string())?;
            let at = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| "timestamp out of range".to_string())?;
            let _ = write!(out, "{}", at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f"));
            if pg_type == PgType::Timestamptz {
                out.push_str("+00");
            }
        }
        PgType::Numeric(_) => numeric_text(bytes, out)?,
    }
    Ok(())
}

/// PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric_text(bytes: &[u8], out: &mut String) -> std::result::Result<(), String> {
    use std::fmt::Write;
    let word = |i: usize| -> std::result::Result<i16, String> {
        bytes
            .get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "incorrect binary data format for numeric".to_string())
    };
    let ndigits = word(0)?.max(0) as usize;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    let dscale = word(3)?.max(0) as usize;
    if sign == 0xC000 {
        return Err("NaN cannot be stored in numeric columns".into());
    }
    let digits = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if sign == 0x4000 {
        out.push('-');
    }
    // Integer part: groups with weight >= 0.
    if weight < 0 {
        out.push('0');
    } else {
        for w in 0..=weight {
            let d = digits.get(w as usize).copied().unwrap_or(0);
            if w == 0 {
                let _ = write!(out, "{d}");
            } else {
                let _ = write!(out, "{d:04}");
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut fraction = String::new();
        let mut group = weight + 1;
        while fraction.len() < dscale {
            let d = if group < 0 {
                0
            } else {
                digits.get(group as usize).copied().unwrap_or(0)
            };
            let _ = write!(fraction, "{d:04}");
            group += 1;
        }
        fraction.truncate(dscale);
        out.push_str(&fraction);
    }
    Ok(())
}
