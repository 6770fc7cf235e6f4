//! The `maos` command line: parses arguments, runs one command, maps errors to exit codes.
//!
//! All coordination logic lives in `maos-coordination`; this crate owns presentation,
//! environment variables and exit codes.

mod args;
mod commands;
mod context;
mod error;
mod mcp;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// Runs `maos` with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    // Past a file size limit (`ulimit -f`) the kernel would kill us with SIGXFSZ in the
    // middle of a write; with a handler the write fails with EFBIG instead, and we report it
    // with the file's name, the previous state intact.
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        // clap prints help, version and usage errors itself, exiting 0 or 2.
        Err(e) => e.exit(),
    };
    // A hook that fails must let the editor go on (exit 2 would block its tool call).
    let is_hook = matches!(cli.command, args::Command::Hook(_));
    match context::Context::new(&cli).and_then(|ctx| commands::run(&ctx, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(mut e) => {
            if is_hook {
                e.exit = error::Exit::Error;
            }
            e.report()
        }
    }
}
