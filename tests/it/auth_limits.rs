//! Connection slots and the authentication deadline: clients that never log in cannot keep
//! those that do out.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::auth::connect;
use crate::harness::{PASSWORD, TestServer, USER, sqlstate};
use crate::raw::{Raw, startup};

/// Waits until the server closes `socket`; how long that took.
async fn closed_after(mut socket: TcpStream, started: Instant) -> Duration {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept a silent connection open"),
        }
    }
}

/// Sockets that send nothing hold startup slots only: logins still get the
/// `--max-connections` slots, and the silent sockets are closed after
/// `--authentication-timeout`.
#[tokio::test]
async fn auth_silent_sockets_do_not_take_connection_slots() {
    let server = TestServer::start_with(&[
        "--max-connections",
        "3",
        "--max-startup-connections",
        "4",
        "--authentication-timeout",
        "2s",
    ]);
    // Until the harness's readiness probe (a connection opened and closed) is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(
            TcpStream::connect(("127.0.0.1", server.port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = connect(&server, USER, PASSWORD, USER).await.unwrap();
    // The fourth silent socket takes the last startup slot: the next client is refused before
    // authentication.
    silent.push(
        TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = connect(&server, USER, PASSWORD, USER).await.unwrap_err();
    assert_eq!(sqlstate(&err), "53300");
    // All four are closed once the authentication timeout passed, as PostgreSQL closes them.
    for socket in silent {
        let waited = closed_after(socket, started).await;
        assert!(waited >= Duration::from_millis(1500), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }
    let second = connect(&server, USER, PASSWORD, USER).await.unwrap();
    let third = connect(&server, USER, PASSWORD, USER).await.unwrap();
    // Full: a client proves its password first, and only then hears there is no slot.
    let err = connect(&server, USER, "wrong", USER).await.unwrap_err();
    assert_eq!(sqlstate(&err), "28P01");
    let err = connect(&server, USER, PASSWORD, USER).await.unwrap_err();
    assert_eq!(sqlstate(&err), "53300");
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fourth = connect(&server, USER, PASSWORD, USER).await.unwrap();
    for client in [&second, &third, &fourth] {
        let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
}

/// A client that starts the password exchange and stops answering is closed after the
/// authentication timeout too.
#[tokio::test]
async fn auth_timeout_ends_an_unfinished_exchange() {
    let server = TestServer::start_with(&["--authentication-timeout", "1s"]);
    let started = Instant::now();
    let mut raw = Raw::open(&server).await;
    raw.send(&startup(USER, USER)).await;
    let (code, _) = raw.authentication().await;
    assert_eq!(code, 10);
    let waited = closed_after(raw.0, started).await;
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    assert!(
        server.log_text().contains("authentication timed out"),
        "{}",
        server.log_text()
    );
    connect(&server, USER, PASSWORD, USER).await.unwrap();
}
