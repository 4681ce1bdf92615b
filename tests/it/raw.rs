//! Hand-built protocol messages over a plain TCP socket: what no client library sends
//! (malformed messages, hand-made SCRAM exchanges), and what a server answers to them.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestServer, USER};

/// How long a test waits for an answer before failing.
const PATIENCE: Duration = Duration::from_secs(20);

/// A frontend message: its type, then its length and body.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub fn cstring(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

/// A protocol 3.0 startup packet for `user` and `database`.
pub fn startup(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for field in ["user", user, "database", database, ""] {
        cstring(&mut body, field);
    }
    let mut packet = (body.len() as u32 + 4).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// A Parse of `sql` as `statement`, with no declared parameter types.
pub fn parse(statement: &str, sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstring(&mut body, statement);
    cstring(&mut body, sql);
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &body)
}

/// A Bind of `statement` into `portal`, with format codes and values as given.
pub fn bind(portal: &str, statement: &str, formats: &[i16], values: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut body = Vec::new();
    cstring(&mut body, portal);
    cstring(&mut body, statement);
    body.extend_from_slice(&(formats.len() as i16).to_be_bytes());
    for f in formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    body.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        match v {
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v);
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'B', &body)
}

pub fn describe_portal(portal: &str) -> Vec<u8> {
    let mut body = vec![b'P'];
    cstring(&mut body, portal);
    message(b'D', &body)
}

/// An Execute of `portal`, all rows.
pub fn execute(portal: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstring(&mut body, portal);
    body.extend_from_slice(&0i32.to_be_bytes());
    message(b'E', &body)
}

/// A simple-protocol Query.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstring(&mut body, sql);
    message(b'Q', &body)
}

pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

/// A SASLInitialResponse choosing `mechanism`, with `data`.
pub fn sasl_initial(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    cstring(&mut body, mechanism);
    body.extend_from_slice(&(data.len() as i32).to_be_bytes());
    body.extend_from_slice(data);
    message(b'p', &body)
}

/// A backend message: its type and body.
pub type Reply = (u8, Vec<u8>);

/// The fields of an ErrorResponse or NoticeResponse body, by field type.
pub fn fields(body: &[u8]) -> HashMap<u8, String> {
    body.split(|b| *b == 0)
        .filter_map(|field| field.split_first())
        .map(|(kind, text)| (*kind, String::from_utf8_lossy(text).into_owned()))
        .collect()
}

/// The severity, SQLSTATE and message of the first ErrorResponse in `replies`.
pub fn error_of(replies: &[Reply]) -> (String, String, String) {
    let (_, body) = replies
        .iter()
        .find(|(kind, _)| *kind == b'E')
        .unwrap_or_else(|| panic!("no ErrorResponse in {}", kinds(replies)));
    let fields = fields(body);
    let field = |k: u8| fields.get(&k).cloned().unwrap_or_default();
    (field(b'S'), field(b'C'), field(b'M'))
}

/// The types of `replies`, as a string (`"12CZ"`).
pub fn kinds(replies: &[Reply]) -> String {
    replies.iter().map(|(k, _)| *k as char).collect()
}

/// A connection speaking the protocol by hand.
pub struct Raw(pub TcpStream);

impl Raw {
    /// A TCP connection to the server, nothing sent yet.
    pub async fn open(server: &TestServer) -> Raw {
        Raw(TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect"))
    }

    /// A session of the test user on a server with `--auth trust`, ready for queries.
    pub async fn trusted(server: &TestServer) -> Raw {
        let mut raw = Raw::open(server).await;
        raw.send(&startup(USER, USER)).await;
        let replies = raw.until_ready().await;
        assert_eq!(
            replies.last().map(|r| r.0),
            Some(b'Z'),
            "{}",
            kinds(&replies)
        );
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("send");
        self.0.flush().await.expect("flush");
    }

    /// Sends bytes a few at a time, so that messages arrive cut at arbitrary points.
    pub async fn send_in_pieces(&mut self, bytes: &[u8]) {
        for piece in bytes.chunks(997) {
            self.send(piece).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The next backend message; `None` once the server closed the connection.
    pub async fn next(&mut self) -> Option<Reply> {
        tokio::time::timeout(PATIENCE, async {
            let kind = self.0.read_u8().await.ok()?;
            let len = self.0.read_u32().await.ok()? as usize;
            let mut body = vec![0; len.checked_sub(4)?];
            self.0.read_exact(&mut body).await.ok()?;
            Some((kind, body))
        })
        .await
        .expect("no answer from the server")
    }

    /// The messages up to ReadyForQuery, or up to the end of the connection.
    pub async fn until_ready(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Some(reply) = self.next().await {
            let ready = reply.0 == b'Z';
            out.push(reply);
            if ready {
                break;
            }
        }
        out
    }

    /// The messages up to the end of the connection, which the server must close.
    pub async fn until_closed(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Some(reply) = self.next().await {
            out.push(reply);
        }
        out
    }

    /// The next message, which must be an Authentication request; its code and data.
    pub async fn authentication(&mut self) -> (i32, Vec<u8>) {
        match self.next().await {
            Some((b'R', body)) if body.len() >= 4 => (
                i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                body[4..].to_vec(),
            ),
            other => panic!("expected an authentication request, got {other:?}"),
        }
    }
}

/// Whether the server still serves a new session of the test user, and did not panic.
pub async fn assert_serving(server: &TestServer) {
    let client = server.client().await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let log = server.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
