//! Support for MAOS's cross-crate tests: throwaway workspaces and the real binaries.
//!
//! Tests drive separate OS processes — the `maos` CLI and the `maos-helper` binary of this
//! crate — against one `.maos/`, because threads in one process cannot show what happens
//! between processes (kernel locks, kills, file visibility).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Tests plant and edit files by hand, on purpose.
#![allow(clippy::disallowed_methods)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// A temporary directory with an initialized `.maos/`, removed on drop.
pub struct TestWorkspace {
    dir: tempfile::TempDir,
}

impl TestWorkspace {
    /// Creates the directory and runs `maos init` in it — on the store [`test_store`] names,
    /// under a prefix of its own, when the suite runs on etcd.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("maos-test")
            .tempdir()
            .unwrap();
        let ws = Self { dir };
        match test_store() {
            Some(cluster) => {
                let store = format!("{cluster}/{}", unique_prefix());
                ws.maos(&["init", "--store", &store]).assert_ok()
            }
            None => ws.maos(&["init"]).assert_ok(),
        };
        ws
    }

    /// A workspace on the file store, whatever store the suite runs on.
    pub fn on_files() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("maos-test")
            .tempdir()
            .unwrap();
        let ws = Self { dir };
        ws.maos(&["init"]).assert_ok();
        ws
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The `.maos/` directory.
    pub fn maos_dir(&self) -> PathBuf {
        self.root().join(".maos")
    }

    /// A `maos` command on this workspace, with a cleared environment and agent `tester`.
    pub fn maos_cmd(&self) -> Command {
        let mut cmd = Command::new(maos_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MAOS_WORKSPACE", self.root())
            .env("MAOS_AGENT_ID", "tester")
            .current_dir(self.root())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `maos args...` to completion.
    pub fn maos(&self, args: &[&str]) -> Run {
        Run(self.maos_cmd().args(args).output().unwrap())
    }

    /// Runs `maos args...` to completion as agent `agent`.
    pub fn maos_as(&self, agent: &str, args: &[&str]) -> Run {
        Run(self
            .maos_cmd()
            .env("MAOS_AGENT_ID", agent)
            .args(args)
            .output()
            .unwrap())
    }

    /// A `maos-helper` command on this workspace.
    pub fn helper_cmd(&self) -> Command {
        let mut cmd = Command::new(helper_bin());
        cmd.env_clear()
            .env("MAOS_WORKSPACE", self.root())
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `maos-helper chaos`: `agent` doing mixed work for `seconds`, its phases and
    /// acknowledged sends recorded in `dir`.
    pub fn spawn_chaos_agent(
        &self,
        agent: &str,
        seconds: f64,
        dir: &Path,
        stderr: Stdio,
    ) -> std::process::Child {
        self.helper_cmd()
            .args([
                "chaos",
                agent,
                &seconds.to_string(),
                &dir.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// Makes the workspace root a git repository on branch `main` (`.maos/` excluded) with
    /// one commit of `files` (path, contents), committed as `t`.
    pub fn init_git(&self, files: &[(&str, &str)]) {
        let root = self.root();
        git(root, &["init", "-q", "-b", "main"]);
        std::fs::write(root.join(".git/info/exclude"), "/.maos/\n").unwrap();
        for (path, contents) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        git(root, &["add", "-A"]);
        git(root, &["commit", "-q", "-m", "start"]);
    }

    /// `maos agent spawn AGENT [extra...]` into a fresh temporary folder: the folder
    /// (removed on drop) and the worktree's path inside it.
    pub fn spawn_worktree(&self, agent: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let place = tempfile::tempdir().unwrap();
        let tree = place.path().join(agent);
        let mut args = vec!["agent", "spawn", agent, "--path", tree.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.maos(&args).assert_ok();
        (place, tree)
    }

    /// Runs `maos hook claude EVENT` from `cwd` with `input` on stdin, as Claude Code does:
    /// no `MAOS_AGENT_ID`, no `MAOS_WORKSPACE` (the session's `cwd` finds the workspace).
    pub fn claude_hook(&self, cwd: &Path, event: &str, input: &Value) -> Run {
        self.hook_with(
            cwd,
            &["hook", "claude", event],
            input.to_string().as_bytes(),
        )
    }

    /// Runs `maos args...` from `cwd` with `stdin` as its input, without the test's agent id
    /// and workspace variables.
    pub fn hook_with(&self, cwd: &Path, args: &[&str], stdin: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .maos_cmd()
            .env_remove("MAOS_AGENT_ID")
            .env_remove("MAOS_WORKSPACE")
            .current_dir(cwd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A hook may answer before reading everything (it must not, but a broken pipe here
        // is the hook's failure to report, not the test's).
        let _ = child.stdin.take().unwrap().write_all(stdin);
        Run(child.wait_with_output().unwrap())
    }

    /// Whether the record at `rel` (a path under `.maos/`) exists, in whatever store the
    /// workspace keeps its state (a file, or an etcd key).
    pub fn record_exists(&self, rel: &str) -> bool {
        self.record(rel).is_some()
    }

    /// The record at `rel` (a path under `.maos/`) as JSON, in whatever store the workspace
    /// keeps its state; `None` when there is none.
    pub fn record(&self, rel: &str) -> Option<Value> {
        let ws = maos_coordination::Workspace::open(self.root()).unwrap();
        maos_coordination::store::Spot::new(ws.store(), ws.dir(), rel.into())
            .read()
            .unwrap()
            .map(|bytes| serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The paths `maos doctor` names as problems (it must find some: exit 1).
    pub fn doctor_problem_paths(&self) -> Vec<String> {
        let report = self.maos(&["--json", "doctor"]).assert_code(1).json();
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Whether the workspace keeps its state in `.maos/` files (not in etcd).
    pub fn on_files_store(&self) -> bool {
        maos_coordination::Workspace::open(self.root())
            .unwrap()
            .store()
            .is_files()
    }

    /// The records under `rel` (a folder under `.maos/`, at any depth), in whatever store the
    /// workspace keeps its state: their paths relative to `.maos/`.
    pub fn records_under(&self, rel: &str) -> Vec<PathBuf> {
        let ws = maos_coordination::Workspace::open(self.root()).unwrap();
        ws.store()
            .all_under(ws.dir(), Path::new(rel))
            .unwrap()
            .into_iter()
            .map(|(path, _)| path)
            .collect()
    }

    /// Every file under `.maos/` (relative paths, sorted), to check that nothing changed.
    pub fn snapshot(&self) -> Vec<String> {
        let mut files = Vec::new();
        collect(&self.maos_dir(), &self.maos_dir(), &mut files);
        files.sort();
        files
    }
}

impl Default for TestWorkspace {
    fn default() -> Self {
        Self::new()
    }
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.strip_prefix(base).unwrap().display().to_string());
        if path.is_dir() {
            collect(base, &path, out);
        }
    }
}

/// The etcd cluster the suites run on (`MAOS_TEST_STORE=etcd://host:port,…`, set by
/// `.ci/etcd-suite`), when this test build has the etcd store; `None`: the file store.
pub fn test_store() -> Option<String> {
    if !cfg!(feature = "etcd") {
        return None;
    }
    std::env::var("MAOS_TEST_STORE")
        .ok()
        .filter(|s| s.starts_with("etcd://"))
        .map(|s| s.trim_end_matches('/').to_owned())
}

/// A key prefix no other test workspace of any run uses.
pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "test/{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The finished output of a command.
pub struct Run(pub Output);

impl Run {
    /// The exit code.
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts exit 0 and returns itself.
    pub fn assert_ok(self) -> Self {
        assert_eq!(
            self.code(),
            0,
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts the exit code.
    pub fn assert_code(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Parses stdout as one JSON document, or `null` when the command failed or printed none
    /// (`lock show` of a lock nobody holds).
    pub fn json_or_null(&self) -> Value {
        serde_json::from_str(&self.stdout()).unwrap_or(Value::Null)
    }

    /// Parses stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout()))
    }
}

/// The `seq` of each message of a JSON array of messages.
pub fn seqs(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

/// The `maos-helper` binary of this crate (cargo and nextest tell integration tests where it
/// is; otherwise it sits in the target directory above the test binary's `deps/`).
pub fn helper_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_maos-helper") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let target_dir = exe.parent().and_then(Path::parent).unwrap();
    target_dir.join("maos-helper")
}

/// The `maos` binary, from the same target directory as the helper. Cargo builds a package's
/// binaries only for that package's own tests, so this builds `maos` once per test run
/// (a no-op when it is up to date) rather than risk running a stale one.
pub fn maos_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "maos-cli", "--bin", "maos"]);
        if cfg!(feature = "etcd") {
            build.args(["--features", "etcd"]);
        }
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building the maos binary failed");
        helper_bin().with_file_name("maos")
    })
    .clone()
}

/// Polls `done` every 20 ms until it holds; fails the test after 60 s naming `what`.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Stops process (or `-<pgid>` group) `pid` with SIGSTOP until dropped, then resumes it: a
/// test that fails while it holds a process stopped must not leave it stopped (its output
/// pipes would keep the test run waiting forever).
pub struct Stopped(String);

impl Stopped {
    /// Sends SIGSTOP now.
    pub fn new(pid: impl ToString) -> Self {
        let pid = pid.to_string();
        signal(&pid, "-STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", "--", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, `-TERM`, …) to process `pid`, or to a process group when
/// `pid` is given as `-<pgid>`.
pub fn signal(pid: &str, signal: &str) {
    let status = Command::new("kill")
        .args([signal, "--", pid])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Runs `git args...` in `dir` (as author `t`, no system or user config); fails the test on
/// an error. Returns its standard output, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_as(dir, "t", args)
}

/// [`git`] with `author` as author and committer (`<author>@example.invalid`).
pub fn git_as(dir: &Path, author: &str, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", &format!("user.name={author}")])
        .args(["-c", &format!("user.email={author}@example.invalid")])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `PATH` with the directory of the `maos` binary first: what a task command that calls
/// `maos` needs.
pub fn path_with_maos() -> String {
    let bin_dir = maos_bin().parent().map(Path::to_owned).unwrap_or_default();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Starts a helper and waits for its first line ("held …", "locked").
pub fn helper_with_line(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// Makes sure the Python module `import` is importable, installing `package` from PyPI once
/// if it is not (so that `cargo test` works on a fresh machine too).
pub fn ensure_python_module(import: &str, package: &str) {
    let importable = || {
        Command::new("python3")
            .args(["-c", &format!("import {import}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if importable() {
        return;
    }
    for extra in [&[][..], &["--user"][..]] {
        let installed = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                package,
            ])
            .args(extra)
            .output()
            .is_ok_and(|o| o.status.success());
        if installed && importable() {
            return;
        }
    }
    panic!(
        "the Python module `{import}` is missing and could not be installed: run `python3 -m pip install {package}`"
    );
}

/// A small deterministic generator (no dependency needed for "random" kills and pauses).
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number below `n`.
    pub fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// Every file under `dir`, at any depth (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}
