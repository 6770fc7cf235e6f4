//! `maos completions <shell>` and `maos man`: generated from the argument definitions, so
//! they never disagree with the real CLI.

use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs};
use crate::error::{CliError, Exit};
use crate::output;

pub fn completions(args: CompletionsArgs) -> Result<(), CliError> {
    // Generated into memory first: writing straight to stdout panics on a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "maos", &mut script);
    output::line(String::from_utf8_lossy(&script).trim_end())
}

pub fn man() -> Result<(), CliError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| {
            CliError::new(
                Exit::Error,
                anyhow::anyhow!("cannot render the manual page: {e}"),
            )
        })?;
    output::line(String::from_utf8_lossy(&page).trim_end())
}
