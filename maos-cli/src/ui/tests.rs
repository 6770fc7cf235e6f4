//! The panes drawn on ratatui's test backend at 80×24, as text snapshots: an empty workspace,
//! three agents at work, a deadlock, a merge forecast with a conflict.

use jiff::{SignedDuration, Timestamp};
use maos_coordination::deadlock::{Cycle, WaitEdge};
use maos_coordination::merge::{Forecast, PairConflict};
use maos_coordination::priority::Priority;
use maos_coordination::task::Status;

use super::model::{AgentRow, ChannelRow, LockRow, MessageRow, Model, TaskRow, threaded};
use super::view::{Pane, View};
use super::{After, handle_key, screen};

fn now() -> Timestamp {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

fn at(secs_ago: i64) -> Timestamp {
    now() - SignedDuration::from_secs(secs_ago)
}

/// `code` pressed (no modifier).
fn press(view: &mut View, model: &Model, code: crossterm::event::KeyCode) -> After {
    use crossterm::event::{KeyEvent, KeyModifiers};
    handle_key(view, model, KeyEvent::new(code, KeyModifiers::NONE))
}

fn pane(model: &Model, pane: Pane) -> String {
    let mut view = View::new(false);
    view.pane = pane;
    screen(model, &view, 80, 24, now())
}

fn empty() -> Model {
    Model {
        me: "ann".into(),
        store: "files".into(),
        ..Model::default()
    }
}

fn task(id: &str, title: &str, status: Status, assignee: Option<&str>) -> TaskRow {
    TaskRow {
        id: id.into(),
        title: title.into(),
        status,
        priority: Priority::Medium,
        created: at(600),
        assignee: assignee.map(Into::into),
        role: None,
        tags: vec![],
        blocked_by: None,
    }
}

/// The record of task `id` as the workspace would hold it.
fn task_record(id: &str, title: &str) -> maos_coordination::task::Task {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "title": title,
        "status": "in_progress",
        "created_by": "planner",
        "created_at": at(600),
        "updated_at": at(60),
    }))
    .unwrap()
}

/// Message `seq` of `sender`, answering `(reply_to, thread)`.
fn message(seq: u64, sender: &str, text: &str, answers: Option<(u64, u64)>) -> MessageRow {
    MessageRow {
        seq,
        sender: sender.into(),
        at: at(60 - seq as i64),
        text: text.into(),
        reply_to: answers.map(|a| a.0),
        thread: answers.map(|a| a.1),
    }
}

fn lock(resource: &str, owner: &str, left: i64, waiters: &[&str]) -> LockRow {
    LockRow {
        resource: resource.into(),
        kind: "lock".into(),
        owner: owner.into(),
        purpose: format!("edit {resource}"),
        token: 7,
        expires: at(-left),
        state: "live".into(),
        waiters: waiters.iter().map(|w| (*w).into()).collect(),
        record: String::new(),
    }
}

/// Three agents at work on a small plan, a lock with a waiter, a channel.
fn team() -> Model {
    let agent = |id: &str, state: &str, task: Option<&str>, beat: i64| AgentRow {
        id: id.into(),
        state: state.into(),
        role: Some("builder".into()),
        task: task.map(Into::into),
        heartbeat: at(beat),
        worktree: Some(format!("/repo/.maos/worktrees/{id}")),
        branch: Some(format!("maos/{id}/work")),
        record: format!("{{\"id\": \"{id}\"}}"),
    };
    let mut blocked = task("t-000004", "release", Status::Blocked, None);
    blocked.blocked_by = Some("waiting for t-000002 (in_progress), t-000003 (pending)".into());
    Model {
        agents: vec![
            agent("ann", "alive", Some("t-000002"), 3),
            agent("bob", "alive", None, 12),
            agent("cy", "stale", Some("t-000005"), 400),
        ],
        tasks: vec![
            task(
                "t-000001",
                "design the schema",
                Status::Completed,
                Some("ann"),
            ),
            task("t-000002", "api", Status::InProgress, Some("ann")),
            task("t-000003", "ui", Status::Pending, None),
            blocked,
            task("t-000005", "docs", Status::InProgress, Some("cy")),
        ],
        critical: vec!["t-000002".into(), "t-000004".into()],
        locks: vec![lock("src/api.rs", "ann", 1_500, &["bob"])],
        channels: vec![ChannelRow {
            name: "general".into(),
            messages: 4,
            last_seq: 4,
            last: Some(at(30)),
            unread: 1,
            recent: vec![
                message(1, "ann", "starting on the api", None),
                message(2, "bob", "ui next", None),
                message(3, "cy", "which endpoint first?", Some((1, 1))),
                message(4, "ann", "/tasks", Some((3, 1))),
            ],
        }],
        ..empty()
    }
}

fn deadlock() -> Model {
    let edge = |waiter: &str, resource: &str, holder: &str| WaitEdge {
        waiter: waiter.into(),
        resource: resource.into(),
        holder: holder.into(),
    };
    Model {
        locks: vec![
            lock("db.rs", "ann", 600, &["bob"]),
            lock("api.rs", "bob", 600, &["ann"]),
        ],
        cycles: vec![Cycle {
            agents: vec!["bob".into(), "ann".into()],
            edges: vec![edge("bob", "db.rs", "ann"), edge("ann", "api.rs", "bob")],
            victim: "bob".into(),
        }],
        // ann and bob each hold what the other waits for; their tasks stand still.
        ..team()
    }
}

fn conflict() -> Model {
    Model {
        forecast: Some(Forecast {
            branches: vec![
                "maos/ann/work".into(),
                "maos/bob/work".into(),
                "maos/cy/work".into(),
            ],
            conflicts: vec![PairConflict {
                a: "maos/ann/work".into(),
                b: "maos/bob/work".into(),
                files: vec!["src/api.rs".into(), "README.md".into()],
            }],
            new_conflicts: vec![],
            unrelated: vec![],
            checked_at: now(),
        }),
        ..team()
    }
}

#[test]
fn every_pane_of_an_empty_workspace() {
    for p in Pane::ALL {
        insta::assert_snapshot!(format!("empty_{p:?}"), pane(&empty(), p));
    }
}

#[test]
fn every_pane_of_three_agents_at_work() {
    for p in Pane::ALL {
        insta::assert_snapshot!(format!("team_{p:?}"), pane(&team(), p));
    }
}

#[test]
fn every_pane_of_a_deadlock_in_red() {
    for p in Pane::ALL {
        insta::assert_snapshot!(format!("deadlock_{p:?}"), pane(&deadlock(), p));
    }
}

#[test]
fn every_pane_of_a_forecast_conflict_in_the_matrix() {
    for p in Pane::ALL {
        insta::assert_snapshot!(format!("conflict_{p:?}"), pane(&conflict(), p));
    }
}

#[test]
fn keys_switch_panes_filter_show_records_and_quit() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut model = team();
    model.listing.tasks = vec![task_record("t-000005", "docs")];
    let mut view = View::new(false);
    let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
    assert_eq!(
        handle_key(&mut view, &model, key(KeyCode::Char('2'))),
        After::Stay
    );
    assert_eq!(view.pane, Pane::Tasks);
    handle_key(&mut view, &model, key(KeyCode::Tab));
    assert_eq!(view.pane, Pane::Locks);
    // Filter the tasks by typing after `/`.
    handle_key(&mut view, &model, key(KeyCode::Char('/')));
    for c in "docs".chars() {
        handle_key(&mut view, &model, key(KeyCode::Char(c)));
    }
    handle_key(&mut view, &model, key(KeyCode::Enter));
    assert_eq!(
        (view.pane, view.filter.as_str(), view.typing),
        (Pane::Tasks, "docs", false)
    );
    assert!(screen(&model, &view, 80, 24, now()).contains("1 match /docs"));
    // Enter shows the selected row's record; Esc closes it.
    handle_key(&mut view, &model, key(KeyCode::Enter));
    let shown = view.detail.clone().unwrap();
    let record = serde_json::to_string_pretty(&model.listing.tasks[0]).unwrap();
    assert_eq!(shown, record);
    assert!(shown.contains("\"id\": \"t-000005\""), "{shown}");
    handle_key(&mut view, &model, key(KeyCode::Esc));
    assert!(view.detail.is_none());
    handle_key(&mut view, &model, key(KeyCode::Char('?')));
    assert!(screen(&model, &view, 80, 24, now()).contains("switch pane"));
    handle_key(&mut view, &model, key(KeyCode::Esc));
    assert_eq!(
        handle_key(&mut view, &model, key(KeyCode::Char('q'))),
        After::Quit
    );
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(handle_key(&mut view, &model, ctrl_c), After::Quit);
}

#[test]
fn the_task_filter_takes_words_and_fields() {
    use super::view::shown_tasks;
    let mut model = team();
    model.tasks[1].tags = vec!["backend".into()];
    model.tasks[2].role = Some("designer".into());
    let ids = |filter: &str| -> Vec<String> {
        shown_tasks(&model, filter)
            .iter()
            .map(|t| t.id.clone())
            .collect()
    };
    assert_eq!(ids("tag:backend"), ["t-000002"]);
    assert_eq!(ids("role:designer"), ["t-000003"]);
    assert_eq!(ids("@cy"), ["t-000005"]);
    assert_eq!(ids("@ann api"), ["t-000002"]);
    assert_eq!(ids("DOCS"), ["t-000005"]);
    assert_eq!(ids("tag:nothing").len(), 0);
    assert_eq!(ids("").len(), 5);
}

#[test]
fn actions_are_asked_for_confirmed_and_can_be_given_up() {
    use super::actions::{Action, Ask};
    use crossterm::event::KeyCode;
    let model = team();
    let mut view = View::new(false);
    // A message to the selected channel: typed, confirmed with y.
    press(&mut view, &model, KeyCode::Char('4'));
    press(&mut view, &model, KeyCode::Char('m'));
    for c in "hi all".chars() {
        press(&mut view, &model, KeyCode::Char(c));
    }
    assert!(screen(&team(), &view, 80, 24, now()).contains("message to general: hi all"));
    press(&mut view, &model, KeyCode::Enter);
    assert!(
        screen(&team(), &view, 80, 24, now()).contains("send \"hi all\" to general?  y yes  n no")
    );
    let send = Action::Send {
        channel: "general".into(),
        text: "hi all".into(),
        reply_to: None,
    };
    assert_eq!(
        press(&mut view, &model, KeyCode::Char('y')),
        After::Do(send)
    );
    // Cancelling a task, given up with n: nothing is done.
    press(&mut view, &model, KeyCode::Char('2'));
    press(&mut view, &model, KeyCode::Char('c'));
    assert_eq!(
        view.ask,
        Some(Ask::Confirm(Action::Cancel {
            task: "t-000002".into()
        }))
    );
    assert_eq!(press(&mut view, &model, KeyCode::Char('n')), After::Stay);
    assert_eq!(view.status.as_deref(), Some("not done"));
    // Reassigning: Esc while typing gives it up.
    press(&mut view, &model, KeyCode::Char('r'));
    press(&mut view, &model, KeyCode::Char('b'));
    press(&mut view, &model, KeyCode::Esc);
    assert_eq!(view.ask, None);
    // Breaking a lock takes a reason; an empty one is not accepted.
    press(&mut view, &model, KeyCode::Char('3'));
    press(&mut view, &model, KeyCode::Char('b'));
    press(&mut view, &model, KeyCode::Enter);
    assert!(matches!(view.ask, Some(Ask::Text { .. })));
    for c in "stuck".chars() {
        press(&mut view, &model, KeyCode::Char(c));
    }
    press(&mut view, &model, KeyCode::Enter);
    let broken = Action::Break {
        resource: "src/api.rs".into(),
        reservation: false,
        reason: "stuck".into(),
    };
    assert_eq!(
        press(&mut view, &model, KeyCode::Char('y')),
        After::Do(broken)
    );
    // Action keys do nothing on a pane they do not belong to.
    press(&mut view, &model, KeyCode::Char('1'));
    press(&mut view, &model, KeyCode::Char('c'));
    assert_eq!(view.ask, None);
}

#[test]
fn actions_go_through_the_library_as_the_acting_agent() {
    use super::actions::Action;
    use maos_coordination::channel::{Channel, ChannelName};
    use maos_coordination::lock::{LockRequest, Locks};
    use maos_coordination::task::{NewTask, Tasks};
    let dir = tempfile::tempdir().unwrap();
    let ws = maos_coordination::Workspace::init(dir.path())
        .unwrap()
        .workspace;
    let tasks = Tasks::new(&ws);
    let a = tasks.create("planner", NewTask::new("a"), None).unwrap().id;
    let b = tasks.create("planner", NewTask::new("b"), None).unwrap().id;
    let request = LockRequest::new("db", "bob")
        .unwrap()
        .ttl(std::time::Duration::from_secs(600));
    Locks::new(&ws)
        .acquire(&request, std::time::Duration::ZERO)
        .unwrap()
        .persist();
    let done = |action: Action| action.run(&ws, "ann");
    assert_eq!(
        done(Action::Send {
            channel: "general".into(),
            text: "hello".into(),
            reply_to: None,
        }),
        "sent #1 to general"
    );
    let sent = Channel::open(&ws, ChannelName::new("general").unwrap())
        .get(1)
        .unwrap();
    assert_eq!(
        (sent.sender.as_str(), sent.payload.clone()),
        ("ann", serde_json::json!("hello"))
    );
    done(Action::Send {
        channel: "general".into(),
        text: "hello back".into(),
        reply_to: Some(1),
    });
    let reply = Channel::open(&ws, ChannelName::new("general").unwrap())
        .get(2)
        .unwrap();
    assert_eq!((reply.reply_to, reply.thread), (Some(1), Some(1)));
    let thread = super::model::thread_text(&ws, "general", 2);
    assert!(
        thread.starts_with("#1 ann at ")
            && thread.contains("#2 ann at ")
            && thread.contains(", reply to #1\nhello back"),
        "{thread}"
    );
    done(Action::Reassign {
        task: a.clone(),
        to: "cy".into(),
    });
    assert_eq!(tasks.get(&a).unwrap().assignee.as_deref(), Some("cy"));
    done(Action::Cancel { task: b.clone() });
    assert_eq!(tasks.get(&b).unwrap().status, Status::Cancelled);
    assert!(
        done(Action::Break {
            resource: "db".into(),
            reservation: false,
            reason: "stuck".into()
        })
        .contains("held by bob")
    );
    assert!(Locks::new(&ws).show("db").unwrap().is_none());
    assert!(done(Action::Doctor).starts_with("doctor: 0 problem(s)"));
    // A failure is said, not fatal.
    assert!(
        done(Action::Cancel {
            task: "t-nope00".into()
        })
        .starts_with("error:")
    );
}

#[test]
fn messages_are_shown_as_threads() {
    let mut recent = team().channels[0].recent.clone();
    recent.push(message(5, "bob", "ui is up", Some((2, 2))));
    recent.push(message(6, "cy", "thanks", Some((4, 1))));
    let order: Vec<(bool, u64)> = threaded(&recent)
        .iter()
        .map(|(reply, m)| (*reply, m.seq))
        .collect();
    // The thread with the newest message last; its first message, then its replies.
    assert_eq!(
        order,
        [
            (false, 2),
            (true, 5),
            (false, 1),
            (true, 3),
            (true, 4),
            (true, 6)
        ]
    );
}

#[test]
fn enter_goes_into_a_channels_threads_and_m_replies_there() {
    use super::actions::{Action, Ask};
    use crossterm::event::KeyCode;
    let model = team();
    let mut view = View::new(false);
    press(&mut view, &model, KeyCode::Char('4'));
    assert!(screen(&model, &view, 80, 24, now()).contains("Enter: its messages"));
    press(&mut view, &model, KeyCode::Enter);
    assert!(view.showing_thread());
    let shown = screen(&model, &view, 80, 24, now());
    assert!(shown.contains("  ↳ #4 ann (to #3): /tasks"), "{shown}");
    // The newest line is selected; up to the reply #3, Enter asks for its whole thread.
    press(&mut view, &model, KeyCode::Up);
    assert_eq!(
        press(&mut view, &model, KeyCode::Enter),
        After::Thread {
            channel: "general".into(),
            seq: 3
        }
    );
    press(&mut view, &model, KeyCode::Char('m'));
    for c in "GET first".chars() {
        press(&mut view, &model, KeyCode::Char(c));
    }
    assert!(screen(&model, &view, 80, 24, now()).contains("reply to #3 in general: GET first"));
    press(&mut view, &model, KeyCode::Enter);
    assert_eq!(
        view.ask,
        Some(Ask::Confirm(Action::Send {
            channel: "general".into(),
            text: "GET first".into(),
            reply_to: Some(3)
        }))
    );
    press(&mut view, &model, KeyCode::Esc);
    // Esc leaves the messages for the channels.
    press(&mut view, &model, KeyCode::Esc);
    assert!(!view.showing_thread());
    assert_eq!(view.row(), 0);
}

#[test]
fn a_long_list_scrolls_with_its_selection_at_every_size() {
    use crossterm::event::KeyCode;
    let mut model = team();
    model.tasks = (1..=300)
        .map(|i| {
            task(
                &format!("t-{i:06}"),
                &format!("task number {i}"),
                Status::Pending,
                None,
            )
        })
        .collect();
    let mut view = View::new(false);
    press(&mut view, &model, KeyCode::Char('2'));
    for _ in 0..15 {
        press(&mut view, &model, KeyCode::PageDown);
    }
    assert_eq!(view.row(), 150);
    let shown = screen(&model, &view, 80, 24, now());
    assert!(shown.contains("task number 151"), "{shown}");
    assert!(!shown.contains("task number 1 "), "{shown}");
    // Back up a few rows: the list stays where it is while the selection is on it.
    press(&mut view, &model, KeyCode::Up);
    press(&mut view, &model, KeyCode::Up);
    let again = screen(&model, &view, 80, 24, now());
    assert_eq!(
        shown.lines().skip(3).take(3).collect::<Vec<_>>(),
        again.lines().skip(3).take(3).collect::<Vec<_>>()
    );
    // Every pane draws at sizes down to a sliver without panicking.
    for (width, height) in [(20, 4), (40, 10), (80, 24), (132, 43), (200, 50)] {
        for pane in Pane::ALL {
            view.pane = pane;
            for in_thread in [false, true] {
                view.in_thread = in_thread;
                let text = screen(&model, &view, width, height, now());
                assert!(text.lines().count() <= usize::from(height));
            }
        }
    }
}

#[test]
fn the_ready_queue_is_listed_in_the_order_claims_take_it() {
    use super::view::shown_tasks;
    let mut model = team();
    let mut urgent = task("t-000009", "hotfix", Status::Pending, None);
    urgent.priority = Priority::Critical;
    let mut older = task("t-000008", "older", Status::Pending, None);
    older.created = at(7_200);
    model.tasks.extend([urgent, older]);
    let ids: Vec<&str> = shown_tasks(&model, "")
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "t-000002", "t-000005", "t-000009", "t-000008", "t-000003", "t-000004", "t-000001"
        ]
    );
}

#[test]
fn a_part_read_again_leaves_the_others_as_they_were() {
    use super::model::{Changes, Parts};
    use maos_coordination::channel::{Channel, ChannelName, Draft};
    use maos_coordination::task::{NewTask, Tasks};
    let dir = tempfile::tempdir().unwrap();
    let ws = maos_coordination::Workspace::init(dir.path())
        .unwrap()
        .workspace;
    let tasks = Tasks::new(&ws);
    let first = tasks.create("planner", NewTask::new("a"), None).unwrap().id;
    let mut model = Model::gather(&ws, "ann");
    let second = NewTask {
        dependencies: vec![first.clone()],
        ..NewTask::new("b")
    };
    let second = tasks.create("planner", second, None).unwrap().id;
    Channel::open(&ws, ChannelName::new("general").unwrap())
        .send("bob", Draft::new(serde_json::json!("hi")))
        .unwrap();
    let marked = |parts| {
        let mut changes = Changes::default();
        changes.mark(parts);
        changes
    };
    model.refresh(&ws, &marked(Parts::CHANNELS));
    assert_eq!((model.tasks.len(), model.channels.len()), (1, 1));
    // One task file named: that task alone is read again (the other change stays unseen),
    // and what blocks each task is worked out again.
    tasks
        .update(
            &first,
            "planner",
            maos_coordination::task::Edit {
                title: Some("a, renamed".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let mut one = Changes::default();
    one.mark_path(std::path::Path::new(&format!("tasks/{second}.json")));
    one.mark_path(std::path::Path::new("tasks/.index"));
    model.refresh(&ws, &one);
    let titles: Vec<&str> = model.tasks.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles.len(), 2);
    assert!(titles.contains(&"a") && titles.contains(&"b"), "{titles:?}");
    let blocked = model.tasks.iter().find(|t| t.id == second).unwrap();
    assert!(blocked.blocked_by.as_deref().unwrap().contains(&first));
    // Every task read again.
    model.refresh(&ws, &marked(Parts::TASKS));
    assert!(model.tasks.iter().any(|t| t.title == "a, renamed"));
    // A path inside `.maos/` names its part; anything else reads everything.
    assert_eq!(
        Parts::of_path(std::path::Path::new("tasks/t-1.json")),
        Parts::TASKS
    );
    assert_eq!(
        Parts::of_path(std::path::Path::new("maos.json")),
        Parts::ALL
    );
}

#[test]
fn p_lists_what_could_not_be_read() {
    use crossterm::event::KeyCode;
    let mut model = team();
    model.problems_of[1] = vec!["task: `t-1.json` is broken".into()];
    model.problems_of[2] = vec!["lock: `db` is broken".into()];
    let mut view = View::new(false);
    assert!(screen(&model, &view, 80, 24, now()).contains(" ! 2 problems (p lists them): task: "));
    press(&mut view, &model, KeyCode::Char('p'));
    let detail = view.detail.clone().unwrap();
    assert!(
        detail.contains("t-1.json") && detail.contains("`db`"),
        "{detail}"
    );
}
