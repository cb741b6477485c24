//! `sluice-broker` binary entry point.

fn main() {
    eprintln!("sluice-broker: not yet serving");
    std::process::exit(1);
}
