//! Taking a held batch's Binds, Describes and Executes straight from a connection's read
//! buffer, without pgwire's decoder (see [`absorb`]).
//!
//! This is a parser of its own for the three messages a batch is made of, forked from pgwire's
//! decoding of them: it reads only a whole message of at most [`MAX_ABSORBED`] bytes whose
//! fields end exactly at its length, and leaves anything else (another statement or portal, a
//! malformed or oversized message, one not whole yet) in the buffer, where `wire` frames it
//! and pgwire decodes it as if nothing had been absorbed. Names are read as pgwire names them
//! (the empty one as `DEFAULT_NAME`). Called by the connection loop (`message_loop`) through
//! `QueryHandler::absorb`, only while the connection is ready for queries.

use bytes::{Buf, BytesMut};
use pgwire::api::DEFAULT_NAME;
use pgwire::api::stmt::StoredStatement;
use pgwire::messages::extendedquery::TARGET_TYPE_BYTE_PORTAL;

use crate::sql::PreparedStatement;

use super::{Batch, Held, Reply};

/// One complete message at the start of `buffer`: its type, its body, and its whole length.
fn message(buffer: &[u8]) -> Option<(u8, &[u8], usize)> {
    let header = buffer.get(..5)?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=MAX_ABSORBED).contains(&len) {
        return None;
    }
    let body = buffer.get(5..1 + len)?;
    Some((header[0], body, 1 + len))
}

/// A Bind, Describe or Execute bigger than this goes through pgwire (and its size limit).
pub(super) const MAX_ABSORBED: usize = 1 << 20;

/// Reads the fields of a message body in order; `None` past its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn cstring(&mut self) -> Option<&'a str> {
        let end = self.0.iter().position(|b| *b == 0)?;
        let text = std::str::from_utf8(self.take(end)?).ok()?;
        self.take(1)?;
        Some(text)
    }

    /// A statement or portal name, the empty one as pgwire names it.
    fn name(&mut self) -> Option<&'a str> {
        self.cstring()
            .map(|name| if name.is_empty() { DEFAULT_NAME } else { name })
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count, then that many values of `width` bytes, returned together.
    fn counted(&mut self, width: usize) -> Option<&'a [u8]> {
        let count = usize::try_from(self.i16()?).ok()?;
        self.take(count * width)
    }

    /// A Bind's parameter values: a count, then each as a length (-1 for NULL) and its bytes.
    /// Returns the count and the bytes that hold them (see
    /// [`Rows::push_wire`](crate::server::params::Rows::push_wire)).
    fn values(&mut self) -> Option<(usize, &'a [u8])> {
        let count = usize::try_from(self.i16()?).ok()?;
        let start = self.0;
        for _ in 0..count {
            let len = self.i32()?;
            if len != -1 {
                self.take(usize::try_from(len).ok()?)?;
            }
        }
        Some((count, &start[..start.len() - self.0.len()]))
    }
}

impl Held {
    /// Holds a Bind of the held statement, given as its body; `None` (holding nothing) when
    /// it is for something else or malformed.
    fn absorb_bind(
        &mut self,
        statement: &StoredStatement<PreparedStatement>,
        mut fields: Fields,
    ) -> Option<()> {
        let portal = fields.name()?;
        let name = fields.name()?;
        let formats = fields.counted(2)?;
        let (count, values) = fields.values()?;
        let result_formats = fields.counted(2)?;
        let holds = name == statement.id
            && fields.0.is_empty()
            && self.accepts(statement, portal, formats, count, result_formats);
        (holds && self.rows.push_wire(values)).then(|| {
            self.bound = true;
            self.replies.push(Reply::BindComplete);
        })
    }

    /// Holds a Describe of the held portal, given as its body.
    fn absorb_describe(&mut self, mut fields: Fields) -> Option<()> {
        let target = fields.take(1)?;
        let name = fields.name()?;
        (target == [TARGET_TYPE_BYTE_PORTAL] && fields.0.is_empty() && self.holds(name))
            .then(|| self.describe())
    }

    /// Holds an Execute of the held portal, given as its body; whether the batch is full.
    fn absorb_execute(&mut self, mut fields: Fields) -> Option<bool> {
        let name = fields.name()?;
        fields.i32()?;
        (fields.0.is_empty() && self.holds(name)).then(|| self.execute())
    }
}

/// Takes the Binds, Describes and Executes of the held batch straight from the connection's
/// read buffer, as long as complete ones come first, without decoding them into pgwire
/// messages: a client batch is three such messages a row, and pgwire makes a `Bytes` of every
/// value and a `String` of every name. Anything else (another statement or portal, a
/// malformed message, a Sync) is left in the buffer for pgwire and the handlers, which then
/// see what they would have seen after these messages. Call only while the connection is
/// ready for queries. Returns whether the batch is full and must run now.
pub(in crate::server) fn absorb(buffer: &mut BytesMut, batch: &Batch) -> bool {
    let mut held = batch.lock();
    let Some(statement) = held.statement.clone() else {
        return false;
    };
    while let Some((kind, body, len)) = message(buffer) {
        let full = match kind {
            b'B' => held.absorb_bind(&statement, Fields(body)).map(|()| false),
            b'D' => held.absorb_describe(Fields(body)).map(|()| false),
            b'E' => held.absorb_execute(Fields(body)),
            _ => None,
        };
        let Some(full) = full else {
            break;
        };
        buffer.advance(len);
        if full {
            return true;
        }
    }
    false
}
