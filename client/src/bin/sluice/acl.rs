//! `sluice acl add | list | remove`: the broker's ACLs (Kafka's CreateAcls, DescribeAcls,
//! DeleteAcls), as `kafka-acls` manages them.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use sluice_client::Admin;
use sluice_metadata::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME,
};

use crate::settings::Settings;
use crate::util::print_table;

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Allow (or with --deny, deny) a principal operations on a resource.
    ///
    /// Examples:
    ///   sluice acl add --principal User:alice --operation read --operation write --topic orders
    ///   sluice acl add --principal User:alice --operation read --group orders- --prefixed
    ///   sluice acl add --principal User:* --operation all --topic secret --deny
    ///   sluice acl add --principal User:ops --operation describe --cluster
    #[command(verbatim_doc_comment)]
    Add(BindingArgs),
    /// List ACLs: all of them, or those of a principal and/or a resource.
    ///
    /// Examples:
    ///   sluice acl list
    ///   sluice acl list --principal User:alice
    ///   sluice acl list --topic orders --pattern match   # every ACL that applies to orders
    #[command(verbatim_doc_comment)]
    List(ListArgs),
    /// Remove ACLs: exactly those `add` with the same flags would create.
    ///
    /// Example: sluice acl remove --principal User:alice --operation write --topic orders
    #[command(verbatim_doc_comment)]
    Remove(BindingArgs),
}

/// The resource an ACL is about: one of --topic, --group, --transactional-id, --cluster.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("resource").args(["topic", "group", "transactional_id", "cluster"])))]
pub struct ResourceArgs {
    /// A topic name (or prefix, with --prefixed; `*` for every topic).
    #[arg(long, short = 't')]
    topic: Option<String>,
    /// A consumer group id (or prefix; `*` for every group).
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// A transactional id (or prefix; `*` for every one).
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster (for creating topics, describing or changing the cluster, ACLs and users).
    #[arg(long)]
    cluster: bool,
}

impl ResourceArgs {
    fn resource(&self) -> Option<(ResourceType, String)> {
        if let Some(t) = &self.topic {
            Some((ResourceType::Topic, t.clone()))
        } else if let Some(g) = &self.group {
            Some((ResourceType::Group, g.clone()))
        } else if let Some(t) = &self.transactional_id {
            Some((ResourceType::TransactionalId, t.clone()))
        } else if self.cluster {
            Some((ResourceType::Cluster, CLUSTER_NAME.to_owned()))
        } else {
            None
        }
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("resource_required").required(true).multiple(false).args(["topic", "group", "transactional_id", "cluster"])))]
pub struct BindingArgs {
    /// Whose ACL: User:NAME, or User:* for everyone.
    #[arg(long, value_name = "PRINCIPAL")]
    principal: String,
    /// Operation (repeat for several): read, write, create, delete, alter, describe,
    /// cluster-action, describe-configs, alter-configs, idempotent-write, all.
    #[arg(long = "operation", required = true, value_enum)]
    operations: Vec<OperationArg>,
    #[command(flatten)]
    resource: ResourceArgs,
    /// The name is a prefix: the ACL covers every resource whose name starts with it.
    #[arg(long)]
    prefixed: bool,
    /// Deny instead of allow (a DENY wins over any ALLOW).
    #[arg(long)]
    deny: bool,
    /// Only from this client address (default: any).
    #[arg(long, default_value = "*")]
    host: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this principal's ACLs.
    #[arg(long, value_name = "PRINCIPAL")]
    principal: Option<String>,
    #[command(flatten)]
    resource: ResourceArgs,
    /// How the resource name selects ACLs: any (ACLs with exactly this name), literal,
    /// prefixed, or match (every ACL that applies to a resource of that name, wildcard
    /// and prefixes included).
    #[arg(long, value_enum, default_value = "any")]
    pattern: PatternArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OperationArg {
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    All,
}

impl OperationArg {
    fn operation(self) -> Operation {
        match self {
            OperationArg::Read => Operation::Read,
            OperationArg::Write => Operation::Write,
            OperationArg::Create => Operation::Create,
            OperationArg::Delete => Operation::Delete,
            OperationArg::Alter => Operation::Alter,
            OperationArg::Describe => Operation::Describe,
            OperationArg::ClusterAction => Operation::ClusterAction,
            OperationArg::DescribeConfigs => Operation::DescribeConfigs,
            OperationArg::AlterConfigs => Operation::AlterConfigs,
            OperationArg::IdempotentWrite => Operation::IdempotentWrite,
            OperationArg::All => Operation::All,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PatternArg {
    Any,
    Literal,
    Prefixed,
    Match,
}

impl BindingArgs {
    fn bindings(&self) -> Result<Vec<AclBinding>> {
        let Some((resource_type, name)) = self.resource.resource() else {
            bail!("name the resource: --topic, --group, --transactional-id or --cluster");
        };
        if !self.principal.contains(':') {
            bail!("a principal is TYPE:NAME, e.g. User:{}", self.principal);
        }
        Ok(self
            .operations
            .iter()
            .map(|op| AclBinding {
                resource_type,
                resource_name: name.clone(),
                pattern_type: if self.prefixed {
                    PatternType::Prefixed
                } else {
                    PatternType::Literal
                },
                principal: self.principal.clone(),
                host: self.host.clone(),
                operation: op.operation(),
                permission: if self.deny {
                    Permission::Deny
                } else {
                    Permission::Allow
                },
            })
            .collect())
    }
}

/// The filter that selects exactly `binding`.
fn exact(binding: &AclBinding) -> AclFilter {
    AclFilter {
        resource_type: binding.resource_type,
        resource_name: Some(binding.resource_name.clone()),
        pattern_type: binding.pattern_type,
        principal: Some(binding.principal.clone()),
        host: Some(binding.host.clone()),
        operation: binding.operation,
        permission: binding.permission,
    }
}

fn print(bindings: &[AclBinding]) {
    let rows: Vec<Vec<String>> = bindings
        .iter()
        .map(|b| {
            vec![
                b.principal.clone(),
                b.permission.to_string(),
                b.operation.to_string(),
                b.host.clone(),
                b.resource_type.to_string(),
                b.pattern_type.to_string(),
                b.resource_name.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "PRINCIPAL",
            "PERMISSION",
            "OPERATION",
            "HOST",
            "RESOURCE",
            "PATTERN",
            "NAME",
        ],
        &rows,
    );
}

pub async fn run(settings: &Settings, command: AclCommand) -> Result<ExitCode> {
    let admin = Admin::new(settings.connect().await?);
    match command {
        AclCommand::Add(args) => {
            let bindings = args.bindings()?;
            admin.create_acls(&bindings).await?;
            eprintln!("{} ACL(s) added", bindings.len());
        }
        AclCommand::List(args) => {
            if args.resource.resource().is_none() && !matches!(args.pattern, PatternArg::Any) {
                bail!("--pattern selects by a resource's name: give --topic, --group, --transactional-id or --cluster");
            }
            let mut filter = AclFilter::any();
            filter.principal = args.principal.clone();
            if let Some((resource_type, name)) = args.resource.resource() {
                filter.resource_type = resource_type;
                filter.resource_name = Some(name);
                filter.pattern_type = match args.pattern {
                    PatternArg::Any => PatternType::Any,
                    PatternArg::Literal => PatternType::Literal,
                    PatternArg::Prefixed => PatternType::Prefixed,
                    PatternArg::Match => PatternType::Match,
                };
            }
            let mut bindings = admin.describe_acls(&filter).await?;
            bindings.sort();
            print(&bindings);
        }
        AclCommand::Remove(args) => {
            let bindings = args.bindings()?;
            let mut missing = Vec::new();
            for binding in &bindings {
                if admin.delete_acls(&exact(binding)).await?.is_empty() {
                    missing.push(binding);
                }
            }
            let removed = bindings.len() - missing.len();
            eprintln!("{removed} ACL(s) removed");
            if !missing.is_empty() {
                for binding in missing {
                    eprintln!("no such ACL: {binding}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
