//! `maos doctor [--fix]`

use maos_coordination::doctor;
use serde_json::json;

use crate::args::DoctorArgs;
use crate::context::Context;
use crate::error::{CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, args: DoctorArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let problems = doctor::check(&ws)?;
    let repairs = if args.fix {
        doctor::fix(&ws, &problems)?
    } else {
        Vec::new()
    };
    if ctx.json {
        output::json(&json!({ "problems": problems, "repairs": repairs }))?;
    } else if problems.is_empty() {
        output::line(&format!("{} is healthy", ws.dir().display()))?;
    } else {
        for (i, problem) in problems.iter().enumerate() {
            let done = repairs
                .get(i)
                .map_or(String::new(), |r| format!(" → {}", r.action));
            output::line(&format!(
                "{}: {}{done}",
                problem.path.display(),
                problem.problem
            ))?;
        }
    }
    // What --fix cannot repair by itself (a misspelled field, a dependency on nothing) is
    // still a problem after it.
    let left: Vec<&doctor::Problem> = problems
        .iter()
        .filter(|p| !args.fix || p.remedy == doctor::Remedy::Manual)
        .collect();
    if !left.is_empty() {
        let error = CliError::new(
            Exit::Error,
            anyhow::anyhow!(
                "{} problem(s) {} under {}",
                left.len(),
                if args.fix { "left for you" } else { "found" },
                ws.dir().display()
            ),
        );
        return Err(if args.fix {
            error.with_hint("each says what to do")
        } else {
            error.with_hint(
                "run `maos doctor --fix` to quarantine broken files and clear stale ones",
            )
        });
    }
    Ok(())
}
