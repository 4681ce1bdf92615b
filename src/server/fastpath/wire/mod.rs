//! The frontend protocol's framing and message layouts, checked before pgwire decodes a message.
//!
//! pgwire's decoders read a message's fields from the whole read buffer, unchecked: a message
//! whose fields run past its length panics the connection's task (or reads the next message),
//! and one with bytes left over has them decoded as another message. [`frame`] checks the
//! message at the front of a connection's read buffer as PostgreSQL reads one (`pq_getmessage`,
//! `pq_getmsg*`, `pq_getmsgend`): its length, its type for the connection's [`Phase`], and the
//! layout of its fields; the connection then hands pgwire that message alone. [`check_bind`]
//! adds the counts a Bind must agree on with its statement. The answers are PostgreSQL's: a
//! stream that cannot be framed any more ends the connection (FATAL), a message that is whole
//! but malformed is an error the connection survives (both `protocol_violation`, see `errors`).

use pgwire::api::DEFAULT_NAME;
use pgwire::messages::extendedquery::Bind;

/// Largest message of the kinds that carry statements and data: Query, Parse, Bind and
/// CopyData (PostgreSQL's `PQ_LARGE_MESSAGE_LIMIT`, and pgwire's).
pub const LARGE_MESSAGE: usize = 0x3fff_ffff - 1;
/// Largest message of any other kind, and largest startup packet (PostgreSQL's
/// `PQ_SMALL_MESSAGE_LIMIT` and `MAX_STARTUP_PACKET_LENGTH`, and pgwire's).
pub const SMALL_MESSAGE: usize = 10_000;

/// The code a CancelRequest carries instead of a protocol version.
const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// A CancelRequest: length, code, process id, and a key of 4 to 256 bytes (protocol 3.2).
const CANCEL_REQUEST: std::ops::RangeInclusive<usize> = 16..=12 + 256;

/// Which messages a connection reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The startup packet or a CancelRequest (no type byte).
    Startup,
    /// The password exchange: password messages only.
    Authentication,
    /// Simple and extended queries.
    Query,
    /// COPY FROM STDIN.
    Copy,
}

/// What the front of a connection's read buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Not a whole message yet: at least this many bytes are needed in all.
    Incomplete(usize),
    /// A well-formed message of this many bytes (type, length and body).
    Message(usize),
    /// A whole message of `len` bytes that is malformed; the connection goes on after it.
    Malformed {
        len: usize,
        kind: u8,
        error: ProtocolError,
    },
    /// Bytes that cannot be framed: the connection must end.
    Broken(ProtocolError),
}

/// Violations of the frontend protocol, with PostgreSQL's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid message length")]
    Length,
    #[error("invalid length of startup packet")]
    StartupLength,
    #[error("invalid startup packet layout: expected terminator as last byte")]
    StartupLayout,
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0 to 3.2")]
    UnsupportedProtocol(u16, u16),
    #[error("invalid length of query cancel packet")]
    CancelLength,
    #[error("invalid frontend message type {0}")]
    MessageType(u8),
    #[error("expected password response, got message type {0}")]
    ExpectedPassword(u8),
    #[error("received unencrypted data after SSL request")]
    UnencryptedData,
    #[error("insufficient data left in message")]
    Insufficient,
    #[error("invalid string in message")]
    String,
    #[error("invalid message format")]
    Format,
    #[error("invalid DESCRIBE message subtype {0}")]
    DescribeSubtype(u8),
    #[error("invalid CLOSE message subtype {0}")]
    CloseSubtype(u8),
    #[error("bind message has {formats} parameter formats but {parameters} parameters")]
    ParameterFormats { formats: usize, parameters: usize },
    #[error(
        "bind message supplies {supplied} parameters, but prepared statement \"{statement}\" requires {required}"
    )]
    ParameterCount {
        supplied: usize,
        statement: String,
        required: usize,
    },
    #[error("bind message has {formats} result formats but query has {columns} columns")]
    ResultFormats { formats: usize, columns: usize },
    #[error("unsupported format code: {0}")]
    FormatCode(i16),
    #[error("invalid password packet size")]
    PasswordPacket,
}

/// Checks the message at the front of `buffer`, read in `phase`.
pub fn frame(buffer: &[u8], phase: Phase) -> Frame {
    match phase {
        Phase::Startup => startup_packet(buffer),
        Phase::Authentication | Phase::Query | Phase::Copy => message(buffer, phase),
    }
}

/// A startup packet or CancelRequest: a length, a protocol version (or code), and for a
/// startup packet name/value strings ended by an empty one.
fn startup_packet(buffer: &[u8]) -> Frame {
    let Some(&[a, b, c, d]) = buffer.get(..4) else {
        return Frame::Incomplete(4);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if !(8..=SMALL_MESSAGE).contains(&len) {
        return Frame::Broken(ProtocolError::StartupLength);
    }
    let Some(packet) = buffer.get(..len) else {
        return Frame::Incomplete(len);
    };
    let Some(&[a, b, c, d]) = packet.get(4..8) else {
        return Frame::Broken(ProtocolError::StartupLength);
    };
    let code = u32::from_be_bytes([a, b, c, d]);
    if code == CANCEL_REQUEST_CODE {
        return if CANCEL_REQUEST.contains(&len) {
            Frame::Message(len)
        } else {
            Frame::Broken(ProtocolError::CancelLength)
        };
    }
    let (major, minor) = ((code >> 16) as u16, code as u16);
    if major != 3 {
        // Also a second SSLRequest (1234.5679) once TLS was negotiated, as in PostgreSQL.
        return Frame::Broken(ProtocolError::UnsupportedProtocol(major, minor));
    }
    match packet.get(8..) {
        Some([.., 0]) => Frame::Message(len),
        _ => Frame::Broken(ProtocolError::StartupLayout),
    }
}

/// A typed message: type byte, length (counting itself), body.
fn message(buffer: &[u8], phase: Phase) -> Frame {
    let Some(&[kind, a, b, c, d]) = buffer.get(..5) else {
        return Frame::Incomplete(5);
    };
    let known = match phase {
        Phase::Authentication => matches!(kind, b'p' | b'X'),
        _ => matches!(
            kind,
            b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'H' | b'X' | b'd' | b'c' | b'f'
        ),
    };
    if !known {
        return Frame::Broken(match phase {
            Phase::Authentication => ProtocolError::ExpectedPassword(kind),
            _ => ProtocolError::MessageType(kind),
        });
    }
    let limit = match kind {
        b'Q' | b'P' | b'B' | b'd' => LARGE_MESSAGE,
        _ => SMALL_MESSAGE,
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if !(4..=limit).contains(&len) {
        return Frame::Broken(ProtocolError::Length);
    }
    let Some(body) = buffer.get(5..1 + len) else {
        return Frame::Incomplete(1 + len);
    };
    match layout(kind, body, phase) {
        Ok(()) => Frame::Message(1 + len),
        Err(error) => Frame::Malformed {
            len: 1 + len,
            kind,
            error,
        },
    }
}

/// Checks the fields of a message body as PostgreSQL reads them.
fn layout(kind: u8, body: &[u8], phase: Phase) -> Result<(), ProtocolError> {
    let mut fields = Fields(body);
    match kind {
        b'Q' => {
            fields.string()?;
        }
        b'P' => {
            fields.string()?;
            fields.string()?;
            let types = fields.count()?;
            fields.take(4 * types)?;
        }
        b'B' => {
            fields.string()?;
            fields.string()?;
            let formats = fields.count()?;
            fields.take(2 * formats)?;
            for _ in 0..fields.count()? {
                let len = fields.i32()?;
                if len != -1 {
                    fields.take(usize::try_from(len).map_err(|_| ProtocolError::Insufficient)?)?;
                }
            }
            let formats = fields.count()?;
            fields.take(2 * formats)?;
        }
        b'D' | b'C' => {
            let target = fields.u8()?;
            fields.string()?;
            fields.end()?;
            return match (kind, target) {
                (_, b'S' | b'P') => Ok(()),
                (b'D', other) => Err(ProtocolError::DescribeSubtype(other)),
                (_, other) => Err(ProtocolError::CloseSubtype(other)),
            };
        }
        b'E' => {
            fields.string()?;
            fields.i32()?;
        }
        // PostgreSQL ignores both during COPY without reading them.
        b'S' | b'H' if phase != Phase::Copy => {}
        // Any body: CopyData, CopyDone, Terminate, Sync and Flush during COPY, password
        // messages (parsed by `auth`), and CopyFail, whose text pgwire reads up to the end.
        _ => return Ok(()),
    }
    fields.end()
}

/// Reads a message body's fields in order.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ProtocolError> {
        let (taken, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(ProtocolError::Insufficient)?;
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    /// A count of 2 bytes, unsigned as PostgreSQL and pgwire read it.
    fn count(&mut self) -> Result<usize, ProtocolError> {
        match self.take(2)? {
            &[a, b] => Ok(usize::from(u16::from_be_bytes([a, b]))),
            _ => Err(ProtocolError::Insufficient),
        }
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        match self.take(4)? {
            &[a, b, c, d] => Ok(i32::from_be_bytes([a, b, c, d])),
            _ => Err(ProtocolError::Insufficient),
        }
    }

    /// A string ended by a zero byte.
    fn string(&mut self) -> Result<(), ProtocolError> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or(ProtocolError::String)?;
        self.take(end + 1).map(|_| ())
    }

    fn end(&self) -> Result<(), ProtocolError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Format)
        }
    }
}

/// Checks a Bind against its statement: `required` parameters, `columns` result columns (as
/// PostgreSQL's `exec_bind_message` does; pgwire indexes format codes by column).
///
/// # Errors
/// The first count or format code that does not agree.
pub fn check_bind(
    bind: &Bind,
    statement: &str,
    required: usize,
    columns: usize,
) -> Result<(), ProtocolError> {
    let formats = bind.parameter_format_codes.len();
    let parameters = bind.parameters.len();
    if formats > 1 && formats != parameters {
        return Err(ProtocolError::ParameterFormats {
            formats,
            parameters,
        });
    }
    if parameters != required {
        return Err(ProtocolError::ParameterCount {
            supplied: parameters,
            statement: if statement == DEFAULT_NAME {
                String::new()
            } else {
                statement.to_owned()
            },
            required,
        });
    }
    check_format_codes(&bind.parameter_format_codes)?;
    check_result_formats(bind.result_column_format_codes.len(), columns)?;
    check_format_codes(&bind.result_column_format_codes)
}

/// Result format codes are one for all columns, or one per column.
///
/// # Errors
/// [`ProtocolError::ResultFormats`].
pub fn check_result_formats(formats: usize, columns: usize) -> Result<(), ProtocolError> {
    if formats > 1 && formats != columns {
        return Err(ProtocolError::ResultFormats { formats, columns });
    }
    Ok(())
}

fn check_format_codes(codes: &[i16]) -> Result<(), ProtocolError> {
    match codes.iter().find(|c| !matches!(c, 0 | 1)) {
        Some(code) => Err(ProtocolError::FormatCode(*code)),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(in crate::server) mod tests;
