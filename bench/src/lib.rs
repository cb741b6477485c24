//! `sluice-bench`: load generator for any Kafka-API broker. Not built yet: see the
//! benchmark issue. Only the crate exists so the workspace has its final shape.
