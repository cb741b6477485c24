//! `sluice man`: the manual pages, generated from the same definitions as `--help`
//! (clap_mangen), so they never disagree with the binary.

use std::path::Path;
use std::process::ExitCode;

/// Writes the page of `command` to stdout, or, with `dir`, one page per command and
/// subcommand (`sluice.1`, `sluice-topic.1`, `sluice-topic-create.1`...) into `dir`.
pub fn write(mut command: clap::Command, dir: Option<&Path>) -> ExitCode {
    // Built, so that global flags (-b, -X, -F) appear on every command's page.
    command.build();
    let result = match dir {
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout()),
        Some(dir) => {
            std::fs::create_dir_all(dir).and_then(|()| write_tree(command, "sluice", "sluice", dir))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let place = dir.map_or("stdout".to_owned(), |d| d.display().to_string());
            eprintln!("error: cannot write the manual to {place}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `NAME.1` for `command` (run as `invocation`, e.g. `sluice group
/// reset-offsets`), then the pages of its subcommands, named `NAME-SUB.1`.
fn write_tree(
    command: clap::Command,
    name: &str,
    invocation: &str,
    dir: &Path,
) -> std::io::Result<()> {
    let command = command
        .name(name.to_owned())
        .bin_name(invocation.to_owned());
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .title(name.to_uppercase())
        .render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_tree(
            sub.clone(),
            &format!("{name}-{}", sub.get_name()),
            &format!("{invocation} {}", sub.get_name()),
            dir,
        )?;
    }
    Ok(())
}
