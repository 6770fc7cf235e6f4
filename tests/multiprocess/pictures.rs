//! Pictures of the work: the task graph as Graphviz `dot` and as a Mermaid flowchart — a
//! node per task coloured by status, an edge per dependency, the critical path bold — checked
//! against the task graph, and drawn by Graphviz when it is installed.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use maos_tests::TestWorkspace;

/// Whether Graphviz's `dot` can be run here (`.ci/run` installs it).
pub fn graphviz() -> bool {
    Command::new("dot")
        .arg("-V")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails unless `dot -Tsvg` accepts `source` and draws an SVG.
pub fn assert_draws(source: &str) {
    let mut dot = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    dot.stdin
        .take()
        .unwrap()
        .write_all(source.as_bytes())
        .unwrap();
    let out = dot.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dot refused it: {}\n{source}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
}

/// A plan with a chain, a diamond and a loose task, some of it done, and a title that tries
/// to break out of its quotes.
fn plan(ws: &TestWorkspace) -> Vec<(String, Vec<String>)> {
    let add = |title: &str, deps: &[&String]| -> String {
        let mut args = vec!["--json", "task", "add", title];
        for dep in deps {
            args.extend(["--depends-on", dep.as_str()]);
        }
        ws.maos(&args).assert_ok().json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let design = add("design the \"schema\" <v2>", &[]);
    let api = add("api", &[&design]);
    let ui = add("ui", &[&design]);
    let release = add("release", &[&api, &ui]);
    let docs = add("docs", &[&release]);
    let loose = add("loose end", &[]);
    ws.maos(&["task", "claim", &design]).assert_ok();
    ws.maos(&["task", "done", &design]).assert_ok();
    ws.maos(&["task", "claim", &api]).assert_ok();
    vec![
        (design.clone(), vec![]),
        (api.clone(), vec![design.clone()]),
        (ui.clone(), vec![design]),
        (release.clone(), vec![api, ui]),
        (docs, vec![release]),
        (loose, vec![]),
    ]
}

#[test]
fn the_mermaid_graph_has_a_node_per_task_and_an_edge_per_dependency() {
    let ws = TestWorkspace::new();
    let graph = plan(&ws);
    let text = ws
        .maos(&["progress", "--mermaid-graph"])
        .assert_ok()
        .stdout();
    assert!(text.starts_with("flowchart"), "{text}");
    let nodes: Vec<&str> = text.lines().filter(|l| l.contains("[\"")).collect();
    assert_eq!(nodes.len(), graph.len(), "{text}");
    let edges: BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|l| l.trim().split_once(" --> "))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    let mermaid = |id: &str| id.replace('-', "_");
    let expected: BTreeSet<(String, String)> = graph
        .iter()
        .flat_map(|(id, deps)| deps.iter().map(move |d| (mermaid(d), mermaid(id))))
        .collect();
    assert_eq!(edges, expected);
    // Status as colour: the completed task and the one in progress carry their classes.
    let design = mermaid(&graph[0].0);
    let api = mermaid(&graph[1].0);
    assert!(text.contains(&format!("{design}[")) && text.contains(":::completed"));
    assert!(
        nodes
            .iter()
            .any(|n| n.contains(&api) && n.ends_with(":::in_progress"))
    );
    // The critical path (api or ui → release → docs) is bold: its nodes in class `critical`
    // and its edges thick; the loose task is not on it.
    let critical = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("class "))
        .unwrap()
        .trim_end_matches(" critical")
        .to_owned();
    for on_path in [&graph[3].0, &graph[4].0] {
        assert!(critical.contains(&mermaid(on_path)), "{critical}");
    }
    assert!(!critical.contains(&mermaid(&graph[5].0)));
    assert!(text.contains("linkStyle"), "{text}");
    // The quotes and angle brackets of a title stay inside its label.
    assert!(text.contains("#quot;schema#quot; #lt;v2#gt;"), "{text}");
}

#[test]
fn the_dot_graph_matches_the_tasks_and_graphviz_draws_it() {
    let ws = TestWorkspace::new();
    let graph = plan(&ws);
    let dot = ws.maos(&["progress", "--dot"]).assert_ok().stdout();
    assert!(dot.starts_with("digraph tasks {"), "{dot}");
    let nodes = dot.lines().filter(|l| l.contains("[label=")).count();
    let edges = dot.lines().filter(|l| l.contains(" -> ")).count();
    assert_eq!(nodes, graph.len());
    assert_eq!(
        edges,
        graph.iter().map(|(_, deps)| deps.len()).sum::<usize>()
    );
    let bold = dot.lines().filter(|l| l.contains("penwidth=3")).count();
    assert!(
        bold >= 4,
        "the critical path's nodes and edges are bold: {dot}"
    );
    assert!(dot.contains(r#"design the \"schema\" <v2>"#), "{dot}");
    if graphviz() {
        assert_draws(&dot);
        let svg = ws.root().join("tasks.svg");
        ws.maos(&["progress", "--svg", svg.to_str().unwrap()])
            .assert_ok();
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    } else {
        eprintln!("Graphviz is not installed: the drawing is not checked");
    }
}
