//! The partition leader's side of replication (see the module docs of `replication`).
