//! Authentication methods and startup checks.

use tokio_postgres::NoTls;

use crate::harness::{PASSWORD, TestServer, USER, sqlstate};
use crate::raw::{Raw, error_of, kinds};

pub(crate) async fn connect(
    server: &TestServer,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
            server.port
        ),
        NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

#[tokio::test]
async fn scram_is_the_default_and_checks_passwords() {
    let server = TestServer::start();
    let client = connect(&server, USER, PASSWORD, USER).await.unwrap();
    let user: String = client
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, USER);
    let err = connect(&server, USER, "wrong", USER).await.unwrap_err();
    assert_eq!(sqlstate(&err), "28P01");
    let err = connect(&server, "nobody", PASSWORD, USER)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "28P01");
    let err = connect(&server, USER, PASSWORD, "otherdb")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "3D000");
    let log = server.log_text();
    assert!(log.contains("auth=ScramSha256"), "{log}");
}

#[tokio::test]
async fn md5_and_trust_when_configured() {
    let server = TestServer::start_with(&["--auth", "md5"]);
    connect(&server, USER, PASSWORD, USER).await.unwrap();
    assert_eq!(
        sqlstate(&connect(&server, USER, "wrong", USER).await.unwrap_err()),
        "28P01"
    );
    drop(server);

    let server = TestServer::start_with(&["--auth", "trust"]);
    connect(&server, USER, "anything", USER).await.unwrap();
    assert_eq!(
        sqlstate(&connect(&server, "nobody", "", USER).await.unwrap_err()),
        "28000"
    );
}

#[tokio::test]
async fn connection_limit_answers_53300() {
    let server = TestServer::start_with(&["--max-connections", "2"]);
    let _a = connect(&server, USER, PASSWORD, USER).await.unwrap();
    let _b = connect(&server, USER, PASSWORD, USER).await.unwrap();
    let err = connect(&server, USER, PASSWORD, USER).await.unwrap_err();
    assert_eq!(sqlstate(&err), "53300");
    drop(_a);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    connect(&server, USER, PASSWORD, USER).await.unwrap();
}

#[tokio::test]
async fn malformed_messages_and_disconnects_do_not_hurt_others() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE k (id int)")
        .await
        .unwrap();
    // Garbage instead of a startup packet: PostgreSQL reads it as an unknown protocol version
    // and answers FATAL 0A000, then closes the connection.
    let mut raw = Raw::open(&server).await;
    raw.send(&[0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef]).await;
    let replies = raw.until_closed().await;
    let (severity, code, message) = error_of(&replies);
    assert_eq!(
        (severity.as_str(), code.as_str()),
        ("FATAL", "0A000"),
        "{message}"
    );
    assert!(message.contains("protocol"), "{message}");
    assert_eq!(
        kinds(&replies),
        "E",
        "nothing but the error: {}",
        kinds(&replies)
    );
    // A client that disappears in the middle of a query.
    let quitter = server.client().await;
    let handle = tokio::spawn(async move {
        let _ = quitter
            .query("SELECT count(*) FROM generate_series(1, 5000000000)", &[])
            .await;
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    handle.abort();
    // The server and other sessions carry on.
    client
        .execute("INSERT INTO k VALUES (1)", &[])
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM k", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let other = server.client().await;
    let n: i64 = other
        .query_one("SELECT count(*) FROM k", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}
