//! The follower's side of replication: fetchers (see the module docs of `replication`).
