//! DescribeUserScramCredentials and AlterUserScramCredentials: the SCRAM users of
//! `security::credentials`, managed with Kafka's APIs (so `kafka-configs --entity-type
//! users --alter --add-config 'SCRAM-SHA-512=[password=...]'` works), with Kafka's
//! checks and error messages.
//!
//! The client salts and hashes the password (AlterUserScramCredentials carries the salt
//! and Hi(password, salt, i), never the password); the broker derives and stores the
//! SCRAM keys from them. A user with any refused change keeps its credentials as they
//! were; the other users' changes stand alone.
//!
//! Who may is decided before (`server::authorize::manage_users`); others get
//! CLUSTER_AUTHORIZATION_FAILED.

use std::collections::{BTreeMap, HashMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::config::SaslMechanism;
use crate::security::credentials::{
    ChangeRefused, CredentialChange, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS,
};
use crate::security::Principal;
use crate::state::BrokerState;

const NOT_ALLOWED: &str = "Cluster authorization failed.";

/// Kafka's ScramMechanism type ids.
fn mechanism_of(id: i8) -> Option<SaslMechanism> {
    match id {
        1 => Some(SaslMechanism::ScramSha256),
        2 => Some(SaslMechanism::ScramSha512),
        _ => None,
    }
}

fn id_of(mechanism: SaslMechanism) -> i8 {
    match mechanism {
        SaslMechanism::ScramSha512 => 2,
        _ => 1,
    }
}

fn text(s: &str) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.to_owned()))
}

/// DescribeUserScramCredentials: every user (`users` null or empty), or the ones named.
pub fn describe(
    state: &BrokerState,
    allowed: bool,
    request: &DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !allowed {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(text(NOT_ALLOWED));
    }
    let known = state.security.credentials.describe();
    let infos = |creds: &[(SaslMechanism, u32)]| -> Vec<CredentialInfo> {
        creds
            .iter()
            .map(|(m, i)| {
                CredentialInfo::default()
                    .with_mechanism(id_of(*m))
                    .with_iterations(i32::try_from(*i).unwrap_or(i32::MAX))
            })
            .collect()
    };
    let asked: Vec<String> = request
        .users
        .iter()
        .flatten()
        .map(|u| u.name.to_string())
        .collect();
    let results = if asked.is_empty() {
        known
            .iter()
            .map(|(user, creds)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()))
                    .with_credential_infos(infos(creds))
            })
            .collect()
    } else {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for user in &asked {
            *counts.entry(user.as_str()).or_default() += 1;
        }
        let mut seen = HashSet::new();
        asked
            .iter()
            .filter(|user| seen.insert(user.as_str()))
            .map(|user| {
                let result = DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()));
                if counts[user.as_str()] > 1 {
                    return result
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(text(
                            "Cannot describe SCRAM credentials for the same user twice in a single request",
                        ));
                }
                match known.get(user) {
                    Some(creds) => result.with_credential_infos(infos(creds)),
                    None => result
                        .with_error_code(ResponseError::ResourceNotFound.code())
                        .with_error_message(text(
                            "Attempt to describe a user credential that does not exist",
                        )),
                }
            })
            .collect()
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// AlterUserScramCredentials; writes the credentials file (call it on a blocking thread).
pub fn alter(
    state: &BrokerState,
    principal: &Principal,
    allowed: bool,
    request: &AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !allowed {
        tracing::warn!(%principal, "AlterUserScramCredentials refused: not allowed to manage users");
        let mut seen = HashSet::new();
        let results = request
            .deletions
            .iter()
            .map(|d| &d.name)
            .chain(request.upsertions.iter().map(|u| &u.name))
            .filter(|name| seen.insert(name.to_string()))
            .map(|name| {
                AlterUserScramCredentialsResult::default()
                    .with_user(name.clone())
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                    .with_error_message(text(NOT_ALLOWED))
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    // Per user: its first error, if any (a user's changes all fail together).
    let mut errors: BTreeMap<String, (ResponseError, String)> = BTreeMap::new();
    fn refuse(
        errors: &mut BTreeMap<String, (ResponseError, String)>,
        user: &str,
        code: ResponseError,
        message: &str,
    ) {
        errors
            .entry(user.to_owned())
            .or_insert((code, message.to_owned()));
    }
    // Kafka refuses a (user, mechanism) pair named twice; a user's two mechanisms may be
    // set together (kafka-configs sends both in one request).
    let mut times: HashMap<(String, i8), usize> = HashMap::new();
    for pair in request
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism))
        .chain(
            request
                .upsertions
                .iter()
                .map(|u| (u.name.to_string(), u.mechanism)),
        )
    {
        *times.entry(pair).or_default() += 1;
    }
    let mut order: Vec<String> = Vec::new();
    let mut ordered: HashSet<String> = HashSet::new();
    let mut changes: Vec<(String, CredentialChange)> = Vec::new();
    for deletion in &request.deletions {
        let user = deletion.name.to_string();
        if ordered.insert(user.clone()) {
            order.push(user.clone());
        }
        match check(&user, deletion.mechanism, &times) {
            Err((code, message)) => refuse(&mut errors, &user, code, message),
            Ok(mechanism) => {
                changes.push((user.clone(), CredentialChange::Delete { user, mechanism }))
            }
        }
    }
    for upsertion in &request.upsertions {
        let user = upsertion.name.to_string();
        if ordered.insert(user.clone()) {
            order.push(user.clone());
        }
        let mechanism = match check(&user, upsertion.mechanism, &times) {
            Err((code, message)) => {
                refuse(&mut errors, &user, code, message);
                continue;
            }
            Ok(mechanism) => mechanism,
        };
        let iterations = upsertion.iterations;
        if iterations < MIN_ITERATIONS as i32 {
            refuse(
                &mut errors,
                &user,
                ResponseError::UnacceptableCredential,
                "Too few iterations",
            );
            continue;
        }
        if iterations > MAX_ITERATIONS as i32 {
            refuse(
                &mut errors,
                &user,
                ResponseError::UnacceptableCredential,
                "Too many iterations",
            );
            continue;
        }
        if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() {
            refuse(
                &mut errors,
                &user,
                ResponseError::UnacceptableCredential,
                "The salt and the salted password must not be empty",
            );
            continue;
        }
        let credential = ScramCredential::from_salted(
            mechanism,
            &upsertion.salt,
            &upsertion.salted_password,
            iterations as u32,
        );
        changes.push((
            user.clone(),
            CredentialChange::Upsert {
                user,
                mechanism,
                credential,
            },
        ));
    }
    // A user with any refused change keeps all its credentials as they were.
    changes.retain(|(user, _)| !errors.contains_key(user));
    let plain: Vec<CredentialChange> = changes.iter().map(|(_, c)| c.clone()).collect();
    match state.security.credentials.apply(&plain) {
        Ok(outcomes) => {
            for ((user, _), outcome) in changes.iter().zip(outcomes) {
                if outcome == Err(ChangeRefused::NotFound) {
                    refuse(
                        &mut errors,
                        user,
                        ResponseError::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist",
                    );
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "SCRAM credentials not changed");
            for (user, _) in &changes {
                refuse(
                    &mut errors,
                    user,
                    ResponseError::UnknownServerError,
                    "the credentials could not be written",
                );
            }
        }
    }
    let results = order
        .into_iter()
        .map(|user| {
            let result = AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user.clone()));
            match errors.get(&user) {
                Some((code, message)) => result
                    .with_error_code(code.code())
                    .with_error_message(text(message)),
                None => {
                    tracing::info!(%user, "SCRAM credentials altered");
                    result
                }
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn check(
    user: &str,
    mechanism: i8,
    times: &HashMap<(String, i8), usize>,
) -> Result<SaslMechanism, (ResponseError, &'static str)> {
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty",
        ));
    }
    if times
        .get(&(user.to_owned(), mechanism))
        .copied()
        .unwrap_or(0)
        > 1
    {
        return Err((
            ResponseError::DuplicateResource,
            "A user credential cannot be altered twice in the same request",
        ));
    }
    mechanism_of(mechanism).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        "Unknown SCRAM mechanism",
    ))
}
