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
        Err("bind message supplies 1 parameters, but prepared statement \"\" requires 2".into())
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
        (Phase::Copy, b'H', Vec::new(), false),
        (Phase::Copy, b'X', Vec::new(), false),
        (Phase::Query, b'd', b"1\t2\n".to_vec(), false),
        (Phase::Query, b'c', Vec::new(), false),
        (Phase::Query, b'f', b"gave up\0".to_vec(), false),
        (Phase::Authentication, b'p', b"secret\0".to_vec(), false),
        (Phase::Authentication, b'X', Vec::new(), false),
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
                Frame::Malformed {
                    len,
                    kind: k,
                    error,
                } if fields => {
                    assert_eq!((len, k), (truncated.len(), kind), "{what}");
                    // A body cut short ends in a string without its zero or a field without
                    // its bytes.
                    assert!(
                        matches!(error, ProtocolError::Insufficient | ProtocolError::String),
                        "{what} truncated to {short}: {error:?}"
                    );
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
            Frame::Message(len) if !fields => assert_eq!(len, overlong.len(), "{what}"),
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
        // A length at the limit is awaited.
        let mut largest = vec![kind];
        largest.extend_from_slice(&(limit as u32).to_be_bytes());
        assert_eq!(
            frame(&largest, phase),
            Frame::Incomplete(1 + limit),
            "{what}"
        );
    }
}

/// A packet without a type byte: its length, then `body`.
fn untyped(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32 + 4).to_be_bytes()[..], body].concat()
}

/// A CancelRequest with a key of `key` bytes.
fn cancel_request(key: usize) -> Vec<u8> {
    let body = [
        &CANCEL_REQUEST_CODE.to_be_bytes()[..],
        &4242u32.to_be_bytes(),
        &vec![7; key],
    ]
    .concat();
    untyped(&body)
}

/// A well-formed packet of every kind a connection reads before its startup: the startup
/// packet of protocol 3.0 and 3.2, and a CancelRequest with the shortest (3.0) and longest
/// (3.2) key.
fn every_startup_packet() -> Vec<(&'static str, Vec<u8>)> {
    let startup = |version: u32| untyped(&[&version.to_be_bytes()[..], b"user\0u\0\0"].concat());
    vec![
        ("startup 3.0", startup(0x0003_0000)),
        ("startup 3.2", startup(0x0003_0002)),
        ("cancel with a 4-byte key", cancel_request(4)),
        ("cancel with a 256-byte key", cancel_request(256)),
    ]
}

#[test]
fn every_startup_packet_is_framed_whole_and_waits_when_cut() {
    for (what, whole) in every_startup_packet() {
        assert_eq!(
            frame(&whole, Phase::Startup),
            Frame::Message(whole.len()),
            "{what}"
        );
        // Followed by more bytes: only this packet is framed.
        let two = [whole.clone(), typed(b'Q', b"x\0")].concat();
        assert_eq!(
            frame(&two, Phase::Startup),
            Frame::Message(whole.len()),
            "{what}"
        );
        for cut in 0..whole.len() {
            let expected = Frame::Incomplete(if cut < 4 { 4 } else { whole.len() });
            assert_eq!(
                frame(&whole[..cut], Phase::Startup),
                expected,
                "{what} cut at {cut}"
            );
        }
    }
}

#[test]
fn startup_packets_truncated_overlong_or_oversized_end_the_connection() {
    let broken = |packet: &[u8]| match frame(packet, Phase::Startup) {
        Frame::Broken(error) => error,
        other => panic!("{packet:?}: {other:?}"),
    };
    // Truncated: a length too short for the version, for a CancelRequest's process id or
    // key, or one that cuts the startup packet's strings.
    assert_eq!(broken(&[0, 0, 0, 7, 0, 3, 0]), ProtocolError::StartupLength);
    assert_eq!(broken(&cancel_request(0)), ProtocolError::CancelLength);
    assert_eq!(broken(&cancel_request(3)), ProtocolError::CancelLength);
    assert_eq!(
        broken(&untyped(b"\0\x03\0\0user\0u")),
        ProtocolError::StartupLayout
    );
    // Overlong: bytes after the terminator, a key longer than 256 bytes.
    assert_eq!(
        broken(&untyped(b"\0\x03\0\0user\0u\0\0x")),
        ProtocolError::StartupLayout
    );
    assert_eq!(broken(&cancel_request(257)), ProtocolError::CancelLength);
    // Oversized: refused before any byte of the body is awaited; at the limit it is awaited.
    let header = |len: usize| (len as u32).to_be_bytes();
    assert_eq!(
        broken(&header(SMALL_MESSAGE + 1)),
        ProtocolError::StartupLength
    );
    assert_eq!(
        frame(&header(SMALL_MESSAGE), Phase::Startup),
        Frame::Incomplete(SMALL_MESSAGE)
    );
}
