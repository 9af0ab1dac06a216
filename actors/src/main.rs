//! `tessera`: inspect the machine, run the tiled Cholesky, benchmark the
//! runtime. Run `tessera --help` for the commands.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if args.prints_only() {
        // Rust ignores SIGPIPE, so printing into a closed pipe panics.
        // Commands that only print take the default action instead and
        // end quietly; the others keep it ignored, so a closed socket is
        // an error they handle, not the end of the process.
        // SAFETY: no other thread exists yet; SIG_DFL is a valid action.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
