//! The server side of SASL exchanges: PLAIN, and SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802,
//! RFC 7677) as Kafka's `ScramSaslServer` runs them.
//!
//! The hashing (SHA-2, HMAC, PBKDF2) comes from RustCrypto's crates (see
//! `credentials::primitives`); this file parses and writes SCRAM's messages. Kafka's
//! rules, where they differ from a strict reading of the RFC, are kept because clients
//! depend on them:
//! - the client-final nonce must *end with* the server's nonce (librdkafka sends its own
//!   nonce in front of the whole server nonce, and Kafka accepts it);
//! - an authorization id, if given, must be the user's own name;
//! - channel binding is not offered (`p=` is refused), extensions other than mandatory
//!   ones (`m=`) are ignored.
//!
//! An unknown SCRAM user gets a made-up salt (derived from the name and a per-process
//! secret, so asking twice gives the same one) and fails at the proof, not at once.
//! Malformed messages fail the login; nothing here panics on client bytes.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::RngCore;

use super::credentials::{primitives, CredentialStore, ScramCredential, DEFAULT_ITERATIONS};
use crate::config::SaslMechanism;

/// Random bytes in the server's part of a SCRAM nonce (base64-encoded on the wire).
const SERVER_NONCE_BYTES: usize = 24;

/// Starts exchanges against the credential store.
pub struct SaslServer {
    store: Arc<CredentialStore>,
    /// Keys the made-up salts of unknown users.
    secret: Arc<[u8; 32]>,
}

impl SaslServer {
    pub fn new(store: Arc<CredentialStore>) -> SaslServer {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        SaslServer {
            store,
            secret: Arc::new(secret),
        }
    }

    /// Starts an exchange for `mechanism`.
    pub fn start(&self, mechanism: SaslMechanism) -> Exchange {
        Exchange {
            mechanism,
            store: self.store.clone(),
            secret: self.secret.clone(),
            stage: Stage::First,
            claimed_user: None,
            server_nonce: None,
        }
    }
}

/// One step's result.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as this user; send the bytes (SCRAM's server-final message).
    Done { user: String, reply: Vec<u8> },
    /// Wrong credentials or a malformed message.
    Failed,
}

enum Stage {
    First,
    /// SCRAM, after the server-first message.
    ScramFinal(Box<ScramState>),
    Over,
}

struct ScramState {
    user: String,
    /// `None` for an unknown user: the exchange goes on with a made-up salt and fails.
    credential: Option<ScramCredential>,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// A SASL exchange in progress on one connection.
pub struct Exchange {
    pub mechanism: SaslMechanism,
    store: Arc<CredentialStore>,
    secret: Arc<[u8; 32]>,
    stage: Stage,
    /// The user the client's first message names, for the log (never the password).
    claimed_user: Option<String>,
    /// The server's nonce part, fixed by tests (random otherwise).
    server_nonce: Option<String>,
}

impl Exchange {
    /// Feeds the client's next message.
    pub fn step(&mut self, input: &[u8]) -> Step {
        let stage = std::mem::replace(&mut self.stage, Stage::Over);
        let outcome = match (stage, self.mechanism) {
            (Stage::First, SaslMechanism::Plain) => self.plain(input),
            (Stage::First, _) => self.scram_first(input),
            (Stage::ScramFinal(state), _) => self.scram_final(&state, input),
            (Stage::Over, _) => None,
        };
        outcome.unwrap_or(Step::Failed)
    }

    /// The user the client claimed to be (for logging a failure).
    pub fn claimed_user(&self) -> Option<&str> {
        self.claimed_user.as_deref()
    }

    fn claim(&mut self, user: &str) {
        // Whatever it is, it goes to a log line: keep it short and printable.
        self.claimed_user = Some(user.chars().filter(|c| !c.is_control()).take(128).collect());
    }

    /// PLAIN: `authzid NUL authcid NUL password` (RFC 4616).
    fn plain(&mut self, input: &[u8]) -> Option<Step> {
        let text = std::str::from_utf8(input).ok()?;
        let mut parts = text.split('\0');
        let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || user.is_empty() {
            return None;
        }
        self.claim(user);
        if !authzid.is_empty() && authzid != user {
            return None;
        }
        self.store
            .check_password(user, password)
            .then(|| Step::Done {
                user: user.to_owned(),
                reply: Vec::new(),
            })
    }

    /// client-first-message: `gs2-header client-first-bare`, where the header is
    /// `n,,` / `y,,` / `n,a=authzid,` and the bare part `n=user,r=nonce[,ext...]`.
    fn scram_first(&mut self, input: &[u8]) -> Option<Step> {
        let text = std::str::from_utf8(input).ok()?;
        let (flag, rest) = text.split_once(',')?;
        if flag != "n" && flag != "y" {
            // `p=`: channel binding, which Kafka does not offer either.
            return None;
        }
        let (authzid, bare) = rest.split_once(',')?;
        let authzid = match authzid {
            "" => None,
            a => Some(decode_name(a.strip_prefix("a=")?)?),
        };
        let gs2_header = format!("{flag},{},", rest.split_once(',')?.0);
        let mut attributes = bare.split(',');
        let user = decode_name(attributes.next()?.strip_prefix("n=")?)?;
        let client_nonce = attributes.next()?.strip_prefix("r=")?;
        if user.is_empty() || client_nonce.is_empty() || !printable(client_nonce) {
            return None;
        }
        if attributes.any(|a| a.starts_with("m=")) {
            return None;
        }
        self.claim(&user);
        if authzid.as_ref().is_some_and(|a| a != &user) {
            return None;
        }
        let credential = self.store.get(&user, self.mechanism);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (
                primitives::hmac(
                    SaslMechanism::ScramSha256,
                    &self.secret[..],
                    user.as_bytes(),
                ),
                DEFAULT_ITERATIONS,
            ),
        };
        let server_nonce = self.server_nonce.take().unwrap_or_else(|| {
            let mut bytes = [0u8; SERVER_NONCE_BYTES];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            BASE64.encode(bytes)
        });
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(&salt));
        let reply = server_first.clone().into_bytes();
        self.stage = Stage::ScramFinal(Box::new(ScramState {
            user,
            credential,
            gs2_header,
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
        }));
        Some(Step::Continue(reply))
    }

    /// client-final-message: `c=base64(gs2-header),r=nonce[,ext...],p=proof`.
    fn scram_final(&mut self, state: &ScramState, input: &[u8]) -> Option<Step> {
        let text = std::str::from_utf8(input).ok()?;
        let (without_proof, proof) = text.rsplit_once(",p=")?;
        let mut attributes = without_proof.split(',');
        let binding = BASE64.decode(attributes.next()?.strip_prefix("c=")?).ok()?;
        let nonce = attributes.next()?.strip_prefix("r=")?;
        if binding != state.gs2_header.as_bytes() || !nonce.ends_with(&state.nonce) {
            return None;
        }
        let proof = BASE64.decode(proof).ok()?;
        let credential = state.credential.as_ref()?;
        let m = self.mechanism;
        let auth_message = format!(
            "{},{},{without_proof}",
            state.client_first_bare, state.server_first
        );
        let client_signature = primitives::hmac(m, &credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return None;
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !primitives::constant_time_eq(&primitives::hash(m, &client_key), &credential.stored_key)
        {
            return None;
        }
        let server_signature = primitives::hmac(m, &credential.server_key, auth_message.as_bytes());
        Some(Step::Done {
            user: state.user.clone(),
            reply: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
        })
    }
}

/// A SCRAM `saslname`: `=2C` is a comma and `=3D` an equals sign; any other `=` is
/// malformed.
fn decode_name(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3)?;
        out.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// RFC 5802's `printable` (a nonce): ASCII 0x21-0x7E except the comma.
fn printable(text: &str) -> bool {
    text.bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::credentials::{salted_password, CredentialChange};

    fn server() -> (tempfile::TempDir, Arc<CredentialStore>, SaslServer) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CredentialStore::open(dir.path()).unwrap());
        store.create_if_absent("alice", "alice-secret").unwrap();
        let server = SaslServer::new(store.clone());
        (dir, store, server)
    }

    /// The client side of SCRAM, for the tests: RFC 5802's computations.
    fn client_final(
        m: SaslMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        nonce_sent: &str,
    ) -> String {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let salt = BASE64.decode(&attrs[1][2..]).unwrap();
        let iterations: u32 = attrs[2][2..].parse().unwrap();
        let salted = salted_password(m, password.as_bytes(), &salt, iterations);
        let client_key = primitives::hmac(m, &salted, b"Client Key");
        let stored_key = primitives::hash(m, &client_key);
        let without_proof = format!("c=biws,r={nonce_sent}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = primitives::hmac(m, &stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    fn scram_login(
        server: &SaslServer,
        m: SaslMechanism,
        user: &str,
        password: &str,
        doubled_nonce: bool,
    ) -> Step {
        let mut exchange = server.start(m);
        let bare = format!("n={user},r=clientnonce123");
        let Step::Continue(first) = exchange.step(format!("n,,{bare}").as_bytes()) else {
            return Step::Failed;
        };
        let server_first = String::from_utf8(first).unwrap();
        let nonce = server_first.split(',').next().unwrap()[2..].to_owned();
        // librdkafka's way: its own nonce again in front of the server's whole nonce.
        let sent = if doubled_nonce {
            format!("clientnonce123{nonce}")
        } else {
            nonce
        };
        let last = client_final(m, password, &bare, &server_first, &sent);
        exchange.step(last.as_bytes())
    }

    #[test]
    fn rfc7677_exchange_is_reproduced_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CredentialStore::open(dir.path()).unwrap());
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let m = SaslMechanism::ScramSha256;
        let salted = salted_password(m, b"pencil", &salt, 4096);
        store
            .apply(&[CredentialChange::Upsert {
                user: "user".into(),
                mechanism: m,
                credential: ScramCredential::from_salted(m, &salt, &salted, 4096),
            }])
            .unwrap();
        let server = SaslServer::new(store);
        let mut exchange = server.start(m);
        exchange.server_nonce = Some("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_owned());
        assert_eq!(
            exchange.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
            Step::Continue(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_vec()
            )
        );
        assert_eq!(
            exchange.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
            Step::Done {
                user: "user".to_owned(),
                reply: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            }
        );
    }

    #[test]
    fn scram_accepts_the_right_password_only() {
        let (_dir, _store, server) = server();
        for m in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
            for doubled in [false, true] {
                assert!(
                    matches!(scram_login(&server, m, "alice", "alice-secret", doubled),
                        Step::Done { ref user, .. } if user == "alice"),
                    "{m:?} doubled={doubled}"
                );
            }
            assert_eq!(
                scram_login(&server, m, "alice", "wrong", false),
                Step::Failed
            );
            assert_eq!(
                scram_login(&server, m, "mallory", "alice-secret", false),
                Step::Failed
            );
        }
    }

    #[test]
    fn an_unknown_user_gets_a_server_first_message_too() {
        let (_dir, _store, server) = server();
        let salt_of = |user: &str| {
            let mut exchange = server.start(SaslMechanism::ScramSha256);
            let Step::Continue(first) = exchange.step(format!("n,,n={user},r=abc").as_bytes())
            else {
                panic!("no server-first message for {user}");
            };
            assert_eq!(exchange.claimed_user(), Some(user));
            String::from_utf8(first)
                .unwrap()
                .split(',')
                .nth(1)
                .unwrap()
                .to_owned()
        };
        // Asking twice does not tell a made-up salt from a stored one.
        assert_eq!(salt_of("nobody"), salt_of("nobody"));
        assert_ne!(salt_of("nobody"), salt_of("somebody"));
    }

    #[test]
    fn plain_checks_the_scram_credentials() {
        let (_dir, _store, server) = server();
        let login = |input: &[u8]| server.start(SaslMechanism::Plain).step(input);
        assert!(matches!(login(b"\0alice\0alice-secret"), Step::Done { .. }));
        assert!(matches!(
            login(b"alice\0alice\0alice-secret"),
            Step::Done { .. }
        ));
        assert_eq!(login(b"bob\0alice\0alice-secret"), Step::Failed);
        assert_eq!(login(b"\0alice\0wrong"), Step::Failed);
        assert_eq!(login(b"\0alice"), Step::Failed);
    }

    #[test]
    fn malformed_messages_fail_without_panicking() {
        let (_dir, _store, server) = server();
        let inputs: &[&[u8]] = &[
            b"",
            b"\0\0\0",
            b"n",
            b"n,",
            b"n,,",
            b"n,,n",
            b"n,,n=",
            b"n,,n=a",
            b"n,,n=a,r=",
            b"n,a,n=a,r=b",
            b"n,a=,n=a,r=b",
            b"p=tls-unique,,n=a,r=b",
            b"\xff\xfe",
            b"n,,n=a=,r=b",
            b"n,,n=a=2,r=b",
            b"n,,n=alice,r=x,m=ext",
            b"n,a=bob,n=alice,r=x",
        ];
        for m in SaslMechanism::ALL {
            for input in inputs {
                let step = server.start(m).step(input);
                assert!(!matches!(step, Step::Done { .. }), "{m:?} {input:?}");
            }
            // Malformed client-final messages after a good first message.
            for last in [
                &b""[..],
                b"c=biws",
                b"c=biws,r=x,p=",
                b"c=!!,r=x,p=AAAA",
                b"p=,c=,r=",
            ] {
                let mut exchange = server.start(SaslMechanism::ScramSha256);
                exchange.step(b"n,,n=alice,r=abc");
                assert_eq!(exchange.step(last), Step::Failed);
                assert_eq!(
                    exchange.step(b"anything"),
                    Step::Failed,
                    "over after a failure"
                );
            }
        }
    }
}
