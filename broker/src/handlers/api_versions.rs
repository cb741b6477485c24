//! ApiVersions: the APIs this broker serves and their exact version ranges.
//!
//! [`all`] ([`SUPPORTED`] plus the coordinator's group APIs) is the single list the
//! dispatcher and the ApiVersions answer both use, so an API is advertised exactly when
//! it is handled. A request at a version this
//! broker does not know still gets an answer (KIP-511): a v0-format response with
//! UNSUPPORTED_VERSION and the list, so the client can pick a version and retry.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

/// Every API served, with (min, max) version. Minimums are the oldest versions Kafka 4.x
/// still accepts (and the codec crate decodes); maximums the newest the crate knows.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    // v0-1 were removed in Kafka 4.0.
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    // The older full-replace call, served as the incremental one (see `admin::configs`).
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    // v6 (KIP-939 two-phase commit) is listed by the codec crate for responses only; its
    // request decoder stops at v5.
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    // v0 (raw SASL tokens after the handshake) is not served: clients since Kafka 1.0
    // use v1 with SaslAuthenticate.
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // v0 was removed in Kafka 4.0 (KIP-896); Kafka 4.4 serves 1-3.
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// Every API served: [`SUPPORTED`] and the group APIs the coordinator handles
/// (`coordinator::handlers::SUPPORTED`, kept beside their handlers).
pub fn all() -> impl Iterator<Item = &'static (ApiKey, i16, i16)> {
    SUPPORTED
        .iter()
        .chain(crate::coordinator::handlers::SUPPORTED)
}

/// APIs only a broker of a multi-node cluster serves: a single node runs no metadata quorum
/// to describe, so it neither lists nor serves DescribeQuorum (a tool then says the broker
/// does not support it).
pub const CLUSTER_ONLY: &[ApiKey] = &[ApiKey::DescribeQuorum];

/// The version range this broker serves for `key`, if it serves it (`cluster`: whether it
/// runs in a multi-node cluster).
pub fn supported_range_on(key: ApiKey, cluster: bool) -> Option<(i16, i16)> {
    if !cluster && CLUSTER_ONLY.contains(&key) {
        return None;
    }
    supported_range(key)
}

/// The version range served for `key`, if it is served at all.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    all()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

/// Whether `version` of `key` is served.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    supported_range(key).is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// The minimum version advertised for `key`. Produce is advertised from v0 although
/// only v3+ is served, as Kafka 4.x does (KAFKA-18659): librdkafka before 2.10 enables
/// gzip, snappy and lz4 only when the broker lists Produce v0, and would otherwise send
/// every batch uncompressed. A v0-2 request is still refused (the connection closes).
/// SaslHandshake is advertised from v0 too: librdkafka detects SASL support by v0 and
/// then uses v1; a v0 handshake (raw tokens after it) closes the connection.
fn advertised_min(key: ApiKey, min: i16) -> i16 {
    if matches!(key, ApiKey::Produce | ApiKey::SaslHandshake) {
        0
    } else {
        min
    }
}

fn api_keys(cluster: bool) -> Vec<ApiVersion> {
    all()
        .filter(|(key, _, _)| cluster || !CLUSTER_ONLY.contains(key))
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(advertised_min(key, min))
                .with_max_version(max)
        })
        .collect()
}

/// Kafka's rule for `client_software_name` / `_version` (v3+).
fn valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    let ok_char = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.';
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes.iter().all(ok_char)
        }
        _ => false,
    }
}

/// Answers an ApiVersions request at a supported version.
pub fn handle(request: &ApiVersionsRequest, version: i16, cluster: bool) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default()
        .with_api_keys(api_keys(cluster))
        .with_finalized_features_epoch(-1);
    if version >= 3
        && !(valid_software_field(&request.client_software_name)
            && valid_software_field(&request.client_software_version))
    {
        response.error_code = ResponseError::InvalidRequest.code();
    }
    response
}

/// The answer to an ApiVersions request at a version this broker does not know: to be
/// encoded as version 0.
pub fn unsupported_version(cluster: bool) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys(cluster))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn advertised_ranges_are_within_the_codecs() {
        for &(key, min, max) in all() {
            let codec = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(codec.min <= min && max <= codec.max, "{key:?} {codec}");
        }
    }

    #[test]
    fn lists_every_api_and_checks_software_name() {
        let mut request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kcat"))
            .with_client_software_version(StrBytes::from_static_str("1.7.1"));
        let response = handle(&request, 3, true);
        assert_eq!(response.error_code, 0);
        assert_eq!(response.api_keys.len(), all().count());
        assert_eq!(
            handle(&request, 3, false).api_keys.len(),
            all().count() - CLUSTER_ONLY.len()
        );
        request.client_software_name = StrBytes::from_static_str("bad name!");
        assert_eq!(
            handle(&request, 3, true).error_code,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            handle(&request, 2, true).error_code,
            0,
            "not checked before v3"
        );
        assert!(is_supported(ApiKey::Fetch, 4));
        assert!(!is_supported(ApiKey::Fetch, 3));
        assert!(is_supported(ApiKey::JoinGroup, 0));
        assert!(!is_supported(ApiKey::OffsetCommit, 1));
    }
}
