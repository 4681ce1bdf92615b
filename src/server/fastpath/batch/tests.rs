//! Unit tests of a held batch: absorbing its own messages from the read buffer, stopping at
//! anything else, and its parser of Bind, Describe and Execute taking only whole, well-formed
//! messages within its size limit.

use bytes::Bytes;

use crate::server::fastpath::wire::tests::typed;
use crate::server::params::tests::wire;

use super::absorb::MAX_ABSORBED;
use super::*;

/// The prepared INSERT `ins` of `params` text parameters.
fn statement(params: usize) -> Arc<StoredStatement<PreparedStatement>> {
    Arc::new(StoredStatement::new(
        "ins".into(),
        PreparedStatement {
            statement: None,
            param_types: vec![None; params],
            fields: None,
            batchable: true,
            param_oids: vec![23; params],
        },
        Vec::new(),
    ))
}

/// A Bind of statement `name` into the unnamed portal, text values, no result formats.
fn bind(name: &str, values: &[Option<&str>]) -> Vec<u8> {
    let values: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
    let mut body = format!("\0{name}\0").into_bytes();
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&(values.len() as u16).to_be_bytes());
    body.extend_from_slice(&wire(&values));
    body.extend_from_slice(&[0, 0]);
    typed(b'B', &body)
}

fn execute() -> Vec<u8> {
    typed(b'E', b"\0\0\0\0\0")
}

/// A batch holding one executed Bind of `ins` with values `1, NULL`.
fn holding_one() -> (Batch, Arc<StoredStatement<PreparedStatement>>) {
    let batch = Batch::default();
    let statement = statement(2);
    let first = Bind::new(
        None,
        Some("ins".into()),
        Vec::new(),
        vec![Some(Bytes::from_static(b"1")), None],
        Vec::new(),
    );
    assert!(batch.lock().takes(&statement, &first));
    batch.lock().bind(&statement, first);
    assert!(!batch.lock().execute());
    (batch, statement)
}

#[test]
fn the_batchs_own_messages_are_taken_from_the_buffer_and_the_rest_is_left() {
    let (batch, statement) = holding_one();
    let mut buffer = BytesMut::new();
    for n in 2..5 {
        buffer.extend_from_slice(&bind("ins", &[Some(&n.to_string()), None]));
        buffer.extend_from_slice(&typed(b'D', b"P\0"));
        buffer.extend_from_slice(&execute());
    }
    let sync = typed(b'S', &[]);
    buffer.extend_from_slice(&sync);
    assert!(!absorb(&mut buffer, &batch));
    assert_eq!(&buffer[..], &sync[..], "only the Sync is left for pgwire");
    let held = batch.lock();
    assert_eq!(held.rows.len(), 4);
    // BindComplete and CommandComplete for the first row, then NoData for each Describe.
    assert_eq!(held.replies.len(), 2 + 3 * 3);
    assert!(!held.bound);
    assert_eq!(
        held.statement_named("ins").map(|s| s.id.clone()),
        Some("ins".into())
    );
    assert!(held.statement_named("other").is_none());
    drop(held);
    assert!(batch.lock().takes(
        &statement,
        &Bind::new(
            None,
            Some("ins".into()),
            Vec::new(),
            vec![None, None],
            Vec::new()
        )
    ));
}

#[test]
fn anything_else_stops_the_batch_where_it_stands() {
    let others = [
        bind("other", &[Some("2"), None]), // another statement
        bind("ins", &[Some("2")]),         // another number of values
        typed(b'B', b"\0ins\0\0"),         // malformed
        typed(b'D', b"Sins\0"),            // Describe of the statement, not the portal
        typed(b'Q', b"SELECT 1\0"),
        typed(b'E', b"p\0\0\0\0\0"), // Execute of another portal
    ];
    for other in others {
        let (batch, _) = holding_one();
        let mut buffer = BytesMut::from(&other[..]);
        buffer.extend_from_slice(&execute());
        let before = buffer.clone();
        assert!(!absorb(&mut buffer, &batch));
        assert_eq!(buffer, before, "{other:?} and what follows stay");
        assert_eq!(batch.lock().rows.len(), 1);
    }
    // A Bind that is not executed yet holds the batch: a second Bind is not taken.
    let (batch, _) = holding_one();
    let mut buffer = BytesMut::new();
    buffer.extend_from_slice(&bind("ins", &[Some("2"), None]));
    buffer.extend_from_slice(&bind("ins", &[Some("3"), None]));
    assert!(!absorb(&mut buffer, &batch));
    assert_eq!(&buffer[..], &bind("ins", &[Some("3"), None])[..]);
    assert!(batch.lock().holds(DEFAULT_NAME));
}

/// What a batch holds: its rows, its replies, and whether a Bind waits for its Execute.
type State = (usize, usize, bool);

/// Absorbs `bytes` into `batch`: what it holds when all of `bytes` was taken, `None` when none
/// of it was (and nothing was held).
fn absorbed(batch: &Batch, bytes: &[u8]) -> Option<State> {
    let state = |held: &Held| (held.rows.len(), held.replies.len(), held.bound);
    let before = state(&batch.lock());
    let mut buffer = BytesMut::from(bytes);
    assert!(!absorb(&mut buffer, batch), "the batch is not full");
    let after = state(&batch.lock());
    if buffer.is_empty() {
        return Some(after);
    }
    assert_eq!(&buffer[..], bytes, "left whole");
    assert_eq!(after, before, "nothing held");
    None
}

#[test]
fn the_batchs_parser_takes_only_whole_well_formed_messages_within_its_size() {
    let next = bind("ins", &[Some("2"), None]);
    let describe = typed(b'D', b"P\0");
    let execute = execute();
    // Each message the batch reads itself, whether it comes after a Bind not executed yet,
    // and the rows, replies and waiting Bind held after it.
    let cases: [(&str, &[u8], bool, State); 3] = [
        ("Bind", &next, false, (2, 3, true)),
        ("Describe", &describe, true, (2, 4, true)),
        ("Execute", &execute, true, (2, 4, false)),
    ];
    for (what, message, after_bind, held) in cases {
        let batch = || {
            let (batch, _) = holding_one();
            if after_bind {
                assert_eq!(absorbed(&batch, &next), Some((2, 3, true)));
            }
            batch
        };
        assert_eq!(absorbed(&batch(), message), Some(held), "{what}");
        // Not whole yet (its length says more than has arrived): left until the rest comes.
        for cut in 1..message.len() {
            assert_eq!(
                absorbed(&batch(), &message[..cut]),
                None,
                "{what} cut at {cut}"
            );
        }
        // Fields that run past its length, or bytes after its fields: left for `wire` to
        // refuse.
        let (kind, body) = (message[0], &message[5..]);
        for short in 0..body.len() {
            let truncated = typed(kind, &body[..short]);
            assert_eq!(absorbed(&batch(), &truncated), None, "{what} to {short}");
        }
        let overlong = typed(kind, &[body, b"\0"].concat());
        assert_eq!(
            absorbed(&batch(), &overlong),
            None,
            "{what} with a byte more"
        );
        // A length past the batch's own limit: left for pgwire's, before the body arrives.
        let mut oversized = vec![kind];
        oversized.extend_from_slice(&(MAX_ABSORBED as u32 + 1).to_be_bytes());
        assert_eq!(absorbed(&batch(), &oversized), None, "{what} oversized");
    }
    // A whole Bind over the limit: left too.
    let big = "1".repeat(MAX_ABSORBED);
    let big = bind("ins", &[Some(&big), None]);
    assert_eq!(absorbed(&holding_one().0, &big), None);
}
