//! Malformed messages get PostgreSQL's answers: an ERROR 08P01 the session survives for a
//! message that is whole but malformed, FATAL 08P01 and a closed connection for a stream that
//! cannot be framed. None of them may panic a connection or disturb the server.

use crate::harness::{PASSWORD, TestServer, USER};
use crate::raw::{
    Raw, Reply, assert_serving, cstring, error_of, kinds, message, parse, startup, sync,
};

/// A Bind's body: names, parameter formats, values, result formats.
fn bind_body(
    statement: &str,
    formats: &[i16],
    values: &[Option<&[u8]>],
    results: &[i16],
) -> Vec<u8> {
    let mut body = Vec::new();
    cstring(&mut body, "");
    cstring(&mut body, statement);
    body.extend_from_slice(&(formats.len() as u16).to_be_bytes());
    for f in formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    body.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        match v {
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v);
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    body.extend_from_slice(&(results.len() as u16).to_be_bytes());
    for f in results {
        body.extend_from_slice(&f.to_be_bytes());
    }
    body
}

fn execute(max_rows: i32) -> Vec<u8> {
    let mut body = Vec::new();
    cstring(&mut body, "");
    body.extend_from_slice(&max_rows.to_be_bytes());
    message(b'E', &body)
}

/// Sends `bytes` and reads up to ReadyForQuery.
async fn exchange(raw: &mut Raw, bytes: &[u8]) -> Vec<Reply> {
    raw.send(bytes).await;
    raw.until_ready().await
}

/// The session answers a simple query.
async fn assert_session_works(raw: &mut Raw) {
    let replies = exchange(raw, &message(b'Q', b"SELECT 1\0")).await;
    assert_eq!(kinds(&replies), "TDCZ");
}

/// Expects an ERROR with `code` and `text`, then ReadyForQuery, in the extended protocol.
fn assert_error(replies: &[Reply], code: &str, text: &str) {
    assert_eq!(kinds(replies), "EZ", "{replies:?}");
    assert_eq!(
        error_of(replies),
        ("ERROR".into(), code.into(), text.into())
    );
}

/// Binds whose counts disagree, whose values run past the message, that are empty or that
/// carry unknown format codes: each an ERROR 08P01 (22023 for a format code), and the session
/// goes on after Sync.
#[tokio::test]
async fn protocol_malformed_binds_are_errors_the_session_survives() {
    let server = TestServer::start_with(&["--auth", "trust"]);
    let mut raw = Raw::trusted(&server).await;
    let mut setup = parse("s3", "SELECT $1::int + $2::int + $3::int");
    setup.extend(parse("cols", "SELECT 1 AS a, 2 AS b, 3 AS c"));
    setup.extend(sync());
    assert_eq!(kinds(&exchange(&mut raw, &setup).await), "11Z");
    let one: &[u8] = b"1";
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            message(b'B', &bind_body("s3", &[0, 0], &[Some(one); 3], &[])),
            "08P01",
            "bind message has 2 parameter formats but 3 parameters",
        ),
        (
            message(b'B', &bind_body("s3", &[], &[Some(one)], &[])),
            "08P01",
            "bind message supplies 1 parameters, but prepared statement \"s3\" requires 3",
        ),
        (
            message(b'B', &bind_body("cols", &[], &[], &[1, 0])),
            "08P01",
            "bind message has 2 result formats but query has 3 columns",
        ),
        (
            message(b'B', &bind_body("s3", &[7], &[Some(one); 3], &[])),
            "22023",
            "unsupported format code: 7",
        ),
        (message(b'B', &[]), "08P01", "invalid string in message"),
        (
            {
                // The last value says 100 bytes; the message ends after 1.
                let mut body = bind_body("s3", &[], &[Some(one); 3], &[]);
                body.truncate(body.len() - 2 - 5);
                body.extend_from_slice(&100i32.to_be_bytes());
                body.push(b'1');
                message(b'B', &body)
            },
            "08P01",
            "insufficient data left in message",
        ),
        (
            {
                let mut body = bind_body("s3", &[], &[Some(one); 3], &[]);
                body.extend_from_slice(b"trailing");
                message(b'B', &body)
            },
            "08P01",
            "invalid message format",
        ),
        (
            {
                let mut body = vec![b'X'];
                cstring(&mut body, "s3");
                message(b'D', &body)
            },
            "08P01",
            "invalid DESCRIBE message subtype 88",
        ),
        (
            {
                let mut body = vec![b'X'];
                cstring(&mut body, "s3");
                message(b'C', &body)
            },
            "08P01",
            "invalid CLOSE message subtype 88",
        ),
    ];
    for (bad, code, text) in cases {
        let mut bytes = bad;
        bytes.extend(execute(0));
        bytes.extend(sync());
        assert_error(&exchange(&mut raw, &bytes).await, code, text);
        assert_session_works(&mut raw).await;
    }
    // A simple query without its terminator: an ERROR, then ReadyForQuery.
    let replies = exchange(&mut raw, &message(b'Q', b"SELECT 1")).await;
    assert_error(&replies, "08P01", "invalid string in message");
    // The statement still binds and runs with the right counts.
    let mut bytes = message(b'B', &bind_body("s3", &[0], &[Some(one); 3], &[1]));
    bytes.extend(execute(0));
    bytes.extend(sync());
    let replies = exchange(&mut raw, &bytes).await;
    assert_eq!(kinds(&replies), "2DCZ");
    assert_eq!(
        replies[1].1,
        [&[0, 1, 0, 0, 0, 4][..], &3i32.to_be_bytes()].concat()
    );
    assert_serving(&server).await;
}

/// A row limit of zero or less means all rows, as in PostgreSQL.
#[tokio::test]
async fn protocol_execute_with_negative_row_limit_returns_all_rows() {
    let server = TestServer::start_with(&["--auth", "trust"]);
    let mut raw = Raw::trusted(&server).await;
    let setup = [
        parse("", "SELECT x FROM (VALUES (1), (2), (3)) AS t(x)"),
        sync(),
    ]
    .concat();
    assert_eq!(kinds(&exchange(&mut raw, &setup).await), "1Z");
    for (max_rows, expected) in [
        (-1, "2DDDCZ"),
        (i32::MIN, "2DDDCZ"),
        (0, "2DDDCZ"),
        (2, "2DDsZ"),
    ] {
        let bytes = [
            message(b'B', &bind_body("", &[], &[], &[])),
            execute(max_rows),
            sync(),
        ]
        .concat();
        assert_eq!(
            kinds(&exchange(&mut raw, &bytes).await),
            expected,
            "max_rows {max_rows}"
        );
    }
    assert_session_works(&mut raw).await;
    assert_serving(&server).await;
}

/// A binary NUMERIC parameter beyond what the decoder holds (10^32, written as one digit and
/// a weight; found by the `messages` fuzz target, it made the decoder panic) is the client's
/// error, 22P03, and the session goes on.
#[tokio::test]
async fn protocol_undecodable_binary_numeric_is_an_error() {
    let server = TestServer::start_with(&["--auth", "trust"]);
    let mut raw = Raw::trusted(&server).await;
    // Parse "n" with its parameter declared numeric (OID 1700).
    let mut body = Vec::new();
    cstring(&mut body, "n");
    cstring(&mut body, "SELECT $1");
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(&1700u32.to_be_bytes());
    let setup = [message(b'P', &body), sync()].concat();
    assert_eq!(kinds(&exchange(&mut raw, &setup).await), "1Z");
    // ndigits 1, weight 8, sign +, dscale 0, then the base-10000 digit 1: 1 * 10000^8.
    let mut numeric = Vec::new();
    for field in [1i16, 8, 0, 0, 1] {
        numeric.extend_from_slice(&field.to_be_bytes());
    }
    let bytes = [
        message(b'B', &bind_body("n", &[1], &[Some(&numeric)], &[])),
        execute(0),
        sync(),
    ]
    .concat();
    // Values are decoded when the portal runs: BindComplete, then the error.
    let replies = exchange(&mut raw, &bytes).await;
    assert_eq!(kinds(&replies), "2EZ", "{replies:?}");
    assert_eq!(
        error_of(&replies),
        (
            "ERROR".into(),
            "22P03".into(),
            "a parameter value cannot be decoded as its type".into()
        )
    );
    assert_session_works(&mut raw).await;
    assert_serving(&server).await;
}

/// A malformed message behind a held batch of inserts: the batch is answered first, in order,
/// then the error; the session goes on.
#[tokio::test]
async fn protocol_malformed_message_after_a_held_batch() {
    let server = TestServer::start_with(&["--auth", "trust"]);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE held (k int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let mut raw = Raw::trusted(&server).await;
    let mut bytes = parse("ins", "INSERT INTO held VALUES ($1, $2)");
    for k in 1..=3 {
        let key = k.to_string();
        bytes.extend(message(
            b'B',
            &bind_body("ins", &[], &[Some(key.as_bytes()), Some(b"v")], &[]),
        ));
        bytes.extend(execute(0));
    }
    let mut bad = bind_body("ins", &[], &[Some(b"4"), Some(b"v")], &[]);
    bad.truncate(bad.len() - 3);
    bytes.extend(message(b'B', &bad));
    bytes.extend(execute(0));
    bytes.extend(sync());
    let replies = exchange(&mut raw, &bytes).await;
    assert_eq!(kinds(&replies), "12C2C2CEZ");
    assert_eq!(error_of(&replies).1, "08P01");
    assert_session_works(&mut raw).await;
    assert_serving(&server).await;
}

/// What cannot be framed ends the connection with FATAL 08P01 (0A000 for a protocol version):
/// lengths out of range, unknown message types, a startup packet without its terminator.
#[tokio::test]
async fn protocol_broken_framing_ends_the_connection() {
    let server = TestServer::start_with(&["--auth", "trust"]);
    let typed: Vec<(Vec<u8>, &str, &str)> = vec![
        (vec![b'Q', 0, 0, 0, 2], "08P01", "invalid message length"),
        (
            vec![b'B', 0xff, 0xff, 0xff, 0xff],
            "08P01",
            "invalid message length",
        ),
        (
            message(b'Z', &[]),
            "08P01",
            "invalid frontend message type 90",
        ),
        (
            message(b'p', b"pw\0"),
            "08P01",
            "invalid frontend message type 112",
        ),
    ];
    for (bad, code, text) in typed {
        let mut raw = Raw::trusted(&server).await;
        raw.send(&bad).await;
        let replies = raw.until_closed().await;
        assert_eq!(kinds(&replies), "E", "{text}");
        assert_eq!(
            error_of(&replies),
            ("FATAL".into(), code.into(), text.into())
        );
    }
    let startups: Vec<(Vec<u8>, &str, &str)> = vec![
        // pgwire reads 8 bytes before it looks at a startup packet.
        (
            vec![0, 0, 0, 3, 0, 0, 0, 0],
            "08P01",
            "invalid length of startup packet",
        ),
        (
            vec![0, 0, 0, 12, 0, 3, 0, 0, b'u', b's', b'e', b'r'],
            "08P01",
            "invalid startup packet layout: expected terminator as last byte",
        ),
        (
            vec![0, 0, 0, 9, 0, 2, 0, 0, 0],
            "0A000",
            "unsupported frontend protocol 2.0: server supports 3.0 to 3.2",
        ),
    ];
    for (bad, code, text) in startups {
        let mut raw = Raw::open(&server).await;
        raw.send(&bad).await;
        let replies = raw.until_closed().await;
        assert_eq!(
            error_of(&replies),
            ("FATAL".into(), code.into(), text.into())
        );
    }
    assert_serving(&server).await;
}

/// Password messages that are empty or malformed get PostgreSQL's answers, whatever the
/// method, instead of panicking the connection.
#[tokio::test]
async fn protocol_malformed_password_messages_are_refused() {
    for (method, empty, terminated_empty) in [
        (
            "scram-sha-256",
            ("08P01", "invalid string in message"),
            (
                "08P01",
                "client selected an invalid SASL authentication mechanism",
            ),
        ),
        (
            "md5",
            ("08P01", "invalid password packet size"),
            ("28P01", "empty password returned by client"),
        ),
        (
            "password",
            ("08P01", "invalid password packet size"),
            ("28P01", "empty password returned by client"),
        ),
    ] {
        let server = TestServer::start_with(&["--auth", method]);
        for (body, (code, text)) in [(&b""[..], empty), (&b"\0"[..], terminated_empty)] {
            let mut raw = Raw::open(&server).await;
            raw.send(&startup(USER, USER)).await;
            raw.authentication().await;
            raw.send(&message(b'p', body)).await;
            let replies = raw.until_closed().await;
            assert_eq!(
                error_of(&replies),
                ("FATAL".into(), code.into(), text.into()),
                "{method} {body:?}"
            );
        }
        // A query instead of the password.
        let mut raw = Raw::open(&server).await;
        raw.send(&startup(USER, USER)).await;
        raw.authentication().await;
        raw.send(&message(b'Q', b"SELECT 1\0")).await;
        let (_, code, text) = error_of(&raw.until_closed().await);
        assert_eq!(code, "08P01");
        assert_eq!(text, "expected password response, got message type 81");
        crate::auth::connect(&server, USER, PASSWORD, USER)
            .await
            .unwrap();
        assert_serving(&server).await;
    }
}

/// Accepts the test's self-signed certificate: what is tested is what comes after.
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Bytes sent in plaintext behind SSLRequest, before the TLS handshake, are refused rather
/// than read as if they had come encrypted (someone in the middle may have put them there:
/// PostgreSQL's CVE-2021-23214).
#[tokio::test]
async fn protocol_plaintext_sent_before_the_tls_handshake_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::clients::certificate(dir.path());
    let server = TestServer::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut bytes = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    bytes.extend(startup(USER, USER));
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(stream.read_u8().await.unwrap(), b'S');
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, stream).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tls.read_to_end(&mut answer),
    )
    .await
    .expect("the server must close the connection");
    let kind = answer.first().copied();
    assert_eq!(kind, Some(b'E'), "{answer:?}");
    let fields = crate::raw::fields(answer.get(5..).unwrap_or_default());
    assert_eq!(fields[&b'S'], "FATAL");
    assert_eq!(fields[&b'C'], "08P01");
    assert_eq!(fields[&b'M'], "received unencrypted data after SSL request");
    assert_serving(&server).await;
}
