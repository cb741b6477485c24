//! Lists the modules of the broker and the workspace crates it runs (their `tracing`
//! targets), so that the broker-loggers config resource describes every logger that can
//! exist, as Kafka lists every log4j logger (see `src/loggers.rs`).

use std::path::Path;

/// The crates whose modules are loggers: directory, crate name.
const CRATES: &[(&str, &str)] = &[
    ("broker", "sluice_broker"),
    ("storage", "sluice_storage"),
    ("metadata", "sluice_metadata"),
    ("quorum", "sluice_quorum"),
    ("controller", "sluice_controller"),
];

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the broker is a workspace member");
    let mut modules = Vec::new();
    for (dir, crate_name) in CRATES {
        let src = workspace.join(dir).join("src");
        println!("cargo:rerun-if-changed={}", src.display());
        modules.push(crate_name.to_string());
        collect(&src, crate_name, &mut modules);
    }
    modules.sort();
    modules.dedup();
    let body: String = modules.iter().map(|m| format!("    {m:?},\n")).collect();
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("modules.rs");
    std::fs::write(out, format!("&[\n{body}]\n")).expect("write the module list");
}

/// Adds the module path of every `.rs` file under `dir` (`a/mod.rs` and `a.rs` are
/// `a`; `lib.rs`, `main.rs` and `bin/` are the crate itself or binaries; `tests`
/// modules are left out).
fn collect(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let is_ident = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !is_ident || name == "bin" || name == "tests" || name.ends_with("_tests") {
            continue;
        }
        if path.is_dir() {
            let module = format!("{prefix}::{name}");
            out.push(module.clone());
            collect(&path, &module, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && !matches!(name, "lib" | "main" | "mod" | "tests")
        {
            out.push(format!("{prefix}::{name}"));
        }
    }
}
