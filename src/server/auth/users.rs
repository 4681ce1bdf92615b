//! The users allowed to connect: their passwords, and their SCRAM verifiers made once at start.
//!
//! Every user name, known or not, has a SCRAM salt derived from it and a secret drawn when the
//! server starts, so a prober sees the same kind of salt, stable across attempts, for a user
//! that exists and for one that does not (PostgreSQL derives mock salts the same way).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use ring::hmac;

use super::scram::{SALT_LEN, Verifier};

/// A configured user.
struct User {
    password: String,
    scram: Verifier,
}

/// The users allowed to connect, with their passwords.
#[derive(Clone)]
pub struct Users {
    users: Arc<HashMap<String, User>>,
    /// Derives salts from user names.
    secret: Arc<hmac::Key>,
}

impl Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("names", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Users with their passwords.
    pub fn new(passwords: HashMap<String, String>) -> Users {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret[..]);
        let secret = Arc::new(hmac::Key::new(hmac::HMAC_SHA256, &secret));
        let users = passwords
            .into_iter()
            .map(|(name, password)| {
                let scram = Verifier::new(&password, salt(&secret, &name));
                (name, User { password, scram })
            })
            .collect();
        Users {
            users: Arc::new(users),
            secret,
        }
    }

    /// The password of `user`, if it exists.
    pub(super) fn password(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(|u| u.password.as_str())
    }

    /// The SCRAM verifier of `user`, and whether the user exists (else a mock verifier).
    pub(super) fn scram(&self, user: &str) -> (Verifier, bool) {
        match self.users.get(user) {
            Some(u) => (u.scram.clone(), true),
            None => (Verifier::mock(salt(&self.secret, user)), false),
        }
    }

    pub(super) fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

/// The SCRAM salt of a user name.
fn salt(secret: &hmac::Key, user: &str) -> [u8; SALT_LEN] {
    let tag = hmac::sign(secret, user.as_bytes());
    let mut salt = [0; SALT_LEN];
    salt.copy_from_slice(&tag.as_ref()[..SALT_LEN]);
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_users_get_stable_salts_of_one_kind() {
        let users = Users::new(HashMap::from([("alice".into(), "pw".into())]));
        let (alice, known) = users.scram("alice");
        assert!(known);
        let (mallory, known) = users.scram("mallory");
        assert!(!known);
        let (again, _) = users.scram("mallory");
        assert_eq!(format!("{:?}", alice), format!("{:?}", mallory));
        let salt_of = |v: &Verifier| {
            let (first, _) =
                super::super::scram::challenge(v.clone(), false, b"n,,n=,r=x").unwrap();
            first.split(',').nth(1).map(str::to_owned).unwrap()
        };
        assert_eq!(salt_of(&mallory), salt_of(&again));
        assert_ne!(salt_of(&mallory), salt_of(&alice));
        assert_eq!(salt_of(&alice).len(), salt_of(&mallory).len());
    }
}
