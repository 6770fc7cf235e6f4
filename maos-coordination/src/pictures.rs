//! Pictures of the work, as text other tools draw: the task graph as a Graphviz `dot`
//! digraph or a Mermaid flowchart (a node per task coloured by its status, an edge from each
//! dependency to the task that waits for it, the critical path bold), and a merge forecast
//! as a Graphviz graph (a node per branch, an edge per conflicting pair labelled with its
//! files).

use std::collections::HashSet;
use std::fmt::Write as _;

#[cfg(feature = "merge")]
use crate::merge::Forecast;
use crate::task::{Listing, Status, Task};

/// Fill and outline colours of a status (the same in both formats).
fn colours(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Pending => ("#eeeeee", "#757575"),
        Status::Blocked => ("#ffcc80", "#e65100"),
        Status::InProgress => ("#90caf9", "#1565c0"),
        Status::Review => ("#ce93d8", "#6a1b9a"),
        Status::Completed => ("#a5d6a7", "#2e7d32"),
        Status::Failed => ("#ef9a9a", "#c62828"),
        Status::Cancelled => ("#fafafa", "#bdbdbd"),
    }
}

/// What the pictures of the task graph draw: the tasks, their edges (dependency first, only
/// between tasks listed) and the critical path's tasks and edges.
struct Graph<'a> {
    tasks: &'a [Task],
    edges: Vec<(&'a str, &'a str)>,
    critical: HashSet<String>,
    critical_edges: HashSet<(String, String)>,
}

impl<'a> Graph<'a> {
    fn of(listing: &'a Listing) -> Self {
        let listed: HashSet<&str> = listing.tasks.iter().map(|t| t.id.as_str()).collect();
        let edges = listing
            .tasks
            .iter()
            .flat_map(|t| {
                t.dependencies
                    .iter()
                    .filter(|d| listed.contains(d.as_str()))
                    .map(move |d| (d.as_str(), t.id.as_str()))
            })
            .collect();
        let path = listing.critical_path();
        let critical_edges = path
            .windows(2)
            .map(|w| (w[0].clone(), w[1].clone()))
            .collect();
        Graph {
            tasks: &listing.tasks,
            edges,
            critical: path.into_iter().collect(),
            critical_edges,
        }
    }

    fn on_path(&self, from: &str, to: &str) -> bool {
        self.critical_edges
            .contains(&(from.to_owned(), to.to_owned()))
    }
}

/// A title cut to `max` characters (an ellipsis marks the cut).
fn short(title: &str, max: usize) -> String {
    let mut chars = title.chars();
    let mut cut: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        cut.push('…');
    }
    cut
}

/// `text` inside a Graphviz quoted string.
fn dot_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => "\\\"".to_owned(),
            '\\' => "\\\\".to_owned(),
            c if c.is_control() => " ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// The task graph as a Graphviz digraph.
pub fn tasks_dot(listing: &Listing) -> String {
    let graph = Graph::of(listing);
    let mut out = String::from(
        "digraph tasks {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n",
    );
    for task in graph.tasks {
        let (fill, line) = colours(task.status);
        let bold = graph.critical.contains(&task.id);
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\\n{}\", fillcolor=\"{fill}\", color=\"{line}\"{}];",
            dot_text(&task.id),
            dot_text(&task.id),
            dot_text(&short(&task.title, 40)),
            task.status,
            if bold {
                ", penwidth=3, fontname=\"Helvetica-Bold\""
            } else {
                ""
            }
        );
    }
    for (from, to) in &graph.edges {
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\"{};",
            dot_text(from),
            dot_text(to),
            if graph.on_path(from, to) {
                " [penwidth=3]"
            } else {
                ""
            }
        );
    }
    out.push_str("}\n");
    out
}

/// A Mermaid node id: letters, digits and `_`.
pub(crate) fn mermaid_id(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `text` inside a Mermaid quoted label.
fn mermaid_label(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => "#quot;".to_owned(),
            '<' => "#lt;".to_owned(),
            '>' => "#gt;".to_owned(),
            c if c.is_control() => " ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// The task graph as a Mermaid flowchart: one node per task, one edge per dependency, the
/// status as a class (its colour), the critical path's tasks and edges thick.
pub fn tasks_mermaid(listing: &Listing) -> String {
    let graph = Graph::of(listing);
    let mut out = String::from("flowchart LR\n");
    for task in graph.tasks {
        let _ = writeln!(
            out,
            "  {}[\"{}<br/>{}\"]:::{}",
            mermaid_id(&task.id),
            mermaid_label(&task.id),
            mermaid_label(&short(&task.title, 40)),
            task.status
        );
    }
    let mut thick = Vec::new();
    for (at, (from, to)) in graph.edges.iter().enumerate() {
        let _ = writeln!(out, "  {} --> {}", mermaid_id(from), mermaid_id(to));
        if graph.on_path(from, to) {
            thick.push(at.to_string());
        }
    }
    for status in Status::ALL {
        let (fill, line) = colours(status);
        let _ = writeln!(out, "  classDef {status} fill:{fill},stroke:{line}");
    }
    if !graph.critical.is_empty() {
        let mut critical: Vec<String> = graph.critical.iter().map(|id| mermaid_id(id)).collect();
        critical.sort();
        out.push_str("  classDef critical stroke-width:4px,font-weight:bold\n");
        let _ = writeln!(out, "  class {} critical", critical.join(","));
    }
    if !thick.is_empty() {
        let _ = writeln!(out, "  linkStyle {} stroke-width:4px", thick.join(","));
    }
    out
}

#[cfg(feature = "merge")]
/// A merge forecast as a Graphviz graph: every branch checked, an edge for each pair that
/// would conflict, labelled with its files (at most five named).
pub fn forecast_dot(forecast: &Forecast) -> String {
    let mut out = String::from(
        "graph forecast {\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eeeeee\", fontname=\"Helvetica\"];\n  edge [color=\"#c62828\", fontcolor=\"#c62828\", fontname=\"Helvetica\"];\n",
    );
    for branch in &forecast.branches {
        let _ = writeln!(out, "  \"{}\";", dot_text(branch));
    }
    for pair in &forecast.conflicts {
        let mut files: Vec<String> = pair.files.iter().take(5).map(|f| dot_text(f)).collect();
        if pair.files.len() > 5 {
            files.push(format!("… {} more", pair.files.len() - 5));
        }
        let _ = writeln!(
            out,
            "  \"{}\" -- \"{}\" [label=\"{}\", penwidth=2];",
            dot_text(&pair.a),
            dot_text(&pair.b),
            files.join("\\n")
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cannot_break_out_of_their_quotes() {
        assert_eq!(dot_text(r#"a "b" \ c"#), r#"a \"b\" \\ c"#);
        assert_eq!(mermaid_label(r#"<x> "y""#), "#lt;x#gt; #quot;y#quot;");
        assert_eq!(short("abcdef", 3), "abc…");
        assert_eq!(short("abc", 3), "abc");
    }
}
