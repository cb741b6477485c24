//! The SCRAM credentials of SASL users, kept in the data directory.
//!
//! A user has one credential per SCRAM mechanism: the salt, the iteration count and the
//! two keys RFC 5802 derives from the salted password (StoredKey = H(ClientKey),
//! ServerKey). Passwords are never stored, and the keys cannot log anyone in without the
//! password. PLAIN logins are checked against the same credentials (the password is
//! salted and hashed again and compared with StoredKey), so one list of users serves every
//! mechanism.
//!
//! The file is `security/scram-credentials.json` under the data directory, rewritten
//! whole and atomically (temporary file, fsync, rename) on every change; a change is
//! acknowledged only once it is on disk. Readers take a snapshot under a read lock.
//!
//! Limits: the file belongs to one node; in a cluster each broker keeps its own until
//! credentials move into the replicated metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::SecurityError;
use crate::config::SaslMechanism;

/// Kafka's bounds on SCRAM iterations (`ScramMechanism.minIterations` / max).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;
/// Iterations of credentials made here from a password.
pub const DEFAULT_ITERATIONS: u32 = 8192;
const SALT_LEN: usize = 32;

/// One user's credential for one SCRAM mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// The credential for `salted_password` (Hi(password, salt, iterations), what
    /// AlterUserScramCredentials carries).
    pub fn from_salted(
        mechanism: SaslMechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        // RFC 5802: ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey =
        // H(ClientKey), ServerKey = HMAC(SaltedPassword, "Server Key").
        let client_key = primitives::hmac(mechanism, salted_password, b"Client Key");
        let stored_key = primitives::hash(mechanism, &client_key);
        let server_key = primitives::hmac(mechanism, salted_password, b"Server Key");
        ScramCredential {
            salt: salt.to_vec(),
            stored_key,
            server_key,
            iterations,
        }
    }

    /// A new credential for `password`, with a random salt.
    pub fn from_password(
        mechanism: SaslMechanism,
        password: &str,
        iterations: u32,
    ) -> ScramCredential {
        let mut salt = vec![0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let salted = salted_password(mechanism, password.as_bytes(), &salt, iterations);
        ScramCredential::from_salted(mechanism, &salt, &salted, iterations)
    }

    /// Whether `password` is the one this credential was made from.
    pub fn matches(&self, mechanism: SaslMechanism, password: &str) -> bool {
        let salted = salted_password(mechanism, password.as_bytes(), &self.salt, self.iterations);
        let expected =
            ScramCredential::from_salted(mechanism, &self.salt, &salted, self.iterations);
        primitives::constant_time_eq(&expected.stored_key, &self.stored_key)
    }
}

/// Hi(password, salt, iterations) of RFC 5802 (PBKDF2 with HMAC of the mechanism's hash).
pub fn salted_password(
    mechanism: SaslMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    primitives::pbkdf2(mechanism, password, salt, iterations)
}

/// SCRAM's primitives for each mechanism, from RustCrypto's sha2, hmac and pbkdf2.
pub(super) mod primitives {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256, Sha512};

    use crate::config::SaslMechanism;

    /// H(data).
    pub fn hash(mechanism: SaslMechanism, data: &[u8]) -> Vec<u8> {
        match mechanism {
            SaslMechanism::ScramSha512 => Sha512::digest(data).to_vec(),
            _ => Sha256::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub fn hmac(mechanism: SaslMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length: this cannot fail.
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match mechanism {
            SaslMechanism::ScramSha512 => run::<Hmac<Sha512>>(key, data),
            _ => run::<Hmac<Sha256>>(key, data),
        }
    }

    /// Hi(password, salt, iterations): PBKDF2 with HMAC of the mechanism's hash.
    pub fn pbkdf2(
        mechanism: SaslMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Vec<u8> {
        match mechanism {
            SaslMechanism::ScramSha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
            _ => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
        }
    }

    pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Users by name, their credentials by mechanism name.
type Users = BTreeMap<String, BTreeMap<String, ScramCredential>>;

#[derive(Serialize, Deserialize, Default)]
struct File {
    users: Users,
}

/// A change of one user's credential for one mechanism.
#[derive(Debug, Clone)]
pub enum CredentialChange {
    Upsert {
        user: String,
        mechanism: SaslMechanism,
        credential: ScramCredential,
    },
    Delete {
        user: String,
        mechanism: SaslMechanism,
    },
}

/// Why a change was refused (before anything was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeRefused {
    /// Deleting a credential that does not exist.
    NotFound,
}

/// See the module docs.
pub struct CredentialStore {
    path: PathBuf,
    users: RwLock<Users>,
    /// Held by a change from reading the map to swapping in the new one, so changes do
    /// not overwrite each other; logins never wait for it.
    writer: std::sync::Mutex<()>,
    /// Whether the file did not exist when the store was opened.
    fresh: bool,
}

impl CredentialStore {
    /// Opens (or starts) the store of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<CredentialStore, SecurityError> {
        let path = data_dir.join("security").join("scram-credentials.json");
        let found = sluice_storage::fsutil::read_optional(&path)
            .map_err(|e| SecurityError::Credentials(format!("read {}: {e}", path.display())))?;
        let fresh = found.is_none();
        let users = match found {
            None => Users::new(),
            Some(bytes) => {
                serde_json::from_slice::<File>(&bytes)
                    .map_err(|e| {
                        SecurityError::Credentials(format!("{} is damaged: {e}", path.display()))
                    })?
                    .users
            }
        };
        Ok(CredentialStore {
            path,
            users: RwLock::new(users),
            writer: std::sync::Mutex::new(()),
            fresh,
        })
    }

    /// Whether there was no credentials file yet when the store was opened (no user was
    /// ever created on this data directory).
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The credential of `user` for `mechanism`.
    pub fn get(&self, user: &str, mechanism: SaslMechanism) -> Option<ScramCredential> {
        self.read().get(user)?.get(mechanism.as_str()).cloned()
    }

    /// Whether `password` is `user`'s, checked against any of the user's SCRAM
    /// credentials (the PLAIN mechanism). False for an unknown user.
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        let found = {
            let users = self.read();
            users.get(user).and_then(|creds| {
                [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512]
                    .into_iter()
                    .find_map(|m| creds.get(m.as_str()).map(|c| (m, c.clone())))
            })
        };
        match found {
            Some((mechanism, credential)) => credential.matches(mechanism, password),
            None => {
                // Spend what a real check spends, so that timing tells nothing about
                // which users exist.
                let _ = salted_password(
                    SaslMechanism::ScramSha256,
                    password.as_bytes(),
                    &[0; SALT_LEN],
                    DEFAULT_ITERATIONS,
                );
                false
            }
        }
    }

    /// Every user with the mechanisms and iterations of their credentials.
    pub fn describe(&self) -> BTreeMap<String, Vec<(SaslMechanism, u32)>> {
        self.read()
            .iter()
            .map(|(user, creds)| {
                let infos = creds
                    .iter()
                    .filter_map(|(name, c)| Some((SaslMechanism::parse(name)?, c.iterations)))
                    .collect();
                (user.clone(), infos)
            })
            .collect()
    }

    /// Applies `changes` and writes the file once. Each change gets its own outcome; a
    /// user with any refused change (deleting a credential it does not have) keeps all
    /// its credentials as they were, and its other changes report success only if they
    /// would have applied. Fails as a whole when the file cannot be written (then nothing
    /// changed in memory either).
    pub fn apply(
        &self,
        changes: &[CredentialChange],
    ) -> Result<Vec<Result<(), ChangeRefused>>, SecurityError> {
        // One writer at a time; logins keep reading the current map meanwhile.
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.read().clone();
        let run = |refused_users: &std::collections::HashSet<&str>| {
            let mut next = current.clone();
            let mut outcomes = Vec::with_capacity(changes.len());
            for change in changes {
                let (user, outcome) = match change {
                    CredentialChange::Upsert {
                        user,
                        mechanism,
                        credential,
                    } => {
                        if !refused_users.contains(user.as_str()) {
                            next.entry(user.clone())
                                .or_default()
                                .insert(mechanism.as_str().to_owned(), credential.clone());
                        }
                        (user, Ok(()))
                    }
                    CredentialChange::Delete { user, mechanism } => {
                        let exists = next
                            .get(user)
                            .is_some_and(|creds| creds.contains_key(mechanism.as_str()));
                        if exists && !refused_users.contains(user.as_str()) {
                            if let Some(creds) = next.get_mut(user) {
                                creds.remove(mechanism.as_str());
                                if creds.is_empty() {
                                    next.remove(user);
                                }
                            }
                        }
                        (
                            user,
                            if exists {
                                Ok(())
                            } else {
                                Err(ChangeRefused::NotFound)
                            },
                        )
                    }
                };
                outcomes.push((user.as_str(), outcome));
            }
            (next, outcomes)
        };
        // First pass: which users have a refused change; second: apply the others.
        let (_, trial) = run(&std::collections::HashSet::new());
        let refused: std::collections::HashSet<&str> = trial
            .iter()
            .filter(|(_, o)| o.is_err())
            .map(|(u, _)| *u)
            .collect();
        let (next, _) = run(&refused);
        let outcomes = trial.into_iter().map(|(_, o)| o).collect();
        if next != current {
            self.write(&next)?;
            *self.users.write().unwrap_or_else(|p| p.into_inner()) = next;
        }
        Ok(outcomes)
    }

    /// Creates `user` with SCRAM-SHA-256 and SCRAM-SHA-512 credentials for `password`
    /// unless the user exists; whether it was created.
    pub fn create_if_absent(&self, user: &str, password: &str) -> Result<bool, SecurityError> {
        if self.read().contains_key(user) {
            return Ok(false);
        }
        let changes: Vec<CredentialChange> =
            [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512]
                .into_iter()
                .map(|mechanism| CredentialChange::Upsert {
                    user: user.to_owned(),
                    mechanism,
                    credential: ScramCredential::from_password(
                        mechanism,
                        password,
                        DEFAULT_ITERATIONS,
                    ),
                })
                .collect();
        self.apply(&changes)?;
        Ok(true)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Users> {
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, users: &Users) -> Result<(), SecurityError> {
        let failed = |e: &dyn std::fmt::Display| {
            SecurityError::Credentials(format!("write {}: {e}", self.path.display()))
        };
        let bytes = serde_json::to_vec_pretty(&File {
            users: users.clone(),
        })
        .map_err(|e| failed(&e))?;
        super::write_private_file(&self.path, &bytes).map_err(|e| failed(&e))
    }
}

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
        let salt = base64::engine::general_purpose::STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap();
        let salted = salted_password(SaslMechanism::ScramSha256, b"pencil", &salt, 4096);
        let c = ScramCredential::from_salted(SaslMechanism::ScramSha256, &salt, &salted, 4096);
        // StoredKey and ServerKey as RFC 5802 defines them (computed independently with
        // Python's hashlib and hmac from the RFC's salt and password).
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(
            b64(&c.stored_key),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
        assert_eq!(
            b64(&c.server_key),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        assert!(c.matches(SaslMechanism::ScramSha256, "pencil"));
        assert!(!c.matches(SaslMechanism::ScramSha256, "pencil2"));
    }

    #[test]
    fn store_survives_reopen_and_never_holds_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        assert!(store.create_if_absent("alice", "alice-secret").unwrap());
        assert!(!store.create_if_absent("alice", "other").unwrap());
        assert!(store.check_password("alice", "alice-secret"));
        assert!(!store.check_password("alice", "other"));
        assert!(!store.check_password("bob", "alice-secret"));
        let text =
            std::fs::read_to_string(dir.path().join("security/scram-credentials.json")).unwrap();
        assert!(!text.contains("alice-secret"));
        let reopened = CredentialStore::open(dir.path()).unwrap();
        assert!(reopened.check_password("alice", "alice-secret"));
        assert_eq!(
            reopened.describe()["alice"],
            vec![
                (SaslMechanism::ScramSha256, DEFAULT_ITERATIONS),
                (SaslMechanism::ScramSha512, DEFAULT_ITERATIONS)
            ]
        );
        let outcomes = reopened
            .apply(&[
                CredentialChange::Delete {
                    user: "alice".into(),
                    mechanism: SaslMechanism::ScramSha256,
                },
                CredentialChange::Delete {
                    user: "carol".into(),
                    mechanism: SaslMechanism::ScramSha256,
                },
            ])
            .unwrap();
        assert_eq!(outcomes, vec![Ok(()), Err(ChangeRefused::NotFound)]);
        // SHA-512 remains, and PLAIN still works through it.
        assert!(reopened.check_password("alice", "alice-secret"));
    }

    #[test]
    fn a_user_with_a_refused_change_keeps_its_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        assert!(store.is_fresh());
        store.create_if_absent("alice", "old").unwrap();
        let m = SaslMechanism::ScramSha512;
        let outcomes = store
            .apply(&[
                CredentialChange::Upsert {
                    user: "alice".into(),
                    mechanism: m,
                    credential: ScramCredential::from_password(m, "new", MIN_ITERATIONS),
                },
                // alice has SHA-256 and SHA-512, but deleting SHA-256 twice is refused.
                CredentialChange::Delete {
                    user: "alice".into(),
                    mechanism: SaslMechanism::ScramSha256,
                },
                CredentialChange::Delete {
                    user: "alice".into(),
                    mechanism: SaslMechanism::ScramSha256,
                },
            ])
            .unwrap();
        assert_eq!(outcomes[2], Err(ChangeRefused::NotFound));
        assert!(
            store.check_password("alice", "old"),
            "nothing of alice's changed"
        );
        assert!(store.get("alice", SaslMechanism::ScramSha256).is_some());
        assert!(!CredentialStore::open(dir.path()).unwrap().is_fresh());
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("security")).unwrap();
        std::fs::write(dir.path().join("security/scram-credentials.json"), b"{oops").unwrap();
        let error = CredentialStore::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("damaged"), "{error}");
    }
}
