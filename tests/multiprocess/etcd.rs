//! What only the etcd store does, against the cluster `.ci/etcd-suite` starts: liveness and
//! expiry decided by the cluster's leases, for agents on several hosts. (The invariant suites
//! — channels, locks, tasks, agents — run on etcd unchanged; see `.ci/etcd-suite`.)
//!
//! "Another host" is a process whose facts this host cannot know: every process runs with
//! `MAOS_PROCESS_FACTS=none`, so no process is ever judged dead from its pid, as for an
//! agent on another machine.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use maos_tests::{Stopped, TestWorkspace, path_with_maos, test_store, unique_prefix, wait_for};
use serde_json::Value;

/// The cluster `.ci/etcd-suite` started: its members' start scripts and pid files are in
/// `MAOS_TEST_ETCD_DIR`, their client addresses in `MAOS_TEST_STORE`.
struct Cluster {
    dir: PathBuf,
    endpoints: Vec<String>,
}

impl Cluster {
    fn get() -> Self {
        let store = test_store().expect("run `bash .ci/etcd-suite`");
        let dir = std::env::var_os("MAOS_TEST_ETCD_DIR").expect("run `bash .ci/etcd-suite`");
        Self {
            dir: PathBuf::from(dir),
            endpoints: store
                .trim_start_matches("etcd://")
                .split(',')
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Member `i` (1-based)'s pid.
    fn pid(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("m{i}.pid")))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// What member `i` says of itself (`None`: it does not answer within a second).
    fn status(&self, i: usize) -> Option<Value> {
        let out = Command::new("curl")
            .args(["-s", "-m", "1", "-X", "POST", "-d", "{}"])
            .arg(format!(
                "http://{}/v3/maintenance/status",
                self.endpoints[i - 1]
            ))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The member that leads (waiting for an election to settle).
    fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 1..=self.endpoints.len() {
                if let Some(status) = self.status(i)
                    && status["leader"] == status["header"]["member_id"]
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no etcd leader for 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&self, i: usize) {
        maos_tests::signal(&self.pid(i), "-KILL");
    }

    /// Starts member `i` again on its data, and waits until it answers.
    fn restart(&self, i: usize) {
        // Detached (`setsid -f` returns at once): the member outlives this test, and the
        // suite's teardown stops it by its pid file.
        let started = Command::new("setsid")
            .arg("-f")
            .arg("bash")
            .arg(self.dir.join(format!("m{i}.sh")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(started.success());
        wait_for("the restarted member to answer", || {
            self.status(i).is_some()
        });
    }

    /// `ws`'s store through member `i` alone: a client that talks to nobody else.
    fn only(&self, ws: &TestWorkspace, i: usize) -> String {
        let config: Value =
            serde_json::from_slice(&std::fs::read(ws.maos_dir().join("maos.json")).unwrap())
                .unwrap();
        let store = config["store"].as_str().unwrap();
        let prefix = store
            .trim_start_matches("etcd://")
            .split_once('/')
            .unwrap()
            .1;
        format!("etcd://{}/{prefix}", self.endpoints[i - 1])
    }

    /// Held by a test that hurts the cluster: two such tests at once could take its quorum.
    fn hurt() -> std::sync::MutexGuard<'static, ()> {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts `maos-helper args…` on `ws` with its output piped.
fn helper(ws: &TestWorkspace, args: &[&str]) -> Child {
    ws.helper_cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` and returns its stdout lines; fails the test if it failed.
fn lines_of(child: Child, what: &str) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The numbers a `send` helper printed (`<seq> …` per line), checked to be in its order.
fn in_sender_order(lines: &[String]) -> Vec<u64> {
    let mine: Vec<u64> = lines
        .iter()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        mine.windows(2).all(|w| w[0] < w[1]),
        "a sender's order kept"
    );
    mine
}

fn require_cluster() {
    assert!(
        test_store().is_some(),
        "these tests need an etcd cluster: run `bash .ci/etcd-suite`"
    );
}

fn on_etcd() -> TestWorkspace {
    require_cluster();
    TestWorkspace::new()
}

fn far_worker(ws: &TestWorkspace, agent: &str, script: &str) -> Child {
    ws.maos_cmd()
        .env("PATH", path_with_maos())
        .env("MAOS_PROCESS_FACTS", "none")
        .args([
            "--agent",
            agent,
            "agent",
            "run",
            "--heartbeat",
            "0.2",
            "--once",
        ])
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn agent_state(ws: &TestWorkspace, agent: &str) -> String {
    let listed = ws
        .maos_cmd()
        .env("MAOS_PROCESS_FACTS", "none")
        .args(["--json", "agent", "list"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agent)
        .map_or(String::new(), |a| a["state"].as_str().unwrap().to_owned())
}

/// An agent on another host killed mid-task: nobody can see its process, but its liveness
/// lease stops being renewed; once the cluster ends it, the agent is dead, and the next
/// claim (which recovers first) gets its task back — and not before: while the lease runs
/// the agent counts as alive and its task stays with it.
#[test]
fn an_agent_on_another_host_is_dead_when_its_lease_runs_out() {
    let ws = on_etcd();
    let task = ws
        .maos(&["--json", "task", "add", "far work"])
        .assert_ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut far = far_worker(&ws, "far", "touch started; sleep 60");
    wait_for("the far agent to start its task", || {
        ws.root().join("started").exists()
    });
    assert_eq!(agent_state(&ws, "far"), "alive");
    far.kill().unwrap();
    far.wait().unwrap();
    let claim = |agent: &str| {
        ws.maos_cmd()
            .env("MAOS_PROCESS_FACTS", "none")
            .args(["--json", "--agent", agent, "task", "claim", &task])
            .output()
            .unwrap()
    };
    // Right after the kill its lease (1.2 s: six missed heartbeats) still runs.
    let early = claim("near");
    assert_eq!(early.status.code(), Some(5), "{early:?}");
    wait_for("the far agent's lease to run out", || {
        agent_state(&ws, "far") == "dead"
    });
    let late = claim("near");
    assert!(late.status.success(), "{late:?}");
    let claimed: serde_json::Value = serde_json::from_slice(&late.stdout).unwrap();
    assert_eq!(claimed["assignee"], "near");
    assert_eq!(claimed["attempts"], 2);
    assert_eq!(agent_state(&ws, "far"), "gone", "recovered");
}

/// Locked increments, claim races and senders run on while the cluster is hurt: one member
/// killed, then the leader stopped for 5 s, then the killed member started again. Nothing is
/// lost (400 increments, every message once and in one gap-free order), nothing is won twice
/// (no increment lost to a second holder, no task claimed twice), and no process fails.
#[test]
fn faults_in_the_cluster_lose_nothing_and_let_no_two_win() {
    let _hurting = Cluster::hurt();
    let cluster = Cluster::get();
    let ws = on_etcd();
    let counter = ws.root().join("counter");
    let add_tasks = |n: usize, tag: &str| {
        let plan: String = (0..n)
            .map(|i| format!("{{\"title\": \"{tag} {i}\"}}\n"))
            .collect();
        let file = ws.root().join(format!("{tag}.jsonl"));
        std::fs::write(&file, plan).unwrap();
        ws.maos(&["task", "import", file.to_str().unwrap()])
            .assert_ok();
    };
    add_tasks(100, "first");
    let counters: Vec<Child> = (0..8)
        .map(|k| {
            helper(
                &ws,
                &[
                    "counter",
                    "n",
                    "50",
                    counter.to_str().unwrap(),
                    &format!("counter-{k}"),
                ],
            )
        })
        .collect();
    let mut claimers: Vec<Child> = (0..8)
        .map(|k| helper(&ws, &["claim-loop", &format!("claimer-{k}")]))
        .collect();
    let mut senders: Vec<Child> = (0..4)
        .map(|k| helper(&ws, &["send", "faults", "100", &format!("sender-{k}")]))
        .collect();
    let readers: Vec<Child> = (0..2)
        .map(|_| helper(&ws, &["read-loop", "faults", "400"]))
        .collect();

    std::thread::sleep(Duration::from_millis(300));
    cluster.kill(3);
    std::thread::sleep(Duration::from_secs(1));
    // A second wave during the leader's pause.
    add_tasks(100, "second");
    let leader = cluster.leader();
    let stopped = Stopped::new(cluster.pid(leader));
    claimers.extend((8..16).map(|k| helper(&ws, &["claim-loop", &format!("claimer-{k}")])));
    senders
        .extend((4..6).map(|k| helper(&ws, &["send", "faults-2", "50", &format!("sender-{k}")])));
    std::thread::sleep(Duration::from_secs(5));
    drop(stopped);
    if leader != 3 {
        cluster.restart(3);
    }

    let mut claimed = Vec::new();
    for (k, child) in claimers.into_iter().enumerate() {
        claimed.extend(lines_of(child, &format!("claimer {k}")));
    }
    let unique: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(unique.len(), claimed.len(), "a task was claimed twice");
    assert_eq!(claimed.len(), 200, "every task claimed once");

    let mut seen = Vec::new();
    for (k, child) in counters.into_iter().enumerate() {
        for line in lines_of(child, &format!("counter {k}")) {
            seen.push(line.split(' ').next().unwrap().parse::<u64>().unwrap());
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..400).collect::<Vec<u64>>(),
        "each increment read a distinct value"
    );
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "400");

    let mut seqs = Vec::new();
    for (k, child) in senders.into_iter().enumerate() {
        let lines = lines_of(child, &format!("sender {k}"));
        if k < 4 {
            seqs.extend(in_sender_order(&lines));
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=400).collect::<Vec<u64>>(),
        "every message once, no gap"
    );
    for (k, child) in readers.into_iter().enumerate() {
        lines_of(child, &format!("reader {k}"));
    }
    let listed = ws
        .maos(&["--json", "msg", "recv", "faults-2"])
        .assert_ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 100);
    // The cluster is whole again for the tests after this one.
    if leader == 3 {
        cluster.restart(3);
    }
    wait_for("every member to answer", || {
        (1..=3).all(|i| cluster.status(i).is_some())
    });
}

/// A holder whose own member stops answering (the client pinned to it: cut off from the
/// cluster) cannot renew; its guard says the lock may be lost before anyone else can take
/// it, and another agent takes it only once the lease ran out.
#[test]
fn a_holder_cut_off_from_the_cluster_is_told_before_another_takes_over() {
    let _hurting = Cluster::hurt();
    let cluster = Cluster::get();
    let ws = on_etcd();
    let leader = cluster.leader();
    let cut = if leader == 1 { 2 } else { 1 };
    let mut holder = ws
        .helper_cmd()
        .env("MAOS_HELPER_STORE", cluster.only(&ws, cut))
        .args(["hold-check", "pinned", "cut", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let held = lines.next().unwrap().unwrap();
    let token: u64 = held.strip_prefix("held ").unwrap().parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send((lines.next().and_then(Result::ok), Instant::now()));
    });
    let stopped = Stopped::new(cluster.pid(cut));
    let started = Instant::now();
    let taken = ws
        .maos(&[
            "--json", "--agent", "other", "lock", "acquire", "pinned", "--wait", "30",
        ])
        .assert_ok()
        .json();
    let taken_at = Instant::now();
    drop(stopped);
    assert!(
        taken_at - started >= Duration::from_millis(1500),
        "taken {:?} after the cut, before the 3 s lease could run out",
        taken_at - started
    );
    assert!(taken["token"].as_u64().unwrap() > token);
    let Ok((Some(said), said_at)) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = holder.kill();
        panic!("the cut-off holder's guard never said its lock may be lost");
    };
    assert!(said.starts_with("lost "), "{said}");
    assert!(
        said_at <= taken_at,
        "the guard said so {:?} after another agent took the lock",
        said_at - taken_at
    );
    holder.wait().unwrap();
}

/// A lock bound to its process, with an hour to live, whose holder is killed: nobody can
/// judge a process on another host, but the lock's key lives under the holder's short
/// session lease, which nobody renews any more — another agent takes it within seconds, not
/// an hour, and with a greater fencing token.
#[test]
fn a_killed_holders_lock_is_taken_when_its_session_lease_runs_out() {
    let ws = on_etcd();
    let (mut holder, line) =
        maos_tests::helper_with_line(ws.helper_cmd().env("MAOS_PROCESS_FACTS", "none").args([
            "hold",
            "src/lib.rs",
            "doomed",
        ]));
    let token: u64 = line.trim().strip_prefix("held ").unwrap().parse().unwrap();
    ws.maos(&["lock", "acquire", "src/lib.rs"]).assert_code(5);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let started = Instant::now();
    let taken = ws
        .maos_cmd()
        .env("MAOS_PROCESS_FACTS", "none")
        .args(["--json", "lock", "acquire", "src/lib.rs", "--wait", "60"])
        .output()
        .unwrap();
    assert!(taken.status.success(), "{taken:?}");
    let taken: Value = serde_json::from_slice(&taken.stdout).unwrap();
    assert_eq!(taken["owner"], "tester");
    assert!(taken["token"].as_u64().unwrap() > token);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "taken after {:?}",
        started.elapsed()
    );
}

/// Two agents on different "hosts" (nothing known of each other's processes) each hold a
/// lock the other waits for: their wait records are in the cluster, the cycle is found and
/// exactly one of them is the victim.
#[test]
fn a_deadlock_across_hosts_is_found_and_broken() {
    require_cluster();
    crate::locks::deadlock_cycle_of(2, &[("MAOS_PROCESS_FACTS", "none")]);
}

/// `maos store migrate`: refused while an agent runs; then every task (with its history),
/// message (with its number), reader's position and held lock moves to etcd — the commands
/// answer exactly as before, the next message follows on, the lock stays its owner's with a
/// greater token — and back to files the same way.
#[test]
fn a_workspace_moves_to_etcd_and_back_with_everything() {
    require_cluster();
    let ws = TestWorkspace::on_files();
    let id = |run: maos_tests::Run| run.json()["id"].as_str().unwrap().to_owned();
    let a = id(ws.maos(&["--json", "task", "add", "design"]).assert_ok());
    let b = id(ws
        .maos(&["--json", "task", "add", "build", "--depends-on", &a])
        .assert_ok());
    ws.maos(&["task", "claim", &a]).assert_ok();
    ws.maos(&["task", "done", &a]).assert_ok();
    for n in 1..=3 {
        ws.maos(&["msg", "send", "general", &format!("{{\"n\": {n}}}")])
            .assert_ok();
    }
    ws.maos(&["msg", "send", "general", "{\"re\": 1}", "--reply-to", "1"])
        .assert_ok();
    ws.maos_as("bob", &["msg", "recv", "general", "--new", "--limit", "2"])
        .assert_ok();
    // An acknowledged message and a decided vote.
    ws.maos(&[
        "msg",
        "send",
        "review",
        "{}",
        "--ack",
        "--to",
        "bob",
        "--allow-unknown",
    ])
    .assert_ok();
    ws.maos_as("bob", &["msg", "ack", "review", "1"])
        .assert_ok();
    let vote = ws
        .maos(&[
            "--json", "vote", "propose", "ship", "--voters", "bob", "--quorum", "1",
        ])
        .assert_ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.maos_as("bob", &["vote", "cast", &vote, "yes"])
        .assert_ok();
    let decided = |ws: &TestWorkspace| {
        (
            ws.maos(&["--json", "msg", "show", "review", "1"])
                .assert_ok()
                .json(),
            ws.maos(&["--json", "vote", "show", &vote])
                .assert_ok()
                .json(),
        )
    };
    let decided_before = decided(&ws);
    assert!(decided_before.0.to_string().contains("\"bob\""));
    let held = ws
        .maos(&[
            "--json",
            "--agent",
            "docs-writer",
            "lock",
            "acquire",
            "docs",
            "--ttl",
            "600",
        ])
        .assert_ok()
        .json();
    let state = |ws: &TestWorkspace| {
        (
            ws.maos(&["--json", "task", "list"]).assert_ok().json(),
            ws.maos(&["--json", "msg", "recv", "general"])
                .assert_ok()
                .json(),
            ws.maos(&["--json", "msg", "thread", "general", "4"])
                .assert_ok()
                .json(),
        )
    };
    let before = state(&ws);
    let verified = |ws: &TestWorkspace| {
        let v = ws.maos(&["--json", "journal", "verify"]).assert_ok().json();
        (v["entries"].as_u64().unwrap(), v["last_hash"].clone())
    };

    // An agent that joined (a session, alive for half an hour) and has not left.
    ws.maos(&["agent", "join", "busy"]).assert_ok();
    let etcd = format!("{}/{}", test_store().unwrap(), unique_prefix());
    let refused = ws.maos(&["store", "migrate", "--to", &etcd]).assert_code(5);
    assert!(refused.stderr().contains("busy"), "{}", refused.stderr());
    ws.maos(&["agent", "leave", "busy"]).assert_ok();

    let journal_before = verified(&ws);
    let moved = ws
        .maos(&["--json", "store", "migrate", "--to", &etcd])
        .assert_ok()
        .json();
    assert_eq!(moved["tasks"], 2);
    assert_eq!(moved["locks"], 1);
    assert!(moved["messages"].as_u64().unwrap() >= 4);
    let status = ws.maos(&["--json", "status"]).assert_ok().json();
    assert_eq!(status["store"], etcd.as_str());
    assert!(
        !ws.maos_dir().join("tasks").exists(),
        "the files were put aside"
    );
    assert_eq!(state(&ws), before, "the same answers from etcd");
    assert_eq!(
        decided(&ws),
        decided_before,
        "acknowledgements and votes moved"
    );
    assert!(moved["records"].as_u64().unwrap() >= 4);
    // The journal came along line for line: the same entries and hashes, one chain.
    let copied = ws.maos(&["--json", "events"]).assert_ok().stdout();
    assert_eq!(
        verified(&ws),
        journal_before,
        "the same chain, read from etcd"
    );
    let (entries, _) = journal_before;
    assert_eq!(moved["journal_entries"], entries, "{moved}");
    assert!(
        copied.contains("\"task.created\"") && entries > 10,
        "{copied}"
    );
    let unread = ws
        .maos_as("bob", &["--json", "msg", "recv", "general", "--new"])
        .assert_ok()
        .json();
    assert_eq!(
        maos_tests::seqs(&unread),
        [3, 4],
        "bob's position moved too"
    );
    let sent = ws
        .maos(&["--json", "msg", "send", "general", "{}"])
        .assert_ok()
        .json();
    assert_eq!(sent["seq"], 5);
    let shown = ws
        .maos(&["--json", "lock", "show", "docs"])
        .assert_ok()
        .json();
    assert_eq!(shown["owner"], "docs-writer");
    let etcd_token = shown["token"].as_u64().unwrap();
    assert!(etcd_token > held["token"].as_u64().unwrap());
    ws.maos(&["lock", "acquire", "docs"]).assert_code(5);
    assert_eq!(
        ws.maos(&["--json", "task", "claim", &b]).assert_ok().json()["id"],
        b.as_str()
    );

    let after_etcd = state(&ws);
    let journal_on_etcd = verified(&ws);
    assert!(
        journal_on_etcd.0 > entries,
        "changes on etcd follow on in the same chain"
    );
    let back = ws
        .maos(&["--json", "store", "migrate", "--to", "files"])
        .assert_ok()
        .json();
    assert_eq!(back["tasks"], 2);
    assert_eq!(
        verified(&ws),
        journal_on_etcd,
        "the journal came back whole"
    );
    assert_eq!(state(&ws), after_etcd, "the same answers from files again");
    assert_eq!(decided(&ws), decided_before, "and back");
    let sent = ws
        .maos(&["--json", "msg", "send", "general", "{}"])
        .assert_ok()
        .json();
    assert_eq!(sent["seq"], 6);
    let last = ws
        .maos(&["--json", "events", "--kind", "message.sent"])
        .assert_ok()
        .stdout();
    let last: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(last["n"], journal_on_etcd.0 + 1, "numbering goes on");
    ws.maos(&["--agent", "docs-writer", "lock", "release", "docs"])
        .assert_ok();
    let again = ws
        .maos(&["--json", "lock", "acquire", "docs"])
        .assert_ok()
        .json();
    assert!(
        again["token"].as_u64().unwrap() > etcd_token,
        "tokens keep increasing across both moves"
    );
    let fresh = ws
        .maos(&["--json", "lock", "acquire", "never-locked"])
        .assert_ok()
        .json();
    assert!(fresh["token"].as_u64().unwrap() > etcd_token);
}

/// A reservation bound to its process lives under the process's session lease: its holder
/// killed, another agent's reservation of an overlapping pattern goes through within
/// seconds, although the killed one had an hour to live.
#[test]
fn a_killed_holders_reservation_goes_with_its_session() {
    let ws = on_etcd();
    let (mut holder, line) =
        maos_tests::helper_with_line(ws.helper_cmd().env("MAOS_PROCESS_FACTS", "none").args([
            "hold-reservation",
            "src/**",
            "gone",
        ]));
    assert!(line.starts_with("held"), "{line}");
    ws.maos_as("next", &["reserve", "src/db/*"]).assert_code(5);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let started = Instant::now();
    let taken = ws
        .maos_cmd()
        .env("MAOS_AGENT_ID", "next")
        .env("MAOS_PROCESS_FACTS", "none")
        .args(["reserve", "src/db/*", "--wait", "60"])
        .output()
        .unwrap();
    assert!(taken.status.success(), "{taken:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// C2 on etcd: a channel's counter rewound by hand (put back to 2 while 5 messages exist)
/// never makes a send overwrite a message or hand out a number twice. Three processes then
/// send 20 messages each at once: every number from 6 to 65 is given exactly once, each
/// sender's in its order, and the first five messages are untouched.
#[test]
fn a_counter_rewound_by_hand_never_reuses_a_number() {
    let ws = on_etcd();
    for n in 0..5 {
        ws.maos(&["msg", "send", "rewound", &format!("{{\"first\": {n}}}")])
            .assert_ok();
    }
    let before = ws
        .maos(&["--json", "msg", "recv", "rewound"])
        .assert_ok()
        .json();
    let opened = maos_coordination::Workspace::open(ws.root()).unwrap();
    maos_coordination::store::Spot::new(
        opened.store(),
        opened.dir(),
        PathBuf::from("channels/rewound/.seq"),
    )
    .write(b"2", maos_coordination::atomic::Durability::Buffered)
    .unwrap();
    let senders: Vec<Child> = (0..3)
        .map(|k| helper(&ws, &["send", "rewound", "20", &format!("sender-{k}")]))
        .collect();
    let mut seqs = Vec::new();
    for (k, child) in senders.into_iter().enumerate() {
        seqs.extend(in_sender_order(&lines_of(child, &format!("sender {k}"))));
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (6..=65).collect::<Vec<u64>>(),
        "each number once, none reused"
    );
    let after = ws
        .maos(&["--json", "msg", "recv", "rewound"])
        .assert_ok()
        .json();
    let after = after.as_array().unwrap();
    assert_eq!(after.len(), 65);
    assert_eq!(
        &after[..5],
        before.as_array().unwrap().as_slice(),
        "nothing overwritten"
    );
}

/// The journal on etcd: changes made at once by several processes — messages, locks,
/// claims — each have exactly one entry, in one hash chain that verifies; a lock's entry
/// carries its token; `maos events --follow` in another process sees a change as it is
/// made; events a process left pending (it died after its change, before chaining it) are
/// chained by the next reader; an entry edited by hand is named by `journal verify`;
/// pruning archives old entries and the rest still verifies.
#[test]
fn the_journal_on_etcd_keeps_every_change_in_one_chain() {
    let ws = on_etcd();
    for i in 0..20 {
        ws.maos(&["task", "add", &format!("task {i}")]).assert_ok();
    }
    let follower = ws
        .maos_cmd()
        .args([
            "--json",
            "events",
            "--follow",
            "--kind",
            "message.*",
            "--timeout",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500)); // the follower is watching
    let counter = ws.root().join("counter");
    let counter = counter.to_str().unwrap();
    let mut workers: Vec<Child> = (0..3)
        .map(|k| helper(&ws, &["send", "journaled", "25", &format!("s{k}")]))
        .collect();
    workers.extend((0..2).map(|k| {
        helper(
            &ws,
            &["counter", "journaled", "15", counter, &format!("c{k}")],
        )
    }));
    workers.extend((0..2).map(|k| helper(&ws, &["claim-loop", &format!("w{k}")])));
    let mut tokens = Vec::new();
    for (i, child) in workers.into_iter().enumerate() {
        let lines = lines_of(child, &format!("worker {i}"));
        if (3..5).contains(&i) {
            tokens.extend(
                lines
                    .iter()
                    .map(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap()),
            );
        }
    }
    ws.maos(&["journal", "verify"]).assert_ok();
    let events: Vec<Value> = ws
        .maos(&["--json", "events"])
        .assert_ok()
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let numbers: Vec<u64> = events.iter().map(|e| e["n"].as_u64().unwrap()).collect();
    assert_eq!(
        numbers,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "one gap-free chain"
    );
    let of = |kind: &str| {
        events
            .iter()
            .filter(|e| e["kind"] == kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("task.created").len(), 20);
    let mut sent: Vec<u64> = of("message.sent")
        .iter()
        .map(|e| e["data"]["seq"].as_u64().unwrap())
        .collect();
    sent.sort_unstable();
    assert_eq!(
        sent,
        (1..=75).collect::<Vec<_>>(),
        "each message journaled once"
    );
    let mut acquired: Vec<u64> = of("lock.acquired")
        .iter()
        .map(|e| e["data"]["token"].as_u64().unwrap())
        .collect();
    acquired.sort_unstable();
    tokens.sort_unstable();
    assert_eq!(
        acquired, tokens,
        "each acquisition journaled once, with its token"
    );
    assert_eq!(of("lock.released").len(), 30);
    let claimed: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["kind"] == "task.claimed")
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(claimed.len(), 20, "each claim journaled");
    // The follower saw the sends as they were made.
    let out = follower.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"message.sent\""))
        .count();
    assert_eq!(followed, 75, "{}", String::from_utf8_lossy(&out.stderr));

    // A process that died after its change, before chaining its event, left it pending.
    let opened = maos_coordination::Workspace::open(ws.root()).unwrap();
    let spot = |rel: &str| {
        maos_coordination::store::Spot::new(opened.store(), opened.dir(), PathBuf::from(rel))
    };
    spot("journal/.pending/00000000000000000000000000000001")
        .write(
            br#"{"at":"2026-11-26T00:00:00Z","pid":1,"events":[["00000000000000000000000000000001",{"kind":"test.left.pending","subject":"x"}]]}"#,
            maos_coordination::atomic::Durability::Buffered,
        )
        .unwrap();
    let verified = ws.maos(&["--json", "journal", "verify"]).assert_ok().json();
    let last = events.len() as u64 + 1;
    assert_eq!(verified["entries"], last);
    let tail = ws
        .maos(&["--json", "events", "--kind", "test.*"])
        .assert_ok()
        .json();
    assert_eq!(tail["n"], last, "chained after the others");

    // An entry edited by hand.
    let key = format!("journal/{:020}", 10);
    let original = spot(&key).read().unwrap().unwrap();
    let edited = String::from_utf8(original.clone())
        .unwrap()
        .replacen("\"n\":10", "\"n\":10 ", 1);
    spot(&key)
        .write(
            edited.as_bytes(),
            maos_coordination::atomic::Durability::Buffered,
        )
        .unwrap();
    let broken = ws.maos(&["journal", "verify"]).assert_code(1);
    assert!(
        broken.stderr().contains(&key) && broken.stderr().contains("edited"),
        "{}",
        broken.stderr()
    );
    spot(&key)
        .write(&original, maos_coordination::atomic::Durability::Buffered)
        .unwrap();
    ws.maos(&["journal", "verify"]).assert_ok();

    // Pruning everything older than now keeps the newest entry; the rest verifies from it.
    let pruned = ws
        .maos(&["--json", "journal", "prune", "--older-than", "0s"])
        .assert_ok()
        .json();
    assert_eq!(pruned["upto"], last - 1, "{pruned}");
    let archive = pruned["archives"][0].as_str().unwrap();
    assert!(std::path::Path::new(archive).exists());
    let verified = ws.maos(&["--json", "journal", "verify"]).assert_ok().json();
    assert_eq!(verified["first"], last);
    assert!(
        verified["entries"].as_u64().unwrap() > last,
        "the prune itself is journaled"
    );
}

/// `maos doctor` on etcd: keys broken by hand (a task, a lock, a message) are named by
/// their keys; `--fix` moves them under `quarantine/` in the store with a note saying why,
/// and everything else keeps working.
#[test]
fn doctor_on_etcd_names_broken_keys_and_moves_them_to_quarantine() {
    let ws = on_etcd();
    let kept = ws
        .maos(&["--json", "task", "add", "kept"])
        .assert_ok()
        .json();
    ws.maos(&["msg", "send", "general", "{\"hello\": 1}"])
        .assert_ok();
    let opened = maos_coordination::Workspace::open(ws.root()).unwrap();
    let spot = |rel: &str| {
        maos_coordination::store::Spot::new(opened.store(), opened.dir(), PathBuf::from(rel))
    };
    let broken = ["tasks/t-0bad01.json", "locks/cache.lock"];
    for rel in broken {
        spot(rel)
            .write(
                b"{ \"id\": ",
                maos_coordination::atomic::Durability::Buffered,
            )
            .unwrap();
    }
    let named = ws.doctor_problem_paths();
    for rel in broken {
        assert!(
            named
                .iter()
                .any(|p| p.starts_with("etcd:") && p.ends_with(rel)),
            "{rel} not named: {named:?}"
        );
    }
    // The rest keeps working meanwhile.
    ws.maos(&["task", "show", kept["id"].as_str().unwrap()])
        .assert_ok();
    let fixed = ws.maos(&["--json", "doctor", "--fix"]).assert_ok().json();
    assert!(fixed.to_string().contains("quarantined"), "{fixed}");
    for rel in broken {
        assert!(spot(rel).read().unwrap().is_none(), "{rel} still there");
        let moved = spot(&format!("quarantine/{rel}")).read().unwrap();
        assert_eq!(
            moved.as_deref(),
            Some(&b"{ \"id\": "[..]),
            "{rel} kept as it was"
        );
        let why = spot(&format!("quarantine/{rel}.why"))
            .read()
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&why).contains("maos doctor --fix"));
    }
    ws.maos(&["doctor"]).assert_ok();
    ws.maos(&["lock", "acquire", "cache"]).assert_ok();
    assert_eq!(
        ws.maos(&["--json", "msg", "recv", "general"])
            .assert_ok()
            .json()[0]["payload"]["hello"],
        1
    );
}

/// Pruned messages move with the workspace: archived on files, then moved to etcd (archived
/// again there, a segment too large for one etcd request in several parts) and back — the
/// whole history reads the same everywhere, and search finds archived messages on etcd.
#[test]
fn pruned_messages_move_with_the_workspace_in_parts_small_enough_for_etcd() {
    require_cluster();
    let ws = TestWorkspace::on_files();
    let opened = maos_coordination::Workspace::open(ws.root()).unwrap();
    let log = maos_coordination::channel::Channel::open(
        &opened,
        maos_coordination::channel::ChannelName::new("log").unwrap(),
    );
    // Six messages of 400 KB of random hex: about 1.2 MB compressed, over etcd's limit.
    let mut rng = maos_tests::Lcg(7);
    for i in 0..6 {
        let blob: String = (0..400_000)
            .map(|_| char::from(b"0123456789abcdef"[rng.next(16)]))
            .collect();
        log.send(
            "bot",
            maos_coordination::channel::Draft::new(serde_json::json!({ "big": i, "blob": blob })),
        )
        .unwrap();
    }
    let out = ws
        .helper_cmd()
        .args(["send", "log", "2094", "bot"])
        .output()
        .unwrap();
    assert!(out.status.success());
    ws.maos(&["msg", "prune", "log", "--keep", "100"])
        .assert_ok();
    let history = |ws: &TestWorkspace| {
        ws.maos(&["--json", "msg", "recv", "log", "--archived"])
            .assert_ok()
            .json()
    };
    let before = history(&ws);
    assert_eq!(maos_tests::seqs(&before), (1..=2100).collect::<Vec<u64>>());

    let etcd = format!("{}/{}", test_store().unwrap(), unique_prefix());
    let moved = ws
        .maos(&["--json", "store", "migrate", "--to", &etcd])
        .assert_ok()
        .json();
    assert_eq!(moved["archived"], 2000, "{moved}");
    assert_eq!(history(&ws), before, "the same history from etcd");
    let parts = ws.records_under("archive/log");
    let first_segment = parts
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("000000.")
        })
        .count();
    assert!(
        first_segment >= 2,
        "one request could not hold it: {parts:?}"
    );
    let found = ws
        .maos(&[
            "--json",
            "msg",
            "search",
            r#""big":\s*5"#,
            "--channel",
            "log",
        ])
        .assert_ok()
        .json();
    assert_eq!(
        found.as_array().unwrap().len(),
        1,
        "search reads etcd's archives"
    );
    // Pruning on etcd goes on from there, and readers behind are told.
    let out = ws
        .helper_cmd()
        .args(["send", "log", "1000", "bot"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pruned = ws
        .maos(&["--json", "msg", "prune", "log", "--keep", "100"])
        .assert_ok()
        .json();
    assert_eq!(pruned[0]["upto"], 3000, "{pruned}");
    let behind = ws
        .maos(&["msg", "recv", "log", "--after", "10", "--limit", "1"])
        .assert_ok();
    assert!(
        behind.stderr().contains("pruned up to seq 3000") && behind.stdout().contains("#3001"),
        "{} / {}",
        behind.stderr(),
        behind.stdout()
    );
    let on_etcd = history(&ws);
    assert_eq!(maos_tests::seqs(&on_etcd), (1..=3100).collect::<Vec<u64>>());

    ws.maos(&["store", "migrate", "--to", "files"]).assert_ok();
    assert_eq!(history(&ws), on_etcd, "and the same back on files");
}

/// Snapshots of an etcd workspace: taken while another process keeps sending (one moment:
/// the archive's journal ends exactly at its messages), restored into etcd (the state as it
/// was, the replaced one kept as a snapshot, tokens still increasing) and into a new
/// workspace on files (the same answers).
#[test]
fn an_etcd_workspace_is_snapshot_at_one_moment_and_restored_into_etcd_or_files() {
    let ws = on_etcd();
    for title in ["design", "build"] {
        ws.maos(&["task", "add", title]).assert_ok();
    }
    let held = ws
        .maos(&["--json", "lock", "acquire", "docs", "--ttl", "600"])
        .assert_ok()
        .json();
    let sender = helper(&ws, &["send", "busy", "300", "s"]);
    std::thread::sleep(Duration::from_millis(300));
    let taken = ws
        .maos(&["--json", "snapshot", "create"])
        .assert_ok()
        .json();
    lines_of(sender, "sender");
    let file = taken["path"].as_str().unwrap().to_owned();
    let manifest = &taken["manifest"];
    // One moment: every message in the archive is journaled in it, and no other.
    let elsewhere = TestWorkspace::on_files();
    ws.maos(&["task", "add", "after the snapshot"]).assert_ok();
    let restored_files = elsewhere
        .maos(&["--json", "snapshot", "restore", &file, "--force"])
        .assert_ok()
        .json();
    assert_eq!(restored_files["manifest"], *manifest);
    let in_archive = elsewhere
        .maos(&["--json", "msg", "recv", "busy"])
        .assert_ok()
        .json();
    let count = in_archive.as_array().unwrap().len() as u64;
    assert!(count > 0 && count < 300, "taken while sending: {count}");
    let journaled = elsewhere
        .maos(&["--json", "events", "--kind", "message.sent"])
        .assert_ok()
        .stdout()
        .lines()
        .count() as u64;
    assert_eq!(
        journaled, count,
        "the journal ends exactly at the copied state"
    );
    elsewhere.maos(&["journal", "verify"]).assert_ok();
    let last_copied = elsewhere
        .maos(&["--json", "events"])
        .assert_ok()
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["n"] == manifest["journal_entries"])
        .unwrap();
    assert_eq!(
        last_copied["hash"], manifest["journal_hash"],
        "the manifest names the archive's last entry"
    );
    let titles = |ws: &TestWorkspace| -> BTreeSet<String> {
        ws.maos(&["--json", "task", "list"])
            .assert_ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        titles(&elsewhere),
        BTreeSet::from(["design".to_owned(), "build".to_owned()])
    );
    assert_eq!(
        elsewhere
            .maos(&["--json", "lock", "show", "docs"])
            .assert_ok()
            .json()["token"],
        held["token"]
    );

    // Back into etcd: the state as it was; what it replaced kept as a snapshot.
    let restored = ws
        .maos(&["--json", "snapshot", "restore", &file])
        .assert_ok()
        .json();
    let previous = restored["previous"].as_str().unwrap();
    assert!(std::path::Path::new(previous).exists(), "{restored}");
    assert_eq!(
        titles(&ws),
        BTreeSet::from(["design".to_owned(), "build".to_owned()])
    );
    assert_eq!(
        ws.maos(&["--json", "msg", "recv", "busy"])
            .assert_ok()
            .json(),
        in_archive
    );
    ws.maos(&["journal", "verify"]).assert_ok();
    let next = ws
        .maos(&["--json", "msg", "send", "busy", "{}"])
        .assert_ok()
        .json();
    assert_eq!(
        next["seq"],
        count + 1,
        "numbering follows the restored state"
    );
    ws.maos(&["lock", "release", "docs"]).assert_ok();
    let again = ws
        .maos(&["--json", "lock", "acquire", "docs"])
        .assert_ok()
        .json();
    assert!(
        again["token"].as_u64().unwrap() > held["token"].as_u64().unwrap(),
        "{again} after {held}"
    );
}
