//! `maos ui`: in a real terminal (tmux at 80×24 and 200×50, keys sent, the screen read back:
//! live updates, panes, filtering, the help, `q` restoring the terminal, the idle cost
//! measured) and where stdout is not a terminal (every pane printed as plain text).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use maos_tests::TestWorkspace;

#[test]
fn without_a_terminal_the_dashboard_prints_every_pane_as_text() {
    let ws = TestWorkspace::new();
    ws.maos(&["agent", "join", "ann", "--role", "builder"])
        .assert_ok();
    let id = add_task(&ws, "write the api");
    ws.maos_as("ann", &["task", "claim", &id]).assert_ok();
    ws.maos_as(
        "ann",
        &["lock", "acquire", "src/api.rs", "--purpose", "edit"],
    )
    .assert_ok();
    ws.maos_as("ann", &["msg", "send", "general", "hello team"])
        .assert_ok();
    // A record broken by hand: named at the end, the rest shown.
    let broken = ws.maos_dir().join("tasks").join("t-broken.json");
    if ws.on_files_store() {
        std::fs::write(&broken, "{\"id\": \"t-broken\", ").unwrap();
    }
    let out = ws
        .maos_cmd()
        .args(["ui"])
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for pane in [
        "[1 Agents]",
        "[2 Tasks]",
        "[3 Locks]",
        "[4 Messages]",
        "[5 Merges]",
    ] {
        assert!(text.contains(pane), "{pane} missing:\n{text}");
    }
    for shown in [
        "ann          alive      builder",
        "in_progress",
        "write the api",
        "src/api.rs",
        "#1 ann: hello team",
        "no forecast yet",
    ] {
        assert!(text.contains(shown), "{shown} missing:\n{text}");
    }
    assert!(!text.contains('\u{1b}'), "no escape codes in plain text");
    if ws.on_files_store() {
        let problems = &text[text.find("Could not be read:").expect(&text)..];
        assert!(problems.contains("t-broken.json"), "{problems}");
    }
}

/// Adds a task; its id.
fn add_task(ws: &TestWorkspace, title: &str) -> String {
    let added = ws
        .maos(&["--json", "task", "add", title])
        .assert_ok()
        .json();
    added["id"].as_str().unwrap().to_owned()
}

/// A terminal of `width` × `height` in a tmux server of its own, running `sh` in the
/// workspace with `maos` on its path.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(ws: &TestWorkspace, width: u16, height: u16) -> Self {
        // One server per terminal: tests may run as threads of one process.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let tmux = Tmux {
            socket: format!(
                "maos-ui-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::SeqCst)
            ),
        };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(["-c", ws.root().to_str().unwrap()])
            .args(["env", &format!("PATH={}", maos_tests::path_with_maos())])
            .args(["TERM=xterm-256color", "MAOS_AGENT_ID=watcher", "sh"])
            .status()
            .unwrap();
        assert!(status.success());
        tmux
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        self.capture(&[])
    }

    /// The screen with its colours and attributes, as escape sequences.
    fn styled_screen(&self) -> String {
        self.capture(&["-e"])
    }

    fn capture(&self, flags: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .args(flags)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (at most `within`) until the screen shows `text`; how long it took.
    fn until(&self, text: &str, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.screen().contains(text) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "`{text}` not on the screen after {within:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `within`) until the pane's foreground process is its shell again —
    /// the dashboard has exited and the terminal is the shell's, so keys typed now reach
    /// it; how long it took.
    fn until_shell(&self, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let out = Command::new("tmux")
                .args(["-L", &self.socket, "display-message", "-p"])
                .arg("#{pane_current_command}")
                .output()
                .unwrap();
            let current = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if current == "sh" {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "the dashboard still runs ({current}) after {within:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process the pane's shell runs (the dashboard).
    fn child_pid(&self) -> u32 {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "list-panes", "-F", "#{pane_pid}"])
            .output()
            .unwrap();
        let shell = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .unwrap_or_default();
        children.split_whitespace().next().unwrap().parse().unwrap()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// The CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn drive(width: u16, height: u16, idle_cost: bool) {
    let ws = TestWorkspace::new();
    let term = Tmux::start(&ws, width, height);
    // The terminal's modes before, to compare with after.
    term.keys(&["stty -g > stty-before; echo before-the-$((0+1))", "Enter"]);
    term.until("before-the-1", Duration::from_secs(5));
    term.keys(&["maos ui", "Enter"]);
    term.until("[1 Agents]", Duration::from_secs(10));
    // The Tasks pane of a workspace without a task yet (its folder not made): the first
    // tasks, added by another process, show within a second.
    term.keys(&["2"]);
    term.until("[2 Tasks]", Duration::from_secs(5));
    let api = add_task(&ws, "write the api");
    let shown = term.until("write the api", Duration::from_secs(1));
    eprintln!("{width}×{height}: a first task added by another process shown after {shown:?}");
    ws.maos(&["task", "add", "write the docs", "--tag", "docs"])
        .assert_ok();
    term.until("write the docs", Duration::from_secs(1));
    // A task completed by another process shows within a second.
    ws.maos_as("worker", &["task", "claim", &api]).assert_ok();
    ws.maos_as("worker", &["task", "done", &api]).assert_ok();
    let shown = term.until("completed", Duration::from_secs(1));
    eprintln!("{width}×{height}: a completion by another process shown after {shown:?}");
    // Filtering.
    term.keys(&["/", "docs", "Enter"]);
    term.until("1 match /docs", Duration::from_secs(5));
    assert!(
        !term.screen().contains("write the api"),
        "{}",
        term.screen()
    );
    // Panes by key, the help, a record.
    term.keys(&["3"]);
    term.until("[3 Locks]", Duration::from_secs(5));
    term.keys(&["?"]);
    term.until("switch pane", Duration::from_secs(5));
    term.keys(&["Escape"]);
    // A lock taken and a message sent by other processes show within a second too.
    term.keys(&["Escape", "3"]);
    ws.maos_as(
        "bob",
        &["lock", "acquire", "src/db.rs", "--purpose", "schema"],
    )
    .assert_ok();
    let shown = term.until("schema", Duration::from_secs(1));
    eprintln!("{width}×{height}: a lock taken by another process shown after {shown:?}");
    term.keys(&["4"]);
    term.until("[4 Messages]", Duration::from_secs(5));
    ws.maos_as("bob", &["msg", "send", "general", "db schema is in"])
        .assert_ok();
    let shown = term.until("db schema is in", Duration::from_secs(1));
    eprintln!("{width}×{height}: a message sent by another process shown after {shown:?}");
    term.keys(&["5"]);
    term.until("no forecast yet", Duration::from_secs(5));
    if idle_cost {
        // Nothing changes for 10 s: what the dashboard costs then.
        let pid = term.child_pid();
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(10));
        let used = cpu_ticks(pid) - before;
        let ticks = Command::new("getconf").arg("CLK_TCK").output().unwrap();
        let per_second: f64 = String::from_utf8_lossy(&ticks.stdout)
            .trim()
            .parse()
            .unwrap();
        eprintln!(
            "idle for 10 s: the dashboard used {:.2}% of one CPU ({used} ticks)",
            used as f64 / per_second / 10.0 * 100.0
        );
    }
    // q gives the terminal back as it was: the shell's screen, no trace of the dashboard,
    // the same terminal modes, a shell that takes commands.
    term.keys(&["q"]);
    term.until("before-the-1", Duration::from_secs(5));
    term.until_shell(Duration::from_secs(5));
    let after = term.screen();
    assert!(!after.contains("[5 Merges]"), "{after}");
    term.keys(&["stty -g > stty-after; echo after-the-$((0+1))", "Enter"]);
    term.until("after-the-1", Duration::from_secs(5));
    let modes = |name: &str| std::fs::read_to_string(ws.root().join(name)).unwrap();
    assert_eq!(modes("stty-before"), modes("stty-after"));
}

#[test]
fn the_dashboard_in_a_real_80_by_24_terminal() {
    drive(80, 24, true);
}

#[test]
fn the_dashboard_in_a_real_200_by_50_terminal() {
    drive(200, 50, false);
}

/// A person at an 80×24 terminal cancels a task, breaks a lock, replies in a thread and runs
/// doctor from the dashboard; other processes see each change.
#[test]
fn actions_from_the_dashboard_in_a_real_terminal() {
    let ws = TestWorkspace::new();
    let docs = add_task(&ws, "write the docs");
    ws.maos_as("ann", &["lock", "acquire", "db.rs", "--ttl", "600"])
        .assert_ok();
    ws.maos_as("ann", &["msg", "send", "general", "which endpoint first?"])
        .assert_ok();
    let term = Tmux::start(&ws, 80, 24);
    term.keys(&["maos ui", "Enter"]);
    term.until("[1 Agents]", Duration::from_secs(10));
    // Cancel the task: asked, confirmed, done as the acting agent.
    term.keys(&["2"]);
    term.until("write the docs", Duration::from_secs(15));
    term.keys(&["c"]);
    term.until(
        &format!("cancel {docs}?  y yes  n no"),
        Duration::from_secs(15),
    );
    term.keys(&["y"]);
    term.until(&format!("{docs} cancelled"), Duration::from_secs(15));
    let task = ws
        .maos(&["--json", "task", "show", &docs])
        .assert_ok()
        .json();
    assert_eq!(task["status"], "cancelled");
    // Break ann's lock with a reason.
    term.keys(&["3"]);
    term.until("db.rs", Duration::from_secs(15));
    term.keys(&["b"]);
    term.until("why break db.rs:", Duration::from_secs(15));
    term.keys(&["-l", "ann went quiet"]);
    term.keys(&["Enter"]);
    term.until("break db.rs (\"ann went quiet\")?", Duration::from_secs(15));
    term.keys(&["y"]);
    term.until("broke db.rs (held by ann)", Duration::from_secs(15));
    let held = ws.maos(&["--json", "lock", "list"]).assert_ok().json();
    assert_eq!(held.as_array().map(Vec::len), Some(0), "{held}");
    // Into the channel's messages, reply to the message, read the whole thread.
    term.keys(&["4"]);
    term.until("[4 Messages]", Duration::from_secs(15));
    for _ in 0..5 {
        if term.screen().contains("┌ general") {
            break;
        }
        term.keys(&["Down"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    term.until("┌ general · Enter: its messages", Duration::from_secs(15));
    term.keys(&["Enter"]);
    term.until("m reply", Duration::from_secs(15));
    term.keys(&["m"]);
    term.keys(&["-l", "GET /tasks"]);
    term.keys(&["Enter"]);
    term.until(
        "reply \"GET /tasks\" to #1 in general?",
        Duration::from_secs(15),
    );
    term.keys(&["y"]);
    term.until("↳ #2 watcher: GET /tasks", Duration::from_secs(15));
    let reply = ws
        .maos(&["--json", "msg", "show", "general", "2"])
        .assert_ok()
        .json();
    assert_eq!(
        (
            reply["message"]["reply_to"].as_u64(),
            reply["message"]["thread"].as_u64()
        ),
        (Some(1), Some(1))
    );
    term.keys(&["Enter"]);
    term.until("reply to #1", Duration::from_secs(15));
    let thread = term.screen();
    assert!(thread.contains("which endpoint first?"), "{thread}");
    term.keys(&["Escape"]);
    // doctor --fix, its report shown.
    term.keys(&["d"]);
    term.until("run doctor --fix", Duration::from_secs(15));
    term.keys(&["y"]);
    term.until("doctor: 0 problem(s)", Duration::from_secs(10));
    term.keys(&["Escape", "q"]);
}

/// Every parameter of the SGR sequences (colours, attributes) in `screen` (from
/// `capture-pane -e`).
fn sgr_parameters(screen: &str) -> Vec<u32> {
    screen
        .split("\u{1b}[")
        .skip(1)
        .filter_map(|sequence| sequence.find('m').map(|end| &sequence[..end]))
        .flat_map(|params| params.split(';').filter_map(|p| p.parse::<u32>().ok()))
        .collect()
}

/// Colours in a real terminal, none under `NO_COLOR` (the selection still shows); Ctrl-C
/// gives the shell back.
#[test]
fn no_color_and_ctrl_c_in_a_real_terminal() {
    let ws = TestWorkspace::new();
    let id = add_task(&ws, "write the api");
    ws.maos(&["task", "add", "release", "--depends-on", &id])
        .assert_ok();
    for no_color in [false, true] {
        let term = Tmux::start(&ws, 80, 24);
        let command = if no_color {
            "NO_COLOR=1 maos ui"
        } else {
            "maos ui"
        };
        term.keys(&[command, "Enter"]);
        term.until("[1 Agents]", Duration::from_secs(10));
        term.keys(&["2"]);
        term.until("waiting for", Duration::from_secs(5));
        let styled = sgr_parameters(&term.styled_screen());
        let colour = |p: &u32| (30..=38).contains(p) || (90..=97).contains(p);
        assert_eq!(
            styled.iter().any(colour),
            !no_color,
            "{command}: {styled:?}"
        );
        // The selection shows either way (reverse video is not a colour).
        assert!(styled.contains(&7), "{command}: {styled:?}");
        term.keys(&["C-c"]);
        let exited = term.until_shell(Duration::from_secs(5));
        eprintln!("{command}: the shell is back {exited:?} after Ctrl-C");
        term.keys(&["echo back-$((1+1))", "Enter"]);
        term.until("back-2", Duration::from_secs(5));
        assert!(!term.screen().contains("[2 Tasks]"), "{}", term.screen());
    }
}
