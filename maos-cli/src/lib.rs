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
mod ui;

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
    trace_if_asked();
    // Event hooks are run by `maos hooks run`: this very program.
    if let Ok(me) = std::env::current_exe() {
        maos_coordination::journal::hooks::set_runner(me);
    }
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

/// With `MAOS_LOG` set (`debug`, `maos_coordination=debug`, any `tracing` filter), what the
/// library does is traced to stderr: locks taken and released, messages sent, tasks claimed
/// and moved, index repairs, prunes, votes decided.
fn trace_if_asked() {
    let Ok(filter) = std::env::var("MAOS_LOG") else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("warning: MAOS_LOG={filter:?} is not a filter ({e}); tracing at debug");
        tracing_subscriber::EnvFilter::new("debug")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
