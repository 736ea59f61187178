//! `starina`: see `starina --help` and README.md.
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = starina_host::app::main(&args);
    std::process::exit(status.code());
}
