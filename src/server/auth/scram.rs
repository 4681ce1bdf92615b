//! SCRAM-SHA-256 (RFC 5802, RFC 7677): the server's side of the exchange, as PostgreSQL runs it.
//!
//! pgwire's exchange accepts a client-final-message whose nonce is not the one the server sent,
//! and pgwire has no way to challenge a user that does not exist. This module runs the exchange
//! as PostgreSQL's `auth-scram.c` does. A user that does not exist is challenged like any other,
//! with a salt derived from the user name and a server secret (so that every attempt sees the
//! same salt, as it would a stored one), and the exchange fails at its end exactly as a wrong
//! password does ("mock authentication"). The client-final-message must repeat the nonce of the
//! server-first-message and the channel-binding flag of the client-first-message. Channel
//! binding itself is not offered (no SCRAM-SHA-256-PLUS), so a client that asks for it is
//! refused. Messages are parsed as PostgreSQL parses them and refused with its messages; the
//! SQLSTATEs are assigned in `sql::sqlstate`.

use std::fmt::Debug;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;

/// The SASL mechanism offered.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// Iteration count of the password hash (PostgreSQL's default `scram_iterations`).
pub const ITERATIONS: u32 = 4096;
/// Salt length (PostgreSQL's `SCRAM_DEFAULT_SALT_LEN`).
pub const SALT_LEN: usize = 16;
/// Random bytes in the server's nonce (PostgreSQL's `SCRAM_RAW_NONCE_LEN`).
const NONCE_LEN: usize = 18;
/// Length of SHA-256 keys and proofs.
const KEY_LEN: usize = 32;

/// Why an exchange is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("client selected an invalid SASL authentication mechanism")]
    Mechanism,
    /// A message that does not parse; the detail says where.
    #[error("malformed SCRAM message")]
    Malformed(String),
    #[error("client uses authorization identity, but it is not supported")]
    Authzid,
    #[error("client requires an unsupported SCRAM extension")]
    Extension,
    #[error("non-printable characters in SCRAM nonce")]
    Nonce,
    #[error("unexpected SCRAM channel-binding attribute in client-final-message")]
    ChannelBinding,
    /// Wrong proof or nonce, or a user that does not exist: reported as a wrong password.
    #[error("SCRAM authentication failed")]
    Failed,
}

fn malformed(detail: impl Into<String>) -> ScramError {
    ScramError::Malformed(detail.into())
}

/// A byte as PostgreSQL's `sanitize_char` shows it in error details.
fn shown(byte: Option<&u8>) -> String {
    match byte {
        Some(b) if b.is_ascii_graphic() => (*b as char).to_string(),
        Some(b) => format!("0x{b:02x}"),
        None => "0x00".to_string(),
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; KEY_LEN] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message);
    let mut out = [0; KEY_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(message: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0; KEY_LEN];
    out.copy_from_slice(digest::digest(&digest::SHA256, message).as_ref());
    out
}

/// What the server keeps of a password (RFC 5802's StoredKey and ServerKey, with the salt), as
/// PostgreSQL keeps it in `pg_authid`: enough to check a proof, not to make one.
#[derive(Clone)]
pub struct Verifier {
    salt: [u8; SALT_LEN],
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier of `password` (SASLprep-normalized, as clients hash it) with `salt`.
    pub fn new(password: &str, salt: [u8; SALT_LEN]) -> Verifier {
        let salted = gen_salted_password(password, &salt, ITERATIONS as usize);
        Verifier {
            salt,
            stored_key: sha256(&hmac(&salted, b"Client Key")),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// A verifier for a user that does not exist: `salt` as a real one would have, and keys
    /// that no password gives.
    pub fn mock(salt: [u8; SALT_LEN]) -> Verifier {
        let mut keys = [0; 2 * KEY_LEN];
        rand::fill(&mut keys[..]);
        let (stored_key, server_key) = keys.split_at(KEY_LEN);
        let mut verifier = Verifier {
            salt,
            stored_key: [0; KEY_LEN],
            server_key: [0; KEY_LEN],
        };
        verifier.stored_key.copy_from_slice(stored_key);
        verifier.server_key.copy_from_slice(server_key);
        verifier
    }
}

/// Reads `attr=value` pairs separated by commas, as PostgreSQL's `read_attr_value` and
/// `read_any_attr` do.
struct Attributes<'a>(&'a [u8]);

impl<'a> Attributes<'a> {
    /// The value after `=`, up to the next comma (passed over) or the end.
    fn rest_value(&mut self) -> &'a [u8] {
        let rest = self.0.get(2..).unwrap_or_default();
        let end = rest.iter().position(|b| *b == b',').unwrap_or(rest.len());
        let (value, after) = rest.split_at(end);
        self.0 = after.get(1..).unwrap_or_default();
        value
    }

    /// The value of attribute `attr`, which must come next.
    fn value(&mut self, attr: u8) -> Result<&'a [u8], ScramError> {
        match self.0 {
            [a, b'=', ..] if *a == attr => Ok(self.rest_value()),
            [a, ..] if *a == attr => Err(malformed(format!(
                "Expected character \"=\" for attribute \"{}\".",
                attr as char
            ))),
            other => Err(malformed(format!(
                "Expected attribute \"{}\" but found \"{}\".",
                attr as char,
                shown(other.first())
            ))),
        }
    }

    /// The next attribute, whichever it is, and its value.
    fn any(&mut self) -> Result<(u8, &'a [u8]), ScramError> {
        match self.0 {
            [a, b'=', ..] if a.is_ascii_alphabetic() => {
                let attr = *a;
                Ok((attr, self.rest_value()))
            }
            [a, ..] if a.is_ascii_alphabetic() => Err(malformed(format!(
                "Expected character \"=\" for attribute \"{}\".",
                *a as char
            ))),
            [] => Err(malformed("Attribute expected, but found end of input.")),
            other => Err(malformed(format!(
                "Attribute expected, but found invalid character \"{}\".",
                shown(other.first())
            ))),
        }
    }
}

/// Checks what PostgreSQL checks of any SCRAM message before parsing it.
fn message(input: &[u8]) -> Result<&[u8], ScramError> {
    if input.is_empty() {
        return Err(malformed("The message is empty."));
    }
    if input.contains(&0) {
        return Err(malformed("Message length does not match input length."));
    }
    Ok(input)
}

/// The exchange once the server-first-message is sent, waiting for the client's proof.
pub struct Challenge {
    verifier: Verifier,
    doomed: bool,
    /// The `c=` the client must send: its GS2 header (`n,,` or `y,,`) in base64.
    binding: &'static str,
    /// The client's nonce followed by the server's.
    nonce: String,
    /// The start of RFC 5802's AuthMessage: client-first-message-bare, server-first-message.
    auth_message: Vec<u8>,
}

impl Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// Answers a client-first-message with the server-first-message. `doomed`: the user does not
/// exist (see [`Verifier::mock`]), and the exchange fails at its end.
///
/// # Errors
/// A malformed message, or one asking for what is not supported.
pub fn challenge(
    verifier: Verifier,
    doomed: bool,
    client_first: &[u8],
) -> Result<(String, Challenge), ScramError> {
    let mut nonce = [0; NONCE_LEN];
    rand::fill(&mut nonce[..]);
    challenge_with_nonce(verifier, doomed, client_first, &STANDARD.encode(nonce))
}

fn challenge_with_nonce(
    verifier: Verifier,
    doomed: bool,
    client_first: &[u8],
    server_nonce: &str,
) -> Result<(String, Challenge), ScramError> {
    let input = message(client_first)?;
    // gs2-header: a channel-binding flag, then an optional authzid, each ended by a comma.
    let binding = match input.first() {
        Some(b'n') => "biws",
        Some(b'y') => "eSws",
        Some(b'p') => {
            return Err(malformed(
                "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.",
            ));
        }
        other => {
            return Err(malformed(format!(
                "Unexpected channel-binding flag \"{}\".",
                shown(other)
            )));
        }
    };
    match input.get(1) {
        Some(b',') => {}
        other => {
            return Err(malformed(format!(
                "Comma expected, but found character \"{}\".",
                shown(other)
            )));
        }
    }
    match input.get(2) {
        Some(b'a') => return Err(ScramError::Authzid),
        Some(b',') => {}
        other => {
            return Err(malformed(format!(
                "Comma expected, but found character \"{}\".",
                shown(other)
            )));
        }
    }
    let bare = input.get(3..).unwrap_or_default();
    if bare.first() == Some(&b'm') {
        return Err(ScramError::Extension);
    }
    let mut attributes = Attributes(bare);
    // The user name is the startup packet's, as in PostgreSQL; this one is ignored.
    attributes.value(b'n')?;
    let client_nonce = attributes.value(b'r')?;
    // Printable ASCII but the comma (RFC 5802); checked, it is also valid UTF-8.
    if !client_nonce
        .iter()
        .all(|b| (0x21..=0x7e).contains(b) && *b != b',')
    {
        return Err(ScramError::Nonce);
    }
    while !attributes.0.is_empty() {
        attributes.any()?;
    }
    let nonce = format!("{}{server_nonce}", String::from_utf8_lossy(client_nonce));
    let server_first = format!(
        "r={nonce},s={},i={ITERATIONS}",
        STANDARD.encode(verifier.salt)
    );
    let mut auth_message = Vec::with_capacity(bare.len() + server_first.len() + 2);
    auth_message.extend_from_slice(bare);
    auth_message.push(b',');
    auth_message.extend_from_slice(server_first.as_bytes());
    auth_message.push(b',');
    Ok((
        server_first,
        Challenge {
            verifier,
            doomed,
            binding,
            nonce,
            auth_message,
        },
    ))
}

impl Challenge {
    /// Checks the client-final-message; the server-final-message when the proof holds.
    ///
    /// # Errors
    /// [`ScramError::Failed`] for a wrong proof or nonce, or a user that does not exist;
    /// others for a malformed message.
    pub fn verify(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let input = message(client_final)?;
        let mut attributes = Attributes(input);
        if attributes.value(b'c')? != self.binding.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        let nonce = attributes.value(b'r')?;
        let (proof, without_proof) = loop {
            let before = input.len() - attributes.0.len();
            let (attr, value) = attributes.any()?;
            if attr == b'p' {
                // The message up to the comma before `p=`.
                break (value, input.get(..before - 1).unwrap_or_default());
            }
        };
        let proof = STANDARD
            .decode(proof)
            .ok()
            .filter(|p| p.len() == KEY_LEN)
            .ok_or_else(|| malformed("Malformed proof in client-final-message."))?;
        if !attributes.0.is_empty() {
            return Err(malformed(
                "Garbage found at the end of client-final-message.",
            ));
        }
        let mut auth_message = self.auth_message.clone();
        auth_message.extend_from_slice(without_proof);
        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) = StoredKey.
        let signature = hmac(&self.verifier.stored_key, &auth_message);
        let mut client_key = [0; KEY_LEN];
        for ((key, p), s) in client_key.iter_mut().zip(&proof).zip(&signature) {
            *key = p ^ s;
        }
        let proven: bool = sha256(&client_key).ct_eq(&self.verifier.stored_key).into();
        if nonce != self.nonce.as_bytes() || !proven || self.doomed {
            return Err(ScramError::Failed);
        }
        let server_signature = hmac(&self.verifier.server_key, &auth_message);
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (user "user", password "pencil").
    const CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    fn salt() -> [u8; SALT_LEN] {
        let mut salt = [0; SALT_LEN];
        salt.copy_from_slice(&STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap());
        salt
    }

    fn rfc_challenge(doomed: bool) -> (String, Challenge) {
        challenge_with_nonce(
            Verifier::new("pencil", salt()),
            doomed,
            CLIENT_FIRST,
            SERVER_NONCE,
        )
        .unwrap()
    }

    #[test]
    fn rfc_7677_exchange() {
        let (server_first, challenge) = rfc_challenge(false);
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        assert_eq!(
            challenge.verify(CLIENT_FINAL).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // A user that does not exist fails even with the right proof.
        assert_eq!(
            rfc_challenge(true).1.verify(CLIENT_FINAL),
            Err(ScramError::Failed)
        );
    }

    #[test]
    fn the_final_message_must_repeat_nonce_and_binding() {
        let (_, challenge) = rfc_challenge(false);
        // The client's nonce alone, or another server nonce: refused even with a proof made
        // for it (RFC 5802 section 5.1).
        let wrong = b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(challenge.verify(wrong), Err(ScramError::Failed));
        let binding = b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(challenge.verify(binding), Err(ScramError::ChannelBinding));
        let garbage = [CLIENT_FINAL, b",x=1"].concat();
        assert!(matches!(
            challenge.verify(&garbage),
            Err(ScramError::Malformed(_))
        ));
        assert!(matches!(
            challenge.verify(b"c=biws,r=x,p=AAAA"),
            Err(ScramError::Malformed(_))
        ));
        assert!(matches!(
            challenge.verify(b""),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn client_first_messages_are_parsed_as_postgres_does() {
        let verifier = || Verifier::mock(salt());
        let refused = |message: &[u8]| challenge(verifier(), false, message).unwrap_err();
        assert!(matches!(
            refused(b"p=tls-server-end-point,,n=,r=abc"),
            ScramError::Malformed(_)
        ));
        assert_eq!(refused(b"n,a=admin,n=,r=abc"), ScramError::Authzid);
        assert_eq!(refused(b"n,,m=ext,n=,r=abc"), ScramError::Extension);
        assert_eq!(refused(b"n,,n=,r=a\x01c"), ScramError::Nonce);
        assert!(matches!(refused(b"n,,n="), ScramError::Malformed(_)));
        assert!(matches!(refused(b"x,,n=,r=a"), ScramError::Malformed(_)));
        assert!(matches!(refused(b"n,,n=,r=a\0"), ScramError::Malformed(_)));
        let (server_first, _) = challenge(verifier(), false, b"y,,n=,r=abc,x=ext").unwrap();
        assert!(server_first.starts_with("r=abc"), "{server_first}");
        assert!(server_first.ends_with(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
    }
}
