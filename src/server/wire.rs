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
pub(super) mod tests {
    use super::*;

    /// A typed message: type byte, length, body.
    pub(in crate::server) fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn whole_messages_are_framed_and_partial_ones_wait() {
        let sync = typed(b'S', &[]);
        assert_eq!(frame(&sync, Phase::Query), Frame::Message(5));
        assert_eq!(frame(&sync[..3], Phase::Query), Frame::Incomplete(5));
        let query = typed(b'Q', b"SELECT 1\0");
        assert_eq!(frame(&query[..7], Phase::Query), Frame::Incomplete(14));
        assert_eq!(frame(&query, Phase::Query), Frame::Message(14));
        let mut startup = 196_608u32.to_be_bytes().to_vec();
        startup.extend_from_slice(b"user\0u\0\0");
        let mut packet = (startup.len() as u32 + 4).to_be_bytes().to_vec();
        packet.extend_from_slice(&startup);
        assert_eq!(frame(&packet, Phase::Startup), Frame::Message(16));
    }

    #[test]
    fn broken_framing_ends_the_connection() {
        assert_eq!(
            frame(&[b'Q', 0, 0, 0, 3], Phase::Query),
            Frame::Broken(ProtocolError::Length)
        );
        assert_eq!(
            frame(&[b'Z', 0, 0, 0, 4], Phase::Query),
            Frame::Broken(ProtocolError::MessageType(b'Z'))
        );
        assert_eq!(
            frame(&typed(b'p', &[]), Phase::Query),
            Frame::Broken(ProtocolError::MessageType(b'p'))
        );
        assert_eq!(
            frame(&typed(b'Q', b"x\0"), Phase::Authentication),
            Frame::Broken(ProtocolError::ExpectedPassword(b'Q'))
        );
        assert_eq!(
            frame(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], Phase::Startup),
            Frame::Broken(ProtocolError::UnsupportedProtocol(1234, 5679))
        );
        assert_eq!(
            frame(&[0, 0, 0, 9, 0, 3, 0, 0, 1], Phase::Startup),
            Frame::Broken(ProtocolError::StartupLayout)
        );
        assert_eq!(
            frame(&[0, 0, 0, 4], Phase::Startup),
            Frame::Broken(ProtocolError::StartupLength)
        );
    }

    #[test]
    fn malformed_bodies_are_errors_the_connection_survives() {
        let malformed = |kind, body: &[u8]| match frame(&typed(kind, body), Phase::Query) {
            Frame::Malformed { error, .. } => error,
            other => panic!("{other:?}"),
        };
        assert_eq!(malformed(b'B', &[]), ProtocolError::String);
        assert_eq!(malformed(b'B', b"\0\0\0"), ProtocolError::Insufficient);
        // One value of 100 bytes announced, 2 sent.
        assert_eq!(
            malformed(b'B', b"\0\0\0\0\0\x01\0\0\0\x64ab\0\0"),
            ProtocolError::Insufficient
        );
        assert_eq!(malformed(b'S', b"x"), ProtocolError::Format);
        assert_eq!(malformed(b'Q', b"SELECT 1"), ProtocolError::String);
        assert_eq!(
            malformed(b'D', b"X\0"),
            ProtocolError::DescribeSubtype(b'X')
        );
        assert_eq!(malformed(b'C', b"X\0"), ProtocolError::CloseSubtype(b'X'));
        assert_eq!(malformed(b'E', b"\0\0\0"), ProtocolError::Insufficient);
        // Flush and Sync are not read during COPY.
        assert_eq!(frame(&typed(b'S', b"x"), Phase::Copy), Frame::Message(6));
    }

    #[test]
    fn binds_agree_with_their_statement() {
        let bind = |formats: Vec<i16>, values: usize, results: Vec<i16>| {
            Bind::new(None, None, formats, vec![None; values], results)
        };
        assert_eq!(check_bind(&bind(vec![1], 2, vec![]), "s", 2, 0), Ok(()));
        assert_eq!(
            check_bind(&bind(vec![1, 0, 1], 2, vec![]), "s", 2, 0),
            Err(ProtocolError::ParameterFormats {
                formats: 3,
                parameters: 2
            })
        );
        assert_eq!(
            check_bind(&bind(vec![], 1, vec![]), DEFAULT_NAME, 2, 0).map_err(|e| e.to_string()),
            Err(
                "bind message supplies 1 parameters, but prepared statement \"\" requires 2".into()
            )
        );
        assert_eq!(
            check_bind(&bind(vec![], 0, vec![0, 1]), "s", 0, 3),
            Err(ProtocolError::ResultFormats {
                formats: 2,
                columns: 3
            })
        );
        assert_eq!(
            check_bind(&bind(vec![7], 1, vec![]), "s", 1, 0),
            Err(ProtocolError::FormatCode(7))
        );
    }

    /// A well-formed message of every type a connection reads: its phase, type, body, and
    /// whether its body has fields (a shorter or longer body is then malformed).
    fn every_message() -> Vec<(Phase, u8, Vec<u8>, bool)> {
        let bind = [
            &b"portal\0stmt\0"[..],
            &[0, 2, 0, 0, 0, 1],       // two parameter formats: text, binary
            &[0, 2],                   // two values:
            &[0, 0, 0, 2, b'4', b'2'], //   "42"
            &[0xff, 0xff, 0xff, 0xff], //   NULL
            &[0, 1, 0, 1],             // one result format: binary
        ]
        .concat();
        vec![
            (Phase::Query, b'Q', b"SELECT 1\0".to_vec(), true),
            (
                Phase::Query,
                b'P',
                b"s\0SELECT $1\0\0\x01\0\0\0\x17".to_vec(),
                true,
            ),
            (Phase::Query, b'B', bind, true),
            (Phase::Query, b'D', b"Ss\0".to_vec(), true),
            (Phase::Query, b'E', b"p\0\0\0\0\x0a".to_vec(), true),
            (Phase::Query, b'C', b"P\0".to_vec(), true),
            (Phase::Query, b'S', Vec::new(), true),
            (Phase::Query, b'H', Vec::new(), true),
            (Phase::Query, b'X', Vec::new(), false),
            (Phase::Copy, b'd', b"1\t2\n".to_vec(), false),
            (Phase::Copy, b'c', Vec::new(), false),
            (Phase::Copy, b'f', b"gave up\0".to_vec(), false),
            (Phase::Copy, b'S', Vec::new(), false),
            (Phase::Authentication, b'p', b"secret\0".to_vec(), false),
        ]
    }

    #[test]
    fn every_message_is_framed_whole_and_waits_when_cut() {
        for (phase, kind, body, _) in every_message() {
            let whole = typed(kind, &body);
            let what = format!("{} {body:?}", kind as char);
            assert_eq!(frame(&whole, phase), Frame::Message(whole.len()), "{what}");
            // Followed by the next message: only this one is framed.
            let two = [whole.clone(), typed(b'S', &[])].concat();
            assert_eq!(frame(&two, phase), Frame::Message(whole.len()), "{what}");
            for cut in 1..whole.len() {
                let expected = Frame::Incomplete(if cut < 5 { 5 } else { whole.len() });
                assert_eq!(frame(&whole[..cut], phase), expected, "{what} cut at {cut}");
            }
        }
    }

    #[test]
    fn every_message_truncated_or_overlong_is_malformed_and_oversized_is_broken() {
        for (phase, kind, body, fields) in every_message() {
            let what = format!("{} {body:?}", kind as char);
            for short in 0..body.len() {
                let truncated = typed(kind, &body[..short]);
                match frame(&truncated, phase) {
                    Frame::Malformed { len, kind: k, .. } if fields => {
                        assert_eq!((len, k), (truncated.len(), kind), "{what}");
                    }
                    Frame::Message(len) if !fields => assert_eq!(len, truncated.len()),
                    other => panic!("{what} truncated to {short}: {other:?}"),
                }
            }
            let overlong = typed(kind, &[&body[..], b"x"].concat());
            match frame(&overlong, phase) {
                Frame::Malformed { error, .. } if fields => {
                    assert_eq!(error, ProtocolError::Format, "{what}");
                }
                Frame::Message(_) if !fields => {}
                other => panic!("{what} with a byte more: {other:?}"),
            }
            // A length past the limit of its type ends the connection before any byte of the
            // body is awaited.
            let limit = if matches!(kind, b'Q' | b'P' | b'B' | b'd') {
                LARGE_MESSAGE
            } else {
                SMALL_MESSAGE
            };
            let mut oversized = vec![kind];
            oversized.extend_from_slice(&(limit as u32 + 1).to_be_bytes());
            assert_eq!(
                frame(&oversized, phase),
                Frame::Broken(ProtocolError::Length),
                "{what}"
            );
        }
    }
}
