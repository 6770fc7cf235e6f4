use super::*;

fn workspace() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::init(dir.path()).unwrap().workspace;
    (dir, ws)
}

fn add(tasks: &Tasks, title: &str, deps: &[&str]) -> Task {
    let mut new = NewTask::new(title);
    new.dependencies = deps.iter().map(|d| d.to_string()).collect();
    tasks.create("planner", new, None).unwrap()
}

fn finish(tasks: &Tasks, id: &str) -> StatusChange {
    tasks.claim("worker", Pick::Named(id)).unwrap();
    tasks
        .set_status(id, "worker", Status::Completed, None)
        .unwrap()
}

#[test]
fn a_diamond_unblocks_exactly_when_both_sides_are_done() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let a = add(&tasks, "a", &[]);
    let b = add(&tasks, "b", &[&a.id]);
    let c = add(&tasks, "c", &[&a.id]);
    let d = add(&tasks, "d", &[&b.id, &c.id]);
    assert_eq!(
        (a.status, b.status, d.status),
        (Status::Pending, Status::Blocked, Status::Blocked)
    );
    let done = finish(&tasks, &a.id);
    let mut unblocked: Vec<_> = done.unblocked.iter().map(|t| t.id.clone()).collect();
    unblocked.sort();
    let mut expected = vec![b.id.clone(), c.id.clone()];
    expected.sort();
    assert_eq!(unblocked, expected);
    assert!(done.notice_error.is_none());
    assert!(finish(&tasks, &b.id).unblocked.is_empty());
    assert_eq!(tasks.get(&d.id).unwrap().status, Status::Blocked);
    let done = finish(&tasks, &c.id);
    assert_eq!(done.unblocked.len(), 1);
    assert_eq!(done.unblocked[0].id, d.id);
    let d = tasks.get(&d.id).unwrap();
    assert_eq!(d.status, Status::Pending);
    assert_eq!(d.history.last().unwrap().by, "worker");
    // The notices went out on the tasks channel.
    let notices = Channel::open(&ws, ChannelName::new(CHANNEL).unwrap())
        .read_after(0, None)
        .unwrap();
    assert_eq!(notices.messages.len(), 3);
}

#[test]
fn a_failed_dependency_keeps_dependents_blocked_and_says_why() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let a = add(&tasks, "a", &[]);
    let b = add(&tasks, "b", &[&a.id]);
    tasks.claim("worker", Pick::Named(&a.id)).unwrap();
    tasks
        .set_status(&a.id, "worker", Status::Failed, Some("flaky".into()))
        .unwrap();
    let b = tasks.get(&b.id).unwrap();
    assert_eq!(b.status, Status::Blocked);
    let why = describe_blockers(&tasks.blockers(&b));
    assert!(why.contains(&format!("{} (failed)", a.id)), "{why}");
    let err = tasks
        .set_status(&b.id, "worker", Status::Pending, None)
        .unwrap_err();
    assert!(err.to_string().contains("(failed)"), "{err}");
}

#[test]
fn claiming_is_exclusive_and_names_the_holder() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let a = add(&tasks, "a", &[]);
    let claimed = tasks.claim("ann", Pick::Named(&a.id)).unwrap();
    assert_eq!(
        (
            claimed.status,
            claimed.assignee.as_deref(),
            claimed.attempts
        ),
        (Status::InProgress, Some("ann"), 1)
    );
    let err = tasks.claim("bob", Pick::Named(&a.id)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string().contains("already claimed by `ann`"),
        "{err}"
    );
    assert!(matches!(
        tasks.claim("bob", Pick::best()),
        Err(TaskError::NothingReady { .. })
    ));
    // Only the holder moves it on.
    let err = tasks
        .set_status(&a.id, "bob", Status::Completed, None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let err = tasks
        .set_status(&a.id, "ann", Status::Blocked, None)
        .map(|_| ())
        .and_then(|_| {
            tasks
                .set_status(&a.id, "ann", Status::Completed, None)
                .map(|_| ())
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("may go to pending, cancelled"),
        "{err}"
    );
}

#[test]
fn the_ready_queue_is_best_first_and_claims_honour_roles_and_assignees() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let low = tasks
        .create(
            "p",
            NewTask {
                priority: Priority::Low,
                ..NewTask::new("low")
            },
            None,
        )
        .unwrap();
    let high = tasks
        .create(
            "p",
            NewTask {
                priority: Priority::High,
                ..NewTask::new("high")
            },
            None,
        )
        .unwrap();
    let old_medium = add(&tasks, "medium, old", &[]);
    let new_medium = add(&tasks, "medium, new", &[]);
    let review = tasks
        .create(
            "p",
            NewTask {
                role: Some("reviewer".into()),
                priority: Priority::Critical,
                ..NewTask::new("review")
            },
            None,
        )
        .unwrap();
    let theirs = tasks
        .create(
            "p",
            NewTask {
                assignee: Some("carol".into()),
                priority: Priority::Critical,
                ..NewTask::new("carol's")
            },
            None,
        )
        .unwrap();
    let ids: Vec<_> = tasks
        .ready()
        .unwrap()
        .tasks
        .into_iter()
        .map(|t| t.id().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            review.id.clone(),
            theirs.id.clone(),
            high.id.clone(),
            old_medium.id.clone(),
            new_medium.id.clone(),
            low.id.clone()
        ]
    );
    assert_eq!(tasks.claim("dan", Pick::best()).unwrap().id, high.id);
    assert_eq!(
        tasks
            .claim(
                "dan",
                Pick::Best {
                    role: Some("reviewer"),
                    capabilities: &[]
                }
            )
            .unwrap()
            .id,
        review.id
    );
    assert_eq!(tasks.claim("carol", Pick::best()).unwrap().id, theirs.id);
    let err = tasks.claim("dan", Pick::Named(&theirs.id)).unwrap_err();
    assert!(err.to_string().contains("claimed by `carol`"), "{err}");
}

#[test]
fn cycles_are_refused_and_named() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let a = add(&tasks, "a", &[]);
    let b = add(&tasks, "b", &[&a.id]);
    let c = add(&tasks, "c", &[&b.id]);
    let edit = Edit {
        add_deps: vec![c.id.clone()],
        ..Edit::default()
    };
    let err = tasks.update(&a.id, "p", edit).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "dependency cycle: {} → {} → {} → {}",
            a.id, c.id, b.id, a.id
        )
    );
    assert_eq!(tasks.get(&a.id).unwrap().version, 1, "nothing was written");
    let err = tasks
        .create(
            "p",
            NewTask {
                dependencies: vec!["x".into()],
                ..NewTask::new("x")
            },
            Some("x"),
        )
        .unwrap_err();
    assert!(matches!(err, TaskError::Cycle { .. }));
    let err = tasks
        .create(
            "p",
            NewTask {
                dependencies: vec!["nope".into()],
                ..NewTask::new("y")
            },
            None,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn updates_are_recorded_and_a_hand_edit_in_between_is_not_overwritten() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let a = add(&tasks, "a", &[]);
    let b = add(&tasks, "b", &[]);
    let edit = Edit {
        title: Some("a, renamed".into()),
        priority: Some(Priority::High),
        add_tags: vec!["db".into()],
        add_deps: vec![b.id.clone()],
        note: Some("scope grew".into()),
        ..Edit::default()
    };
    let a = tasks.update(&a.id, "ann", edit).unwrap();
    assert_eq!(
        a.status,
        Status::Blocked,
        "a new unfinished dependency blocks it"
    );
    let fields: Vec<_> = a.history.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "created",
            "title",
            "priority",
            "tags",
            "dependencies",
            "status"
        ]
    );
    assert_eq!(a.version, 2);
    // A stale writer is refused.
    let mut stale = a.clone();
    stale.version = 1;
    assert!(matches!(
        tasks.transact(|tx| tx.save(&mut stale)),
        Err(TaskError::Stale {
            read: 1,
            found: 2,
            ..
        })
    ));
}

#[test]
fn broken_records_are_named_and_the_rest_still_listed() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let a = add(&tasks, "a", &[]);
    std::fs::write(tasks.path("t-bad001"), "{ \"id\": ").unwrap();
    let mut wrong_status = serde_json::to_value(&a).unwrap();
    wrong_status["id"] = "t-bad002".into();
    wrong_status["status"] = "done".into();
    std::fs::write(tasks.path("t-bad002"), wrong_status.to_string()).unwrap();
    let mut missing = serde_json::to_value(&a).unwrap();
    missing["id"] = "t-bad003".into();
    missing.as_object_mut().unwrap().remove("title");
    std::fs::write(tasks.path("t-bad003"), missing.to_string()).unwrap();
    let listing = tasks.list().unwrap();
    assert_eq!(listing.tasks.len(), 1);
    let problems: Vec<String> = listing.skipped.iter().map(|e| e.to_string()).collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].contains("t-bad001.json") && problems[0].contains("line 1"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("unknown variant `done`"),
        "{problems:?}"
    );
    assert!(
        problems[2].contains("missing field `title`"),
        "{problems:?}"
    );
    assert_eq!(tasks.ready().unwrap().tasks.len(), 1);
}

mod machine {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Claim(usize, usize),
        Set(usize, usize, Status),
        /// Claim and complete: what drives chains of dependencies to their end.
        Finish(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => (0..3usize, 0..6usize).prop_map(|(a, t)| Op::Claim(a, t)),
            1 => (
                0..3usize,
                0..6usize,
                proptest::sample::select(Status::ALL.to_vec())
            )
                .prop_map(|(a, t, s)| Op::Set(a, t, s)),
            4 => (0..3usize, 0..6usize).prop_map(|(a, t)| Op::Finish(a, t)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Random claims, status changes and completions by three agents on a small
        /// dependency graph: every recorded change is an allowed one and continues from the
        /// previous status; a task never starts (or is pending) before all its dependencies
        /// are completed; a refused operation writes nothing; and both halves of T3 — a
        /// completion moves every dependent whose dependencies are now all completed from
        /// blocked to pending in the same operation, and leaves the others blocked.
        #[test]
        fn random_operations_keep_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
            let (_dir, ws) = workspace();
            let tasks = Tasks::new(&ws).with_durability(Durability::Buffered);
            let agents = ["ann", "bob", "cy"];
            let a = add(&tasks, "a", &[]);
            let b = add(&tasks, "b", &[&a.id]);
            let c = add(&tasks, "c", &[&a.id]);
            let d = add(&tasks, "d", &[&b.id, &c.id]);
            let e = add(&tasks, "e", &[]);
            let f = add(&tasks, "f", &[&e.id, &d.id]);
            let ids = [a.id, b.id, c.id, d.id, e.id, f.id];
            for op in ops {
                let before = tasks.list().unwrap().tasks;
                let result = match op {
                    Op::Claim(who, t) => tasks.claim(agents[who], Pick::Named(&ids[t])).map(|_| None),
                    Op::Set(who, t, to) => tasks.set_status(&ids[t], agents[who], to, None).map(|c| Some(c.unblocked)),
                    Op::Finish(who, t) => tasks
                        .claim(agents[who], Pick::Named(&ids[t]))
                        .and_then(|claimed| tasks.set_status_as_claimed(&claimed, agents[who], Status::Completed, None))
                        .map(|c| Some(c.unblocked)),
                };
                let after = tasks.list().unwrap().tasks;
                if result.is_err() && !matches!(op, Op::Finish(..)) {
                    prop_assert_eq!(&before, &after, "a refused {:?} changed something", op);
                }
                let status: HashMap<&str, Status> = after.iter().map(|t| (t.id.as_str(), t.status)).collect();
                let was: HashMap<&str, &Task> = before.iter().map(|t| (t.id.as_str(), t)).collect();
                // T3: what a completion did to the dependents.
                let completed_now: Vec<&str> = after
                    .iter()
                    .filter(|t| t.status == Status::Completed && was[t.id.as_str()].status != Status::Completed)
                    .map(|t| t.id.as_str())
                    .collect();
                if let Some(done) = completed_now.first() {
                    let unblocked: Vec<String> = match &result {
                        Ok(Some(list)) => list.iter().map(|t| t.id.clone()).collect(),
                        _ => Vec::new(),
                    };
                    for dependent in after.iter().filter(|t| t.dependencies.iter().any(|d| d == done)) {
                        let all_done = dependent.dependencies.iter().all(|d| status[d.as_str()] == Status::Completed);
                        let waited = was[dependent.id.as_str()].status == Status::Blocked
                            && was[dependent.id.as_str()].blocked_reason.is_none();
                        if waited && all_done {
                            prop_assert_eq!(dependent.status, Status::Pending, "{} not unblocked by {}", dependent.id, done);
                            prop_assert!(unblocked.contains(&dependent.id), "{} not reported unblocked", dependent.id);
                        } else if waited {
                            prop_assert_eq!(dependent.status, Status::Blocked, "{} unblocked too early", dependent.id);
                        }
                    }
                }
                for task in &after {
                    let mut current: Option<Status> = None;
                    for change in task.history.iter().filter(|c| c.field == "status" || c.field == "created") {
                        let to: Status = change.to.as_str().unwrap().parse().unwrap();
                        if let Some(from) = current {
                            prop_assert_eq!(change.from.as_str().unwrap(), from.as_str());
                            prop_assert!(from.can_become(to), "{} went {} → {}", task.id, from, to);
                        }
                        current = Some(to);
                    }
                    prop_assert_eq!(current, Some(task.status));
                    if matches!(task.status, Status::Pending | Status::InProgress | Status::Review | Status::Completed) {
                        for dep in &task.dependencies {
                            prop_assert_eq!(status[dep.as_str()], Status::Completed, "{} is {} before {}", task.id, task.status, dep);
                        }
                    }
                    if task.status.is_held() {
                        prop_assert!(task.assignee.is_some());
                    }
                }
            }
        }
    }

    /// The strategy above does reach the end of the chains: a plan of finishes in dependency
    /// order completes every task, and each completion readies exactly its dependents.
    #[test]
    fn finishing_in_order_completes_every_chain() {
        let (_dir, ws) = workspace();
        let tasks = Tasks::new(&ws).with_durability(Durability::Buffered);
        let a = add(&tasks, "a", &[]);
        let b = add(&tasks, "b", &[&a.id]);
        let c = add(&tasks, "c", &[&a.id]);
        let d = add(&tasks, "d", &[&b.id, &c.id]);
        let mut unblocked_by = Vec::new();
        for id in [&a.id, &b.id, &c.id, &d.id] {
            let claimed = tasks.claim("ann", Pick::Named(id)).unwrap();
            let change = tasks
                .set_status_as_claimed(&claimed, "ann", Status::Completed, None)
                .unwrap();
            let mut ids: Vec<String> = change.unblocked.into_iter().map(|t| t.id).collect();
            ids.sort();
            unblocked_by.push(ids);
        }
        let mut bc = vec![b.id.clone(), c.id.clone()];
        bc.sort();
        assert_eq!(unblocked_by, [bc, vec![], vec![d.id.clone()], vec![]]);
        assert!(
            tasks
                .list()
                .unwrap()
                .tasks
                .iter()
                .all(|t| t.status == Status::Completed)
        );
    }
}

#[test]
fn a_dependent_left_blocked_by_a_crash_is_repaired_by_the_queue() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let a = add(&tasks, "a", &[]);
    let b = add(&tasks, "b", &[&a.id]);
    finish(&tasks, &a.id);
    // As if the completing process died before unblocking: b is blocked again on disk.
    let mut stuck = tasks.get(&b.id).unwrap();
    stuck.status = Status::Blocked;
    stuck.version += 1;
    std::fs::write(tasks.path(&b.id), crate::record::encode(&stuck)).unwrap();
    assert!(
        !tasks.idle("ann", None, &[]).unwrap(),
        "a stuck task is work left"
    );
    let ready: Vec<_> = tasks
        .ready()
        .unwrap()
        .tasks
        .into_iter()
        .map(|t| t.id().to_owned())
        .collect();
    assert_eq!(ready, std::slice::from_ref(&b.id));
    let repaired = tasks.get(&b.id).unwrap();
    assert_eq!(repaired.status, Status::Pending);
    assert!(
        repaired
            .history
            .last()
            .unwrap()
            .note
            .as_deref()
            .unwrap()
            .contains("repaired")
    );
}

#[test]
fn a_claim_whose_task_was_failed_meanwhile_is_lost_not_an_invalid_transition() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let a = add(&tasks, "a", &[]);
    let claimed = tasks.claim("ann", Pick::Named(&a.id)).unwrap();
    // Failed under the claim (as recovery does when the attempts are used up while the
    // claimant is paused): nothing else of the claim changed.
    tasks
        .set_status(&a.id, "ann", Status::Failed, Some("gave up".into()))
        .unwrap();
    assert!(matches!(
        tasks.set_status_as_claimed(&claimed, "ann", Status::Completed, None),
        Err(TaskError::ClaimLost { .. })
    ));
    assert_eq!(tasks.get(&a.id).unwrap().status, Status::Failed);
}

/// A dependency completed between an import's check and its write (a concurrent `task
/// done`) is seen under the lock: the imported task is ready, not left `blocked` with its
/// dependency done.
#[test]
fn an_import_decides_what_waits_under_the_lock() {
    let (_dir, ws) = workspace();
    let tasks = Tasks::new(&ws);
    let a = add(&tasks, "a", &[]);
    let plan = tasks
        .plan_import(
            "planner",
            &format!(r#"{{"id":"b","title":"b","dependencies":["{}"]}}"#, a.id),
        )
        .unwrap();
    assert_eq!(plan.tasks[0].1.status, Status::Blocked);
    finish(&tasks, &a.id);
    let imported = tasks.import(plan).unwrap();
    assert_eq!(imported[0].status, Status::Pending);
    assert!(tasks.ready().unwrap().tasks.iter().any(|t| t.id() == "b"));
}
