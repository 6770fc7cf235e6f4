//! Writing to stdout: JSON documents, aligned tables, relative times; a closed pipe ends the
//! command quietly.

use std::io::{self, Write};

use jiff::Timestamp;
use serde::Serialize;

use crate::error::{CliError, Exit};

/// Writes `text` and a newline to stdout and flushes (so `watch` output streams).
pub fn line(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Draws the Graphviz `source` into `file` as SVG with Graphviz's `dot` program.
pub fn svg(source: &str, file: &std::path::Path) -> Result<(), CliError> {
    let mut dot = std::process::Command::new("dot")
        .arg("-Tsvg")
        .arg("-o")
        .arg(file)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            CliError::new(Exit::Error, anyhow::anyhow!("cannot run Graphviz's `dot`: {e}")).with_hint(
                "install Graphviz (`apt-get install graphviz`, `brew install graphviz`), or print the source with --dot",
            )
        })?;
    if let Some(mut stdin) = dot.stdin.take() {
        // A `dot` that exits early says why on stderr, read below.
        let _ = stdin.write_all(source.as_bytes());
    }
    let out = dot
        .wait_with_output()
        .map_err(|e| CliError::new(Exit::Error, anyhow::anyhow!("waiting for `dot`: {e}")))?;
    if !out.status.success() {
        return Err(CliError::new(
            Exit::Error,
            anyhow::anyhow!(
                "`dot` could not draw {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// Writes a pretty JSON document.
pub fn json<T: Serialize>(value: &T) -> Result<(), CliError> {
    line(&to_json(value, true))
}

/// Writes a JSON value on a single line (for streams).
pub fn json_line<T: Serialize>(value: &T) -> Result<(), CliError> {
    line(&to_json(value, false))
}

fn to_json<T: Serialize>(value: &T, pretty: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.unwrap_or_else(|e| format!("{{\"error\": \"cannot encode output: {e}\"}}"))
}

/// Writes rows as columns separated by two spaces, padded to the widest cell.
pub fn table<C: AsRef<str>>(header: &[&str], rows: &[impl AsRef<[C]>]) -> Result<(), CliError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.as_ref().chars().count());
        }
    }
    // One write for the whole table: thousands of rows must not cost a system call each.
    let mut text = String::new();
    let mut render = |cells: &mut dyn Iterator<Item = &str>| {
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = w.saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
    };
    render(&mut header.iter().copied());
    for row in rows {
        render(&mut row.as_ref().iter().map(AsRef::as_ref));
    }
    text.pop();
    line(&text)
}

/// "just now", "42s ago", "5m ago", "3h ago", "2d ago" (or "in 5m" for the future).
pub fn relative(t: Timestamp) -> String {
    let secs = Timestamp::now().as_second() - t.as_second();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let amount = match n {
        0 => return "just now".into(),
        1..=59 => format!("{n}s"),
        60..=3599 => format!("{}m", n / 60),
        3600..=86_399 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A closed stdout (e.g. `maos msg recv x | head`) is a quiet success, as in other Unix tools.
fn stdout_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::new(Exit::Error, e).quiet()
    } else {
        CliError::new(
            Exit::Error,
            anyhow::Error::new(e).context("failed to write to stdout"),
        )
    }
}
