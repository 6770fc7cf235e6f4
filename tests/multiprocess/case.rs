//! Names that differ only in case (`Alice`, `alice`) are different names; on a
//! case-insensitive file system (a Mac's APFS by default) they must still never share a
//! file. This machine's kernel has no case-folding file system to mount, so the test checks
//! the property such a file system needs: in every directory under `.maos/`, no two entries
//! differ only in case — and each name keeps its own messages, lock, task and record.

use std::collections::HashMap;
use std::path::Path;

use maos_tests::TestWorkspace;

/// Every directory under `dir` whose entries collide once case is ignored.
fn case_collisions(dir: &Path, out: &mut Vec<String>) {
    let mut folded: HashMap<String, String> = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if let Some(twin) = folded.insert(name.to_lowercase(), name.clone()) {
            out.push(format!("{}: {twin} and {name}", dir.display()));
        }
        if entry.file_type().unwrap().is_dir() {
            case_collisions(&entry.path(), out);
        }
    }
}

#[test]
fn names_differing_only_in_case_never_share_a_file() {
    let ws = TestWorkspace::new();
    for (agent, channel, resource, task) in [
        ("Alice", "General", "src/Button.tsx", "T-1"),
        ("alice", "general", "src/button.tsx", "t-1"),
    ] {
        ws.maos_as(agent, &["msg", "send", channel, &format!("from {agent}")])
            .assert_ok();
        ws.maos(&["agent", "join", agent]).assert_ok();
        ws.maos_as(
            agent,
            &["msg", "send", "--to", agent, "dm", &format!("for {agent}")],
        )
        .assert_ok();
        ws.maos_as(agent, &["msg", "recv", channel, "--new"])
            .assert_ok();
        ws.maos(&["task", "add", &format!("task of {agent}"), "--id", task])
            .assert_ok();
        ws.maos_as(agent, &["agent", "run", "--once", "--", "true"])
            .assert_ok();
        ws.maos_as(agent, &["lock", "acquire", resource, "--ttl", "600"])
            .assert_ok();
    }
    let mut collisions = Vec::new();
    case_collisions(&ws.maos_dir(), &mut collisions);
    assert!(collisions.is_empty(), "{collisions:#?}");

    for (agent, channel, resource, task) in [
        ("Alice", "General", "src/Button.tsx", "T-1"),
        ("alice", "general", "src/button.tsx", "t-1"),
    ] {
        let messages = ws
            .maos(&["--json", "msg", "recv", channel])
            .assert_ok()
            .json();
        let bodies: Vec<&str> = messages
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["payload"].as_str().unwrap())
            .collect();
        assert_eq!(bodies, [format!("from {agent}")], "{channel}");
        let lock = ws
            .maos(&["--json", "lock", "show", resource])
            .assert_ok()
            .json();
        assert_eq!(lock["owner"], agent, "{resource}");
        let shown = ws
            .maos(&["--json", "task", "show", task])
            .assert_ok()
            .json();
        assert_eq!(shown["title"], format!("task of {agent}"));
        assert_eq!(
            shown["status"], "completed",
            "{agent}'s worker ran its own task"
        );
    }
    let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
    let ids: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"Alice") && ids.contains(&"alice"), "{ids:?}");
    let doctor = ws.maos(&["--json", "doctor"]).assert_ok().json();
    assert_eq!(
        doctor["problems"].as_array().map(Vec::len),
        Some(0),
        "{doctor}"
    );
}

/// A record written before names were escaped (`agents/Bob.json`) is reported by `doctor`
/// and renamed by `doctor --fix`; after that the agent is found under its name.
#[test]
fn doctor_renames_files_named_before_names_were_escaped() {
    let ws = TestWorkspace::new();
    ws.maos(&["task", "add", "one"]).assert_ok();
    ws.maos_as("Bob", &["agent", "run", "--once", "--", "true"])
        .assert_ok();
    let agents = ws.maos_dir().join("agents");
    std::fs::rename(agents.join("%bob.json"), agents.join("Bob.json")).unwrap();
    let out = ws.maos(&["doctor"]);
    assert_ne!(out.code(), 0);
    assert!(
        out.stdout().contains("Bob.json") && out.stdout().contains("%bob.json"),
        "{}",
        out.stdout()
    );
    ws.maos(&["doctor", "--fix"]).assert_ok();
    assert!(agents.join("%bob.json").is_file());
    ws.maos(&["doctor"]).assert_ok();
    let shown = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
    assert_eq!(shown[0]["id"], "Bob");
}
