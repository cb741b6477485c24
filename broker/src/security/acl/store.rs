//! The ACLs of a broker, kept in the data directory.
//!
//! The file is `security/acls.json` under the data directory, rewritten whole and
//! atomically (temporary file, fsync, rename) on every change, and a change is answered
//! only once it is on disk. Decisions read an immutable snapshot ([`AclSet`]) swapped in
//! after each write, so a change never makes a request wait and a request never sees
//! half of a change.
//!
//! Limits: the file belongs to one node; in a cluster each broker keeps its own until
//! ACLs move into the replicated metadata.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::model::{
    AclBinding, AclFilter, Operation, PatternType, Permission, RawBinding, ResourceType,
};
use crate::security::SecurityError;

#[derive(Serialize, Deserialize)]
struct File {
    acls: Vec<AclBinding>,
}

/// One binding prepared for decisions.
#[derive(Debug)]
pub struct Entry {
    pub principal: String,
    /// `None`: any host.
    pub host: Option<IpAddr>,
    pub operation: Operation,
    pub permission: Permission,
}

/// The bindings of one resource type, indexed for lookups by resource name.
#[derive(Debug, Default)]
struct TypeIndex {
    /// Literal bindings by name (the wildcard under `*`).
    literal: HashMap<String, Vec<Entry>>,
    /// Prefixed bindings: (prefix, entry).
    prefixed: Vec<(String, Entry)>,
}

/// An immutable set of bindings with an index for decisions.
#[derive(Debug, Default)]
pub struct AclSet {
    bindings: BTreeSet<AclBinding>,
    by_type: HashMap<ResourceType, TypeIndex>,
}

impl AclSet {
    fn new(bindings: BTreeSet<AclBinding>) -> AclSet {
        let mut by_type: HashMap<ResourceType, TypeIndex> = HashMap::new();
        for b in &bindings {
            let entry = Entry {
                principal: b.principal.clone(),
                // `AclBinding::new` only lets `*` and IP addresses in.
                host: b.host.parse().ok().map(|ip: IpAddr| ip.to_canonical()),
                operation: b.operation,
                permission: b.permission,
            };
            let index = by_type.entry(b.resource_type).or_default();
            match b.pattern_type {
                PatternType::Prefixed => index.prefixed.push((b.resource_name.clone(), entry)),
                _ => index
                    .literal
                    .entry(b.resource_name.clone())
                    .or_default()
                    .push(entry),
            }
        }
        AclSet { bindings, by_type }
    }

    /// Every binding whose pattern covers the resource `name` of type `resource`: its
    /// literal bindings, the literal wildcard's, and those of every prefix of `name`.
    pub fn covering<'a>(
        &'a self,
        resource: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        let index = self.by_type.get(&resource);
        let literal = index
            .and_then(|i| i.literal.get(name))
            .into_iter()
            .flatten();
        let wildcard = index
            .filter(|_| name != super::model::WILDCARD)
            .and_then(|i| i.literal.get(super::model::WILDCARD))
            .into_iter()
            .flatten();
        let prefixed = index
            .into_iter()
            .flat_map(|i| i.prefixed.iter())
            .filter(move |(prefix, _)| name.starts_with(prefix.as_str()))
            .map(|(_, entry)| entry);
        literal.chain(wildcard).chain(prefixed)
    }

    /// The bindings `filter` selects, in a stable order.
    pub fn select<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = &'a AclBinding> {
        self.bindings.iter().filter(move |b| filter.matches(b))
    }

    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }
}

/// See the module docs.
pub struct AclStore {
    path: PathBuf,
    current: RwLock<Arc<AclSet>>,
    /// Held by a change from reading the set to swapping in the new one, so changes do
    /// not overwrite each other.
    writer: Mutex<()>,
}

impl AclStore {
    /// Opens (or starts) the ACLs of `data_dir`. A damaged file is an error: starting
    /// with no ACLs would open (or close) everything.
    pub fn open(data_dir: &Path) -> Result<AclStore, SecurityError> {
        let path = data_dir.join("security").join("acls.json");
        let found = sluice_storage::fsutil::read_optional(&path)
            .map_err(|e| SecurityError::Acls(format!("read {}: {e}", path.display())))?;
        let bindings = match found {
            None => BTreeSet::new(),
            Some(bytes) => {
                let file = serde_json::from_slice::<File>(&bytes).map_err(|e| {
                    SecurityError::Acls(format!("{} is damaged: {e}", path.display()))
                })?;
                // Checked as CreateAcls checks them: a binding edited by hand (a CIDR
                // host, a filter-only pattern type) must stop the start, not match more
                // than it says.
                for (n, b) in file.acls.iter().enumerate() {
                    AclBinding::new(&RawBinding {
                        resource_type: b.resource_type.code(),
                        resource_name: &b.resource_name,
                        pattern_type: b.pattern_type.code(),
                        principal: &b.principal,
                        host: &b.host,
                        operation: b.operation.code(),
                        permission: b.permission.code(),
                    })
                    .map_err(|e| {
                        SecurityError::Acls(format!(
                            "{}: ACL number {} is invalid: {e}",
                            path.display(),
                            n + 1
                        ))
                    })?;
                }
                file.acls.into_iter().collect()
            }
        };
        Ok(AclStore {
            path,
            current: RwLock::new(Arc::new(AclSet::new(bindings))),
            writer: Mutex::new(()),
        })
    }

    /// The current bindings.
    pub fn snapshot(&self) -> Arc<AclSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds `bindings` (those present already are kept as they are) and writes the file
    /// once. Either every binding is stored, or (the file could not be written) none.
    pub fn create(&self, bindings: &[AclBinding]) -> Result<(), SecurityError> {
        self.change(|set| {
            set.extend(bindings.iter().cloned());
            bindings.len()
        })
        .map(|_| ())
    }

    /// Removes the bindings each filter selects and writes the file once; per filter, the
    /// bindings it removed (a binding selected by two filters is reported by both, as
    /// Kafka does).
    pub fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, SecurityError> {
        let mut removed = Vec::new();
        self.change(|set| {
            removed = filters
                .iter()
                .map(|f| set.iter().filter(|b| f.matches(b)).cloned().collect())
                .collect::<Vec<Vec<AclBinding>>>();
            set.retain(|b| !filters.iter().any(|f| f.matches(b)));
            removed.iter().map(Vec::len).sum()
        })?;
        Ok(removed)
    }

    /// Runs `edit` on a copy of the bindings; when it changed them, writes the file and
    /// swaps the new set in.
    fn change(
        &self,
        edit: impl FnOnce(&mut BTreeSet<AclBinding>) -> usize,
    ) -> Result<bool, SecurityError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.snapshot();
        let mut next = current.bindings.clone();
        edit(&mut next);
        if next == current.bindings {
            return Ok(false);
        }
        let bytes = serde_json::to_vec_pretty(&File {
            acls: next.iter().cloned().collect(),
        })
        .map_err(|e| SecurityError::Acls(format!("encode: {e}")))?;
        crate::security::write_private_file(&self.path, &bytes)
            .map_err(|e| SecurityError::Acls(format!("write {}: {e}", self.path.display())))?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(AclSet::new(next));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, pattern: PatternType, principal: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.to_owned(),
            pattern_type: pattern,
            principal: principal.to_owned(),
            host: "*".to_owned(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn acls_survive_reopen_and_deletes_report_what_they_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = AclStore::open(dir.path()).unwrap();
        let a = binding("orders", PatternType::Literal, "User:alice");
        let b = binding("ord", PatternType::Prefixed, "User:bob");
        store.create(&[a.clone(), b.clone(), a.clone()]).unwrap();
        assert_eq!(store.snapshot().len(), 2);

        let reopened = AclStore::open(dir.path()).unwrap();
        assert_eq!(reopened.snapshot().len(), 2);
        let covering: Vec<_> = reopened
            .snapshot()
            .covering(ResourceType::Topic, "orders")
            .map(|e| e.principal.clone())
            .collect();
        assert_eq!(covering.len(), 2, "literal and prefix both cover orders");

        let by_bob = AclFilter {
            principal: Some("User:bob".to_owned()),
            ..AclFilter::any()
        };
        let removed = reopened.delete(&[by_bob.clone(), by_bob]).unwrap();
        assert_eq!(removed, vec![vec![b.clone()], vec![b]]);
        assert_eq!(AclStore::open(dir.path()).unwrap().snapshot().len(), 1);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("security")).unwrap();
        let file = dir.path().join("security/acls.json");
        std::fs::write(&file, b"{\"acls\": [").unwrap();
        assert!(AclStore::open(dir.path()).is_err());
        // Well-formed JSON with a binding CreateAcls would refuse: a CIDR host would
        // otherwise have matched every address.
        let mut cidr = binding("orders", PatternType::Literal, "User:alice");
        cidr.host = "10.0.0.0/8".to_owned();
        let text = serde_json::to_vec(&File { acls: vec![cidr] }).unwrap();
        std::fs::write(&file, text).unwrap();
        let error = AclStore::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("ACL number 1"), "{error}");
    }

    #[test]
    fn the_wildcard_and_prefixes_cover_names() {
        let set = AclSet::new(
            [
                binding("*", PatternType::Literal, "User:any"),
                binding("ord", PatternType::Prefixed, "User:pre"),
                binding("orders", PatternType::Literal, "User:lit"),
                binding("orders-eu", PatternType::Prefixed, "User:longer"),
            ]
            .into_iter()
            .collect(),
        );
        let who = |name: &str| {
            let mut v: Vec<_> = set
                .covering(ResourceType::Topic, name)
                .map(|e| e.principal.clone())
                .collect();
            v.sort();
            v
        };
        assert_eq!(who("orders"), ["User:any", "User:lit", "User:pre"]);
        assert_eq!(who("payments"), ["User:any"]);
        assert_eq!(who("orders-eu-1"), ["User:any", "User:longer", "User:pre"]);
        assert!(set.covering(ResourceType::Group, "orders").next().is_none());
    }
}
