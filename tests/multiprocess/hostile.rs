//! Hostile input: arbitrary bytes in any `.maos/` file, bad names everywhere, planted
//! symbolic links, and writes that fail half-way. Nothing panics, nothing escapes `.maos/`,
//! the previous state survives, and every error names what is wrong.

use std::path::{Path, PathBuf};
use std::process::Command;

use maos_coordination::Workspace;
use maos_coordination::task::{NewTask, Tasks};
use maos_tests::TestWorkspace;
use proptest::prelude::*;

/// A workspace with one of every record: messages, a cursor, a lock (with its fence), a
/// waiter's interest and wait record, tasks, an agent record.
fn populated() -> (TestWorkspace, Vec<PathBuf>) {
    let ws = TestWorkspace::new();
    ws.maos(&["msg", "send", "c", "hello"]).assert_ok();
    ws.maos(&["msg", "recv", "c", "--new"]).assert_ok();
    ws.maos(&["lock", "acquire", "src/db.rs"]).assert_ok();
    let store = Tasks::new(&Workspace::open(ws.root()).unwrap());
    let a = store.create("p", NewTask::new("a"), None).unwrap();
    let mut b = NewTask::new("b");
    b.dependencies.push(a.id.clone());
    store.create("p", b, None).unwrap();
    ws.maos(&["--agent", "w", "agent", "run", "--once", "--", "true"])
        .assert_ok();
    // A waiter's records, written as a waiting process would.
    let locks = ws.maos_dir().join("locks");
    std::fs::create_dir_all(locks.join("interests/src%2Fdb.rs")).unwrap();
    std::fs::create_dir_all(locks.join("waits")).unwrap();
    let process = r#"{"host": "h", "boot_id": "b", "pid": 1, "start_time": 1}"#;
    std::fs::write(
        locks.join("interests/src%2Fdb.rs/bob.json"),
        format!(r#"{{"agent": "bob", "resource": "src/db.rs", "priority": "high", "since": "2026-01-01T00:00:00Z", "until": "2099-01-01T00:00:00Z", "purpose": "", "process": {process}}}"#),
    )
    .unwrap();
    std::fs::write(
        locks.join("waits/bob.json"),
        format!(r#"{{"agent": "bob", "resource": "src/db.rs", "since": "2026-01-01T00:00:00Z", "until": "2099-01-01T00:00:00Z", "process": {process}}}"#),
    )
    .unwrap();
    let mut files = Vec::new();
    collect(&ws.maos_dir(), &mut files);
    files.retain(|f| !f.starts_with(ws.maos_dir().join("tmp")));
    (ws, files)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every reading command, and a few writing ones.
const COMMANDS: &[&[&str]] = &[
    &["status"],
    &["doctor"],
    &["task", "list"],
    &["task", "ready"],
    &["progress"],
    &["progress", "--gantt"],
    &["lock", "list"],
    &["lock", "show", "src/db.rs"],
    &["lock", "acquire", "src/db.rs"],
    &["msg", "recv", "c", "--new"],
    &["msg", "channels"],
    &["msg", "send", "c", "x"],
    &["agent", "list"],
    &["deadlock", "check"],
    &["task", "claim"],
];

fn assert_no_panic(ws: &TestWorkspace, damaged: &Path) {
    for command in COMMANDS {
        let mut args = vec!["--json"];
        args.extend_from_slice(command);
        let run = ws.maos(&args);
        assert_ne!(
            run.code(),
            101,
            "`maos {command:?}` panicked with {} damaged:\n{}",
            damaged.display(),
            run.stderr()
        );
        assert!(
            !run.stderr().contains("panicked"),
            "`maos {command:?}`: {}",
            run.stderr()
        );
        assert!(
            matches!(run.code(), 0..=6),
            "`maos {command:?}` exit {}",
            run.code()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// No byte sequence in any `.maos/` file makes any command panic: random bytes, and
    /// valid records cut short or with a byte changed.
    #[test]
    fn no_bytes_in_any_file_make_a_command_panic(
        pick in any::<prop::sample::Index>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..400),
        cut in any::<prop::sample::Index>(),
        flip in any::<(prop::sample::Index, u8)>(),
        how in 0..3u8,
    ) {
        let (ws, files) = populated();
        let target = pick.get(&files).clone();
        let original = std::fs::read(&target).unwrap();
        let damaged = match how {
            0 => garbage,
            1 => original[..cut.index(original.len() + 1)].to_vec(),
            _ => {
                let mut bytes = original.clone();
                if !bytes.is_empty() {
                    let at = flip.0.index(bytes.len());
                    bytes[at] = flip.1;
                }
                bytes
            }
        };
        std::fs::write(&target, &damaged).unwrap();
        assert_no_panic(&ws, &target);
    }
}

/// Names with traversal, absolute paths, control characters or excessive length are refused
/// (exit 2) by every command that takes one, and nothing is written.
#[test]
fn bad_names_are_refused_everywhere() {
    let ws = TestWorkspace::new();
    let long = "a".repeat(300);
    let bad = ["../x", "/abs", "a\u{1}b", long.as_str(), "", ".hidden"];
    let before = ws.snapshot();
    for name in bad {
        let cases: Vec<Vec<&str>> = vec![
            vec!["msg", "send", name, "x"],
            vec!["msg", "recv", name],
            vec!["msg", "watch", name, "--timeout", "0"],
            vec!["msg", "broadcast", name, "x"],
            vec!["msg", "send", "c", "x", "--to", name],
            vec!["msg", "send", "c", "x", "--role", name],
            vec!["--agent", name, "msg", "send", "c", "x"],
            vec!["lock", "acquire", name],
            vec!["lock", "release", name],
            vec!["task", "show", name],
            vec!["task", "claim", name],
            vec!["task", "add", "t", "--tag", name],
            vec!["task", "add", "t", "--role", name],
            vec!["task", "add", "t", "--requires", name],
            vec!["task", "add", "t", "--assign", name],
            vec!["task", "add", "t", "--depends-on", name],
            vec!["task", "add", "t", "--id", name],
            vec!["task", "claim", "--role", name],
            vec!["agent", "spawn", name],
            vec!["agent", "retire", name],
        ];
        for args in cases {
            let run = ws.maos(&args);
            assert_eq!(run.code(), 2, "`maos {args:?}`: {}", run.stderr());
        }
    }
    assert_eq!(ws.snapshot(), before);
}

/// A symbolic link planted inside `.maos/` is never followed to write outside it; doctor
/// lists the link and `--fix` removes the link, not what it points to.
#[test]
fn planted_symlinks_are_never_written_through() {
    let ws = TestWorkspace::new();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, "keep me\n").unwrap();
    let maos = ws.maos_dir();
    ws.maos(&["msg", "send", "c", "first"]).assert_ok();
    std::os::unix::fs::symlink(outside.path(), maos.join("channels/evil")).unwrap();
    std::os::unix::fs::symlink(&secret, maos.join("channels/c/.seq-link")).unwrap();
    std::fs::remove_file(maos.join("channels/c/.seq")).unwrap();
    std::os::unix::fs::symlink(&secret, maos.join("channels/c/.seq")).unwrap();
    std::fs::create_dir_all(maos.join("locks")).unwrap();
    std::os::unix::fs::symlink(&secret, maos.join("locks/db.fence")).unwrap();
    std::os::unix::fs::symlink(outside.path(), maos.join("tasks")).unwrap();

    let run = ws.maos(&["msg", "send", "evil", "x"]).assert_code(1);
    assert!(run.stderr().contains("symbolic link"), "{}", run.stderr());
    ws.maos(&["msg", "send", "c", "second"]).assert_code(1);
    ws.maos(&["lock", "acquire", "db"]).assert_code(1);
    ws.maos(&["task", "add", "t"]).assert_code(1);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "keep me\n");
    let mut outside_files = Vec::new();
    collect(outside.path(), &mut outside_files);
    assert_eq!(
        outside_files,
        std::slice::from_ref(&secret),
        "something was written outside"
    );

    let report = ws.maos(&["--json", "doctor"]).assert_code(1).json();
    let links = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["problem"].as_str().unwrap().contains("symbolic link"))
        .count();
    assert_eq!(links, 5, "{report}");
    ws.maos(&["doctor", "--fix"]).assert_ok();
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "keep me\n");
    assert!(outside.path().is_dir());
    ws.maos(&["msg", "send", "c", "second"]).assert_ok();
    ws.maos(&["task", "add", "t"]).assert_ok();
    ws.maos(&["doctor"]).assert_ok();
}

/// A write that fails half-way (the file size limit, `ulimit -f`) leaves the previous state
/// intact with an error naming the file.
#[test]
fn a_failed_write_leaves_the_previous_state_intact() {
    let ws = TestWorkspace::new();
    ws.maos(&["msg", "send", "c", "small"]).assert_ok();
    let id = ws.maos(&["--json", "task", "add", "t"]).assert_ok().json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = ws.snapshot();
    let task_before = std::fs::read(ws.maos_dir().join(format!("tasks/{id}.json"))).unwrap();
    let big = "x".repeat(4_000);
    let limited = |args: &[&str]| {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        Command::new("sh")
            .args([
                "-c",
                &format!("ulimit -f 1; \"$MAOS_CMD\" {}", quoted.join(" ")),
            ])
            .env("MAOS_CMD", maos_tests::maos_bin())
            .env("MAOS_WORKSPACE", ws.root())
            .env("MAOS_AGENT_ID", "tester")
            .output()
            .unwrap()
    };
    for args in [
        vec!["msg", "send", "c", big.as_str()],
        vec!["task", "update", id.as_str(), "--description", big.as_str()],
    ] {
        let out = limited(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("File too large") && err.contains(".maos/tmp/"),
            "{err}"
        );
    }
    assert_eq!(
        std::fs::read(ws.maos_dir().join(format!("tasks/{id}.json"))).unwrap(),
        task_before
    );
    assert_eq!(
        ws.snapshot(),
        before,
        "a staging leftover or a change survived"
    );
}

/// Damage that still parses: a misspelled field (silently ignored by the decoder), a
/// dependency on a task that does not exist, and the dependents of a task `--fix` moved to
/// quarantine are all reported, with what to do; `--fix` says what it leaves behind.
#[test]
fn doctor_finds_damage_that_still_parses() {
    let ws = TestWorkspace::new();
    let store = Tasks::new(&Workspace::open(ws.root()).unwrap());
    let base = store.create("planner", NewTask::new("base"), None).unwrap();
    let mut after = NewTask::new("after");
    after.dependencies.push(base.id.clone());
    let after = store.create("planner", after, None).unwrap();
    let typo = store.create("planner", NewTask::new("typo"), None).unwrap();
    let mut dangling = NewTask::new("dangling");
    dangling.dependencies.push(typo.id.clone());
    let dangling = store.create("planner", dangling, None).unwrap();
    ws.maos(&["doctor"]).assert_ok();

    // A hand edit with a misspelled field.
    let path = ws.maos_dir().join(format!("tasks/{}.json", typo.id));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"dependencies\"", "\"dependecies\"", 1),
    )
    .unwrap();
    // A dependency rewritten by hand to a task that does not exist: it waits for nothing.
    let ghost = ws.maos_dir().join(format!("tasks/{}.json", dangling.id));
    let dangling_text = std::fs::read_to_string(&ghost).unwrap();
    std::fs::write(&ghost, dangling_text.replacen(&typo.id, "t-000000", 1)).unwrap();
    // A record broken beyond parsing, with a dependent.
    std::fs::write(
        ws.maos_dir().join(format!("tasks/{}.json", base.id)),
        "{ broken",
    )
    .unwrap();

    let report = ws.maos(&["--json", "doctor"]).assert_code(1).json();
    let text = report.to_string();
    assert!(
        text.contains("unknown field `dependecies` (did you mean `dependencies`?)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "task `{}` depends on `t-000000`, which does not exist",
            dangling.id
        )),
        "{text}"
    );
    let fixed = ws.maos(&["--json", "doctor", "--fix"]).assert_code(1);
    let fixed_text = fixed.stdout();
    assert!(
        fixed_text.contains(&format!("quarantined; {} depend(s) on it", after.id)),
        "{fixed_text}"
    );
    assert!(
        fixed.stderr().contains("left for you"),
        "{}",
        fixed.stderr()
    );
    // The next check names the dependent of the quarantined task too.
    let again = ws
        .maos(&["--json", "doctor"])
        .assert_code(1)
        .json()
        .to_string();
    assert!(
        again.contains(&format!(
            "task `{}` depends on `{}`, which does not exist",
            after.id, base.id
        )),
        "{again}"
    );
}
