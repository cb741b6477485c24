//! `sluice-client`: the Rust client library (producer, consumer, admin) and the `sluice`
//! CLI. Not built yet: see the client issue. Only the crate exists so the workspace has
//! its final shape.
