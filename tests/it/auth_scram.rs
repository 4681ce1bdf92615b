//! SCRAM-SHA-256 by hand: user names cannot be probed, and the exchange is checked as RFC 5802
//! and PostgreSQL check it.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac};

use crate::harness::{PASSWORD, TestServer, USER};
use crate::raw::{Raw, assert_serving, cstring, error_of, kinds, message, sasl_initial, startup};

const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const CLIENT_FIRST_BARE: &str = "n=,r=rOprNGfwEbeRWgbNEkqO";

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message)
        .as_ref()
        .to_vec()
}

/// The client's proof for `password` and the server signature it must get back, over
/// client-first-message-bare, `server_first` and `final_without_proof` (RFC 5802).
fn make_proof(password: &str, server_first: &str, final_without_proof: &str) -> (String, String) {
    let attributes: HashMap<&str, &str> = server_first
        .split(',')
        .filter_map(|a| a.split_once('='))
        .collect();
    let salt = STANDARD.decode(attributes["s"]).unwrap();
    let iterations: usize = attributes["i"].parse().unwrap();
    let salted = pgwire::api::auth::sasl::scram::gen_salted_password(password, &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, &client_key);
    let auth_message = format!("{CLIENT_FIRST_BARE},{server_first},{final_without_proof}");
    let signature = hmac(stored_key.as_ref(), auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
    (STANDARD.encode(proof), STANDARD.encode(server_signature))
}

/// Starts a SCRAM exchange for `user`: the server-first-message.
async fn challenge(server: &TestServer, user: &str, client_first: &str) -> (Raw, String) {
    let mut raw = Raw::open(server).await;
    raw.send(&startup(user, USER)).await;
    let (code, mechanisms) = raw.authentication().await;
    assert_eq!(code, 10, "AuthenticationSASL for {user}");
    assert_eq!(mechanisms, b"SCRAM-SHA-256\0\0");
    raw.send(&sasl_initial("SCRAM-SHA-256", client_first.as_bytes()))
        .await;
    let (code, server_first) = raw.authentication().await;
    assert_eq!(code, 11, "AuthenticationSASLContinue for {user}");
    (raw, String::from_utf8(server_first).unwrap())
}

/// The salt and iteration count of a server-first-message, checked for the client's nonce.
fn salt_of(server_first: &str) -> (String, String) {
    let parts: Vec<&str> = server_first.split(',').collect();
    assert_eq!(parts.len(), 3, "{server_first}");
    assert!(parts[0].starts_with(&format!("r={CLIENT_NONCE}")));
    assert!(parts[0].len() > 2 + CLIENT_NONCE.len(), "{server_first}");
    (parts[1].to_string(), parts[2].to_string())
}

/// Finishes the exchange with a proof for `password`; the replies up to the end of startup.
async fn finish(mut raw: Raw, server_first: &str, password: &str) -> (Vec<(u8, Vec<u8>)>, String) {
    let nonce = &server_first.split(',').next().unwrap()[2..];
    let without_proof = format!("c=biws,r={nonce}");
    let (proof, signature) = make_proof(password, server_first, &without_proof);
    raw.send(&message(
        b'p',
        format!("{without_proof},p={proof}").as_bytes(),
    ))
    .await;
    (raw.until_ready().await, signature)
}

/// A user that does not exist is challenged like one that does, with a salt that is the same
/// on every attempt, and fails at the end with the very error of a wrong password.
#[tokio::test]
async fn auth_unknown_users_are_challenged_like_known_ones() {
    let server = TestServer::start();
    let client_first = format!("n,,{CLIENT_FIRST_BARE}");
    let mut salts = HashMap::new();
    for user in ["nobody", USER, "nobody", USER] {
        let (_, server_first) = challenge(&server, user, &client_first).await;
        let (salt, iterations) = salt_of(&server_first);
        assert_eq!(iterations, "i=4096");
        assert_eq!(STANDARD.decode(&salt[2..]).unwrap().len(), 16, "{salt}");
        assert_eq!(salts.entry(user).or_insert_with(|| salt.clone()), &salt);
    }
    assert_ne!(salts["nobody"], salts[USER]);

    let (raw, server_first) = challenge(&server, "nobody", &client_first).await;
    let (replies, _) = finish(raw, &server_first, PASSWORD).await;
    assert_eq!(
        error_of(&replies),
        (
            "FATAL".into(),
            "28P01".into(),
            "password authentication failed for user \"nobody\"".into()
        )
    );
    let (raw, server_first) = challenge(&server, USER, &client_first).await;
    let (replies, _) = finish(raw, &server_first, "wrong").await;
    assert_eq!(
        error_of(&replies),
        (
            "FATAL".into(),
            "28P01".into(),
            format!("password authentication failed for user \"{USER}\"")
        )
    );
    // The right password: the server proves it knows it too, and the session starts.
    let (raw, server_first) = challenge(&server, USER, &client_first).await;
    let (replies, signature) = finish(raw, &server_first, PASSWORD).await;
    let (kind, body) = &replies[0];
    assert_eq!(*kind, b'R');
    assert_eq!(body[..4], 12i32.to_be_bytes());
    assert_eq!(
        String::from_utf8_lossy(&body[4..]),
        format!("v={signature}")
    );
    assert_eq!(replies[1], (b'R', 0i32.to_be_bytes().to_vec()));
    assert_eq!(
        replies.last().map(|r| r.0),
        Some(b'Z'),
        "{}",
        kinds(&replies)
    );
    assert_serving(&server).await;
}

/// With MD5 too an unknown user gets a challenge, and the database is checked only after the
/// password, as in PostgreSQL.
#[tokio::test]
async fn auth_md5_challenges_unknown_users_and_checks_the_database_after_the_password() {
    let server = TestServer::start_with(&["--auth", "md5"]);
    for user in ["nobody", USER] {
        let mut raw = Raw::open(&server).await;
        raw.send(&startup(user, "otherdb")).await;
        let (code, salt) = raw.authentication().await;
        assert_eq!((code, salt.len()), (5, 4), "{user}");
        let mut body = Vec::new();
        cstring(&mut body, "md5d41d8cd98f00b204e9800998ecf8427e");
        raw.send(&message(b'p', &body)).await;
        let (_, code, text) = error_of(&raw.until_closed().await);
        assert_eq!(code, "28P01");
        assert_eq!(
            text,
            format!("password authentication failed for user \"{user}\"")
        );
    }
    let err = crate::auth::connect(&server, USER, PASSWORD, "otherdb")
        .await
        .unwrap_err();
    assert_eq!(crate::harness::sqlstate(&err), "3D000");
    assert_serving(&server).await;
}

/// RFC 5802: the client-final-message must carry the nonce the server sent and the
/// channel-binding flag the client sent; channel binding is not offered, so a client asking
/// for it is refused rather than believed.
#[tokio::test]
async fn auth_scram_final_message_must_repeat_nonce_and_binding() {
    let server = TestServer::start();
    let client_first = format!("n,,{CLIENT_FIRST_BARE}");

    // A proof made for a nonce of the client's choosing, with the right password.
    let (mut raw, server_first) = challenge(&server, USER, &client_first).await;
    let without_proof = format!("c=biws,r={CLIENT_NONCE}chosen-by-client");
    let (proof, _) = make_proof(PASSWORD, &server_first, &without_proof);
    raw.send(&message(
        b'p',
        format!("{without_proof},p={proof}").as_bytes(),
    ))
    .await;
    let replies = raw.until_closed().await;
    assert_eq!(
        error_of(&replies),
        (
            "FATAL".into(),
            "28P01".into(),
            format!("password authentication failed for user \"{USER}\"")
        )
    );

    // The binding data of a "y" flag after an "n" one.
    let (mut raw, server_first) = challenge(&server, USER, &client_first).await;
    let nonce = &server_first.split(',').next().unwrap()[2..];
    let without_proof = format!("c=eSws,r={nonce}");
    let (proof, _) = make_proof(PASSWORD, &server_first, &without_proof);
    raw.send(&message(
        b'p',
        format!("{without_proof},p={proof}").as_bytes(),
    ))
    .await;
    let (_, code, text) = error_of(&raw.until_closed().await);
    assert_eq!(code, "08P01");
    assert_eq!(
        text,
        "unexpected SCRAM channel-binding attribute in client-final-message"
    );

    // Channel binding asked for, by flag or by mechanism: not offered, so refused.
    let mut raw = Raw::open(&server).await;
    raw.send(&startup(USER, USER)).await;
    raw.authentication().await;
    raw.send(&sasl_initial(
        "SCRAM-SHA-256",
        format!("p=tls-server-end-point,,{CLIENT_FIRST_BARE}").as_bytes(),
    ))
    .await;
    let (_, code, text) = error_of(&raw.until_closed().await);
    assert_eq!(
        (code.as_str(), text.as_str()),
        ("08P01", "malformed SCRAM message")
    );
    let mut raw = Raw::open(&server).await;
    raw.send(&startup(USER, USER)).await;
    raw.authentication().await;
    raw.send(&sasl_initial("SCRAM-SHA-256-PLUS", client_first.as_bytes()))
        .await;
    let (_, code, text) = error_of(&raw.until_closed().await);
    assert_eq!(code, "08P01");
    assert_eq!(
        text,
        "client selected an invalid SASL authentication mechanism"
    );
    // An authorization identity is not supported, as in PostgreSQL.
    let mut raw = Raw::open(&server).await;
    raw.send(&startup(USER, USER)).await;
    raw.authentication().await;
    raw.send(&sasl_initial("SCRAM-SHA-256", b"n,a=admin,n=,r=abc"))
        .await;
    let (_, code, _) = error_of(&raw.until_closed().await);
    assert_eq!(code, "0A000");
    assert_serving(&server).await;
}
