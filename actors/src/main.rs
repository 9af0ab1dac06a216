//! `tessera`: inspect the machine, run the tiled Cholesky, benchmark the
//! runtime. Run `tessera --help` for the commands.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("tessera: error: {e}");
        let mut source = std::error::Error::source(&*e);
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
        std::process::exit(1);
    }
}
