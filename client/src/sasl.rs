//! The client side of a SASL login on a fresh connection: SaslHandshake (v1) names the
//! mechanism, then SaslAuthenticate carries PLAIN's one message or SCRAM's exchange
//! (RFC 5802 with SHA-256 or SHA-512, as Kafka's SCRAM-SHA-256/512).
//!
//! SCRAM never sends the password: the client proves it knows it (ClientProof) and checks
//! that the broker knows the user's keys too (ServerSignature), so a broker impersonator
//! learns nothing it could log in with. A broker signature that does not verify fails the
//! login.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::security::SaslMechanism;

/// Iteration counts accepted from a broker (Kafka's bounds are 4096–16384; a larger one
/// would only burn the client's CPU).
const ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=65536;

/// Logs in on `connection` as `user`.
pub async fn authenticate(
    connection: &Connection,
    mechanism: SaslMechanism,
    user: &str,
    password: &str,
) -> Result<()> {
    let failed = |reason: String| Error::Authentication {
        addr: connection.addr().to_owned(),
        reason,
    };
    let handshake = connection
        .send(
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(mechanism.as_str())),
            1,
        )
        .await?;
    if handshake.error_code == ResponseError::IllegalSaslState.code() {
        return Err(failed(
            "this listener does not take SASL logins (use --security-protocol SSL or PLAINTEXT)"
                .to_owned(),
        ));
    }
    if handshake.error_code != 0 {
        let enabled: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(failed(format!(
            "the broker does not enable {} (it enables {})",
            mechanism.as_str(),
            enabled.join(", ")
        )));
    }
    let version = connection.version::<SaslAuthenticateRequest>()?;
    let exchange = |bytes: Vec<u8>| async move {
        let response = connection
            .send(
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
                version,
            )
            .await?;
        if response.error_code != 0 {
            let message = response
                .error_message
                .as_ref()
                .map_or("refused", |m| m.as_str());
            return Err(failed(format!("{} (as {user})", message)));
        }
        Ok((response.auth_bytes, response.session_lifetime_ms))
    };
    let lifetime_ms = match mechanism {
        SaslMechanism::Plain => {
            let message = format!("\0{user}\0{password}").into_bytes();
            exchange(message).await?.1
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let mut scram = Scram::new(mechanism, user, random_nonce());
            let (server_first, _) = exchange(scram.client_first().into_bytes()).await?;
            // PBKDF2 (thousands of HMACs) off the async workers.
            let password = password.to_owned();
            let (scram_back, client_final) = tokio::task::spawn_blocking(move || {
                let client_final = scram.client_final(&server_first, &password);
                (scram, client_final)
            })
            .await
            .map_err(|e| failed(format!("SCRAM computation failed: {e}")))?;
            scram = scram_back;
            let client_final = client_final.map_err(failed)?;
            let (server_final, lifetime_ms) = exchange(client_final.into_bytes()).await?;
            scram.verify_server_final(&server_final).map_err(failed)?;
            lifetime_ms
        }
    };
    if lifetime_ms > 0 {
        connection.retire_after(Duration::from_millis(lifetime_ms.unsigned_abs()));
    }
    Ok(())
}

fn random_nonce() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

/// One SCRAM exchange, client side.
struct Scram {
    mechanism: SaslMechanism,
    client_first_bare: String,
    nonce: String,
    /// AuthMessage and ServerKey, once the client-final message is made.
    expected: Option<(String, Vec<u8>)>,
}

impl Scram {
    fn new(mechanism: SaslMechanism, user: &str, nonce: String) -> Scram {
        // RFC 5802: '=' and ',' in the name are escaped.
        let name = user.replace('=', "=3D").replace(',', "=2C");
        Scram {
            mechanism,
            client_first_bare: format!("n={name},r={nonce}"),
            nonce,
            expected: None,
        }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    fn client_final(&mut self, server_first: &[u8], password: &str) -> Result<String, String> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| "the broker's SCRAM message is not UTF-8".to_owned())?;
        // RFC 5802: a mandatory extension this client does not know fails the exchange.
        if text.starts_with("m=") {
            return Err("the broker's SCRAM message asks for an unknown extension".to_owned());
        }
        let field = |key: &str| {
            text.split(',')
                .find_map(|part| part.strip_prefix(key))
                .ok_or_else(|| format!("the broker's SCRAM message has no {key} ({text:?})"))
        };
        let nonce = field("r=")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the broker's SCRAM nonce does not extend ours".to_owned());
        }
        let salt = BASE64
            .decode(field("s=")?)
            .map_err(|_| "the broker's SCRAM salt is not base64".to_owned())?;
        let iterations: u32 = field("i=")?
            .parse()
            .map_err(|_| "the broker's SCRAM iteration count is not a number".to_owned())?;
        if !ITERATIONS.contains(&iterations) {
            return Err(format!(
                "the broker asks for {iterations} SCRAM iterations (accepted: {}-{})",
                ITERATIONS.start(),
                ITERATIONS.end()
            ));
        }
        let salted = self.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = self.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = self.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = self.hmac(&salted, b"Server Key");
        self.expected = Some((auth_message, server_key));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)))
    }

    fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| "the broker's last SCRAM message is not UTF-8".to_owned())?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(format!("the broker refused the login: {error}"));
        }
        let (auth_message, server_key) = self
            .expected
            .as_ref()
            .ok_or_else(|| "SCRAM exchange out of order".to_owned())?;
        let signature = text
            .strip_prefix("v=")
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or_else(|| format!("the broker's last SCRAM message is malformed ({text:?})"))?;
        let expected = self.hmac(server_key, auth_message.as_bytes());
        if signature != expected {
            return Err(
                "the broker's SCRAM signature is wrong: it does not know this user's keys \
                 (an impostor, or a broker with other credentials)"
                    .to_owned(),
            );
        }
        Ok(())
    }

    fn hash(&self, data: &[u8]) -> Vec<u8> {
        match self.mechanism {
            SaslMechanism::ScramSha512 => Sha512::digest(data).to_vec(),
            _ => Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length.
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self.mechanism {
            SaslMechanism::ScramSha512 => run::<Hmac<Sha512>>(key, data),
            _ => run::<Hmac<Sha256>>(key, data),
        }
    }

    fn salted_password(&self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self.mechanism {
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
}

/// Hi(password, salt, iterations) for `mechanism`: what AlterUserScramCredentials carries
/// (the broker derives the keys from it; the password itself never leaves the client).
pub fn salted_password(
    mechanism: SaslMechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    Scram::new(mechanism, "", String::new()).salted_password(password.as_bytes(), salt, iterations)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, from the client's side.
    #[test]
    fn rfc7677_exchange() {
        let mut scram = Scram::new(
            SaslMechanism::ScramSha256,
            "user",
            "rOprNGfwEbeRWgbNEkqO".to_owned(),
        );
        assert_eq!(scram.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = scram.client_final(server_first, "pencil").unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        scram
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(scram
            .verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .is_err());
        assert!(scram.verify_server_final(b"e=invalid-proof").is_err());
    }

    #[test]
    fn bad_server_messages_are_refused() {
        let mut scram = Scram::new(SaslMechanism::ScramSha512, "a,b=c", "nonce".to_owned());
        assert_eq!(scram.client_first(), "n,,n=a=2Cb=3Dc,r=nonce");
        for bad in [
            &b"r=other,s=AAAA,i=4096"[..],
            b"r=nonce,s=AAAA,i=4096",
            b"r=nonceX,s=!!,i=4096",
            b"r=nonceX,s=AAAA,i=1",
            b"r=nonceX,s=AAAA,i=999999999",
            b"r=nonceX,s=AAAA",
            b"m=ext,r=nonceX,s=AAAA,i=4096",
            b"\xff\xfe",
        ] {
            assert!(scram.client_final(bad, "pw").is_err(), "{bad:?}");
        }
    }
}
