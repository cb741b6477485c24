//! One connection's authentication: its principal, its SASL exchange, and which requests
//! it may send, with Kafka's rules.
//!
//! - On a SASL listener, before authentication, only ApiVersions, SaslHandshake and
//!   SaslAuthenticate are served; any other request closes the connection (Kafka closes
//!   it too: the client skipped authentication).
//! - SaslHandshake (v1) picks the mechanism; an unknown or disabled one answers
//!   UNSUPPORTED_SASL_MECHANISM with the enabled list and closes. SaslAuthenticate then
//!   carries the exchange's messages. A failed login answers SASL_AUTHENTICATION_FAILED
//!   after a delay that grows with an address's recent failures, then closes.
//! - With `connections.max.reauth.ms`, a session lasts that long (told to the client in
//!   SaslAuthenticate v1+); the client re-authenticates on the same connection (KIP-368)
//!   as the same principal with the same mechanism, or the first request after expiry
//!   closes the connection.
//! - On a non-SASL listener, SaslHandshake answers ILLEGAL_SASL_STATE; the principal is
//!   the client certificate's subject on SSL with a certificate, else ANONYMOUS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::acl::{Access, AccessCache, Authorizer};
use super::sasl::{Exchange, Step};
use super::{ClientListener, Principal, Security};
use crate::config::SaslMechanism;

/// Where a SASL connection is in its login.
enum Stage {
    /// Not a SASL listener: nothing to do.
    NoSasl,
    /// Waiting for SaslHandshake (first login, or a re-authentication).
    Handshake,
    /// Handshake done; the next SaslAuthenticate starts this mechanism.
    Authenticate(SaslMechanism),
    /// Between SaslAuthenticate messages.
    Exchanging(Box<Exchange>),
}

/// What the dispatcher does with a request, before decoding its body.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Serve,
    /// Close the connection; the reason is logged.
    Close(&'static str),
}

/// See the module docs.
pub struct Session {
    pub listener: Arc<ClientListener>,
    pub peer: SocketAddr,
    principal: Principal,
    authenticated: bool,
    stage: Stage,
    /// The mechanism of the current login, which a re-authentication must use again.
    mechanism: Option<SaslMechanism>,
    expires_at: Option<Instant>,
    /// Set by a request whose answer ends the connection (a failed login): the reader
    /// queues a close after that answer and reads nothing more.
    pub close_after_reply: bool,
    /// The authorizer's answers for this connection (see `acl::authorizer`).
    access_cache: AccessCache,
    /// Set by a throttled request (client quotas, KIP-219): no request is read from the
    /// connection before it ends. Shared with answers still being prepared.
    pub mute: std::sync::Arc<crate::quotas::Mute>,
}

impl Session {
    /// A new connection on `listener`; `certificate_principal` is the client
    /// certificate's subject on a TLS listener that received one.
    pub fn new(
        listener: Arc<ClientListener>,
        peer: SocketAddr,
        certificate_principal: Option<String>,
    ) -> Session {
        let sasl = listener.uses_sasl();
        Session {
            principal: certificate_principal
                .filter(|_| !sasl)
                .map_or_else(Principal::anonymous, Principal::user),
            authenticated: !sasl,
            stage: if sasl {
                Stage::Handshake
            } else {
                Stage::NoSasl
            },
            mechanism: None,
            expires_at: None,
            close_after_reply: false,
            access_cache: AccessCache::default(),
            mute: Default::default(),
            listener,
            peer,
        }
    }

    /// The principal requests are made as.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// What the connection's principal may do, asked through its cache.
    pub fn access<'a>(&'a mut self, authorizer: &'a Authorizer) -> Access<'a> {
        Access::new(
            authorizer,
            &self.principal,
            self.peer.ip(),
            &mut self.access_cache,
        )
    }

    /// Whether the connection may send any request (logged in, or not a SASL listener).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Whether `api` may be served now.
    pub fn gate(&self, api: ApiKey, now: Instant) -> Gate {
        if matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        ) {
            return Gate::Serve;
        }
        if !self.authenticated {
            return Gate::Close("request before SASL authentication");
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            return Gate::Close(
                "SASL session expired (connections.max.reauth.ms) without re-authentication",
            );
        }
        Gate::Serve
    }

    /// SaslHandshake; `true` in the second field closes the connection after the reply.
    pub fn handshake(&mut self, request: &SaslHandshakeRequest) -> (SaslHandshakeResponse, bool) {
        let enabled: Vec<StrBytes> = self
            .listener
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.as_str()))
            .collect();
        let response = |error: Option<ResponseError>| {
            SaslHandshakeResponse::default()
                .with_error_code(error.map_or(0, |e| e.code()))
                .with_mechanisms(enabled.clone())
        };
        if !matches!(self.stage, Stage::Handshake) {
            return (response(Some(ResponseError::IllegalSaslState)), true);
        }
        let asked = request.mechanism.as_str();
        let chosen = SaslMechanism::parse(asked)
            .filter(|m| asked == m.as_str() && self.listener.mechanisms.contains(m));
        let Some(mechanism) = chosen else {
            tracing::info!(peer = %self.peer, mechanism = asked, "SASL mechanism not enabled on this listener");
            return (
                response(Some(ResponseError::UnsupportedSaslMechanism)),
                true,
            );
        };
        if self.mechanism.is_some_and(|m| m != mechanism) {
            // KIP-368: a re-authentication keeps the mechanism.
            return (response(Some(ResponseError::IllegalSaslState)), true);
        }
        self.stage = Stage::Authenticate(mechanism);
        (response(None), false)
    }

    /// SaslAuthenticate. The reply may wait (a failed login's delay); `close` tells the
    /// connection to close after it.
    pub async fn authenticate(
        &mut self,
        security: &Security,
        request: &SaslAuthenticateRequest,
        now: Instant,
    ) -> Authenticated {
        let exchange = match std::mem::replace(&mut self.stage, Stage::Handshake) {
            Stage::Authenticate(mechanism) => Box::new(security.sasl.start(mechanism)),
            Stage::Exchanging(exchange) => exchange,
            Stage::NoSasl | Stage::Handshake => {
                self.stage = if self.listener.uses_sasl() {
                    Stage::Handshake
                } else {
                    Stage::NoSasl
                };
                return Authenticated {
                    response: SaslAuthenticateResponse::default()
                        .with_error_code(ResponseError::IllegalSaslState.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "SaslAuthenticate without a SaslHandshake first",
                        ))),
                    delay: None,
                    close: true,
                };
            }
        };
        let (exchange, step) = if exchange.mechanism == SaslMechanism::Plain {
            // PLAIN salts and hashes the password (PBKDF2, thousands of rounds): off the
            // runtime's threads, so that logins cannot stall everyone's requests.
            let input = request.auth_bytes.clone();
            let mut exchange = exchange;
            match tokio::task::spawn_blocking(move || {
                let step = exchange.step(&input);
                (exchange, step)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "PLAIN check failed to run");
                    return self.failed(security, None, "SASL is not available", now);
                }
            }
        } else {
            let mut exchange = exchange;
            let step = exchange.step(&request.auth_bytes);
            (exchange, step)
        };
        match step {
            Step::Continue(reply) => {
                let reply = Bytes::from(reply);
                self.stage = Stage::Exchanging(exchange);
                Authenticated {
                    response: SaslAuthenticateResponse::default().with_auth_bytes(reply),
                    delay: None,
                    close: false,
                }
            }
            Step::Done { user, reply } => {
                let principal = Principal::user(user);
                if self.authenticated && principal != self.principal {
                    let message = "re-authentication must keep the principal";
                    let claimed = Some(principal.name.as_str());
                    return self.failed(security, claimed, message, now);
                }
                security.failed_logins.succeeded(self.peer.ip());
                let mechanism = exchange.mechanism.as_str();
                if self.authenticated {
                    tracing::debug!(peer = %self.peer, %principal, mechanism, "SASL re-authenticated (KIP-368)");
                } else {
                    tracing::debug!(peer = %self.peer, %principal, mechanism, "SASL login");
                }
                self.principal = principal;
                self.authenticated = true;
                self.mechanism = Some(exchange.mechanism);
                self.expires_at = security.max_reauth.map(|d| now + d);
                let lifetime = security
                    .max_reauth
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                Authenticated {
                    response: SaslAuthenticateResponse::default()
                        .with_auth_bytes(Bytes::from(reply))
                        .with_session_lifetime_ms(lifetime),
                    delay: None,
                    close: false,
                }
            }
            Step::Failed => {
                let claimed = exchange.claimed_user().map(str::to_owned);
                let message = match exchange.mechanism {
                    SaslMechanism::Plain => {
                        "Authentication failed: Invalid username or password".to_owned()
                    }
                    scram => format!(
                        "Authentication failed during authentication due to invalid credentials \
                         with SASL mechanism {}",
                        scram.as_str()
                    ),
                };
                self.failed(security, claimed.as_deref(), &message, now)
            }
        }
    }

    fn failed(
        &mut self,
        security: &Security,
        claimed_user: Option<&str>,
        message: &str,
        now: Instant,
    ) -> Authenticated {
        let delay =
            security
                .failed_logins
                .failed(self.peer.ip(), security.failure_delay, now.into_std());
        tracing::warn!(
            peer = %self.peer,
            user = claimed_user.unwrap_or("?"),
            listener = %self.listener.name,
            delay_ms = delay.as_millis() as u64,
            "SASL authentication failed"
        );
        Authenticated {
            response: SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_string(message.to_owned()))),
            delay: Some(delay),
            close: true,
        }
    }
}

/// A SaslAuthenticate answer.
pub struct Authenticated {
    pub response: SaslAuthenticateResponse,
    /// Wait this long before answering (a failed login).
    pub delay: Option<Duration>,
    /// Close the connection after the answer.
    pub close: bool,
}
