//! The binary format: the signature and header, then tuples of length-prefixed fields, each
//! decoded as its column's type by [`crate::pgbinary`] (the decoder Bind parameters use too)
//! into the typed builders of [`Builders::Typed`].
//!
//! This file owns the framing: the signature, the flags, the header extension, the field
//! count of each tuple and the trailer. A tuple is decoded only once all of it has arrived;
//! errors name the tuple's number as the line. A field that does not decode as its column's
//! type is `invalid_binary_representation` (a wrong length, say), `untranslatable_character`
//! (text that is not UTF-8) or `numeric_value_out_of_range` (beyond the column's precision).
//! Called by [`Decoder`]'s format dispatch in the parent module.

use crate::pgbinary::{ValueError, ValueFault};

use super::{Builders, CopyFault, DataError, Decoder, Result};
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
            if count as usize != self.width() {
                return Err(self.error(
                    CopyFault::BadCopyFileFormat,
                    format!("row field count is {count}, expected {}", self.width()),
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
                let Builders::Typed(builders) = &mut self.builders else {
                    unreachable!("binary fields go to typed builders")
                };
                if let Err(error) = builders[column].append(bytes) {
                    return Err(self.field_error(column, error));
                }
            }
            self.lines.push(self.line);
            self.line += 1;
        }
    }

    /// A field `pgbinary` refused, as the COPY error PostgreSQL gives for it.
    fn field_error(&self, column: usize, error: ValueError) -> DataError {
        let code = match error.fault {
            ValueFault::Format => CopyFault::InvalidBinaryRepresentation,
            ValueFault::Encoding => CopyFault::UntranslatableCharacter,
            ValueFault::OutOfRange => CopyFault::NumericValueOutOfRange,
        };
        DataError {
            code,
            ..self.value_error(column, error.message, b"")
        }
    }
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}
