//! Entry points for the fuzz targets in `fuzz/` (`cargo +nightly fuzz run messages`); not an
//! API.
//!
//! [`messages`] feeds arbitrary bytes through everything that decodes what a client sends, as a
//! connection does: framing and layout checks (`fastpath::wire`), pgwire's decoder on each
//! framed message, the password messages and the SCRAM exchange (`auth`), the Bind checks and
//! the decoding of parameter values into scalars (`params`), and a held batch taking Binds,
//! Describes and Executes straight from the buffer and decoding them column by column
//! (`fastpath::batch`). Whatever the bytes, none of it may panic.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::api::{DEFAULT_NAME, Type};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};

use crate::pgtypes::PG_TYPE_KEY;
use crate::sql::PreparedStatement;

use super::fastpath::batch;
use super::fastpath::wire::{self, Frame, Phase};
use super::{auth, encode, params};

/// The parameter types a statement may have as planning inferred them: Arrow types, some
/// carrying a column's PostgreSQL type, and untyped.
fn inferred(choice: u8) -> Option<Field> {
    let (ty, pg) = match choice % 16 {
        0 => return None,
        1 => (DataType::Int16, None),
        2 => (DataType::Int32, None),
        3 => (DataType::Int64, None),
        4 => (DataType::Float32, None),
        5 => (DataType::Float64, None),
        6 => (DataType::Boolean, None),
        7 => (DataType::Utf8, None),
        8 => (DataType::Utf8, Some("character varying(5)")),
        9 => (DataType::Decimal128(12, 3), Some("numeric(12,3)")),
        10 => (DataType::Date32, None),
        11 => (DataType::Timestamp(TimeUnit::Microsecond, None), None),
        12 => (
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Some("timestamp with time zone"),
        ),
        13 => (DataType::Binary, None),
        14 => (DataType::Utf8, Some("uuid")),
        _ => (DataType::Utf8, Some("jsonb")),
    };
    let field = Field::new("p", ty, true);
    Some(match pg {
        Some(pg) => field.with_metadata([(PG_TYPE_KEY.to_owned(), pg.to_owned())].into()),
        None => field,
    })
}

/// The types a client may declare in Parse.
fn declared(choice: u8) -> Option<Type> {
    const TYPES: [Type; 15] = [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::TEXT,
        Type::VARCHAR,
        Type::BYTEA,
        Type::DATE,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::UUID,
        Type::JSONB,
    ];
    TYPES.get(usize::from(choice % 16)).cloned()
}

/// A statement named `name` with parameters of the types the bytes of `shape` choose (low
/// half: inferred type, high half: declared one).
fn statement(name: &str, shape: &[u8]) -> Arc<StoredStatement<PreparedStatement>> {
    let param_types: Vec<Option<Field>> = shape.iter().map(|b| inferred(b & 15)).collect();
    let param_oids = param_types
        .iter()
        .map(|f| f.as_ref().map_or(Type::TEXT, encode::parameter_type).oid())
        .collect();
    let prepared = PreparedStatement {
        statement: None,
        param_types,
        fields: None,
        batchable: true,
        param_oids,
    };
    let declared = shape.iter().map(|b| declared(b >> 4)).collect();
    Arc::new(StoredStatement::new(name.to_owned(), prepared, declared))
}

/// Feeds `data` through the decoding of frontend messages. The first byte chooses the phase
/// and protocol version, the second how many parameters the statement has (up to 7), the next
/// bytes their types; the rest are the messages.
pub fn messages(data: &[u8]) {
    let Some((&[selector, count], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (shape, rest) = rest.split_at(usize::from(count % 8).min(rest.len()));
    let phase = match selector % 4 {
        0 => Phase::Startup,
        1 => Phase::Authentication,
        2 => Phase::Query,
        _ => Phase::Copy,
    };
    let mut context = DecodeContext::new(if selector & 4 == 0 {
        ProtocolVersion::PROTOCOL3_0
    } else {
        ProtocolVersion::PROTOCOL3_2
    });
    context.awaiting_frontend_ssl = false;
    context.awaiting_frontend_startup = phase == Phase::Startup;
    let mut buffer = BytesMut::from(rest);
    let mut batched = false;
    loop {
        match wire::frame(&buffer, phase) {
            Frame::Incomplete(_) | Frame::Broken(_) => return,
            Frame::Malformed { len, .. } => buffer.advance(len),
            Frame::Message(len) => {
                let mut message = buffer.split_to(len);
                match PgWireFrontendMessage::decode(&mut message, &context) {
                    Ok(Some(PgWireFrontendMessage::Bind(bind))) => {
                        let name = bind.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
                        let statement = statement(name, shape);
                        let required = statement.statement.param_types.len();
                        if wire::check_bind(&bind, name, required, 0).is_err() {
                            continue;
                        }
                        if let Ok(portal) = Portal::try_new(&bind, statement.clone()) {
                            let _ = params::parameters(&portal);
                        }
                        if !batched {
                            batched = true;
                            batch::decode_held(&statement, bind, &mut buffer.clone());
                        }
                    }
                    Ok(Some(PgWireFrontendMessage::PasswordMessageFamily(
                        PasswordMessageFamily::Raw(body),
                    ))) => auth::decode_password_message(&body),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The kept corpus of the `messages` fuzz target (see `fuzz/`) goes through [`messages`] in
    /// every test run, not only under the fuzzer.
    #[test]
    fn the_kept_message_corpus_decodes_without_panicking() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/messages");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/messages") {
            let data = std::fs::read(entry.expect("entry").path()).expect("input");
            super::messages(&data);
            inputs += 1;
        }
        assert!(inputs > 0, "the corpus is empty");
    }
}
