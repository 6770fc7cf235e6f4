use std::time::Duration;

use serde_json::json;

use super::*;

fn workspace() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::init(dir.path()).unwrap().workspace;
    (dir, ws)
}

fn channel(ws: &Workspace, name: &str) -> Channel {
    Channel::open(ws, ChannelName::new(name).unwrap())
}

#[test]
fn messages_come_back_in_order_with_readable_names() {
    let (_dir, ws) = workspace();
    let ch = channel(&ws, "general");
    for i in 0..5 {
        let m = ch.send("alice", Draft::new(json!(i))).unwrap();
        assert_eq!(m.seq, i + 1);
    }
    let batch = ch.read_after(0, None).unwrap();
    let seqs: Vec<u64> = batch.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(batch.cursor, 5);
    assert_eq!(batch.messages[2].payload, json!(2));

    let later = ch.read_after(3, Some(1)).unwrap();
    assert_eq!(later.messages.len(), 1);
    assert_eq!(later.messages[0].seq, 4);
    assert_eq!(later.cursor, 4);

    let names = crate::fs::list_names(&ch.dir().join("000000")).unwrap();
    assert!(names.iter().all(|n| n.len() == "0000000001.json".len()));
    assert_eq!(ch.last_seq().unwrap(), 5);
}

#[test]
fn a_counter_rewound_by_hand_never_reuses_a_number() {
    let (_dir, ws) = workspace();
    let ch = channel(&ws, "rewound");
    for i in 0..5 {
        ch.send("a", Draft::new(json!(i))).unwrap();
    }
    // A lost write, or a hand edit: the counter says 2 while messages 3..5 exist.
    std::fs::write(ch.dir().join(".seq"), "2\n").unwrap();
    assert_eq!(ch.send("a", Draft::new(json!("next"))).unwrap().seq, 6);
    // Written in another boot: the next number comes after the reserve kept on disk.
    std::fs::write(ch.dir().join(".seq"), "6 1006 another-boot\n").unwrap();
    assert_eq!(
        ch.send("a", Draft::new(json!("after reboot"))).unwrap().seq,
        1007
    );
    let batch = ch.read_after(0, None).unwrap();
    let seqs: Vec<u64> = batch.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 1007]);
    assert!(batch.skipped.is_empty(), "{:?}", batch.skipped);
}

#[test]
fn segments_roll_over_and_reads_start_in_the_right_one() {
    let (_dir, ws) = workspace();
    let ch = channel(&ws, "busy");
    for i in 0..(SEGMENT_LEN + 5) {
        ch.send("a", Draft::new(json!(i))).unwrap();
    }
    assert!(ch.dir().join("000001").is_dir());
    let batch = ch.read_after(SEGMENT_LEN - 2, None).unwrap();
    let seqs: Vec<u64> = batch.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (SEGMENT_LEN - 1..=SEGMENT_LEN + 5).collect::<Vec<_>>()
    );
    assert_eq!(ch.count().unwrap(), SEGMENT_LEN + 5);
}

#[test]
fn a_corrupt_message_is_reported_and_the_rest_still_read() {
    let (_dir, ws) = workspace();
    let ch = channel(&ws, "general");
    for i in 0..3 {
        ch.send("a", Draft::new(json!(i))).unwrap();
    }
    let batch = ch.read_after(0, None).unwrap();
    let second = crate::fs::list_names(&ch.dir().join("000000"))
        .unwrap()
        .into_iter()
        .find(|n| n.starts_with("0000000002"))
        .unwrap();
    std::fs::write(ch.dir().join("000000").join(&second), "{\"id\": oops").unwrap();
    let again = ch.read_after(0, None).unwrap();
    assert_eq!(again.messages.len(), 2);
    assert_eq!(again.cursor, 3);
    let err = again.skipped[0].to_string();
    assert!(
        err.contains(&second) && err.contains("line 1, column"),
        "{err}"
    );
    assert_eq!(again.messages[1], batch.messages[2]);
}

#[test]
fn a_lost_seq_file_is_rebuilt_from_the_messages() {
    let (_dir, ws) = workspace();
    let ch = channel(&ws, "general");
    for _ in 0..3 {
        ch.send("a", Draft::new(json!(null))).unwrap();
    }
    std::fs::remove_file(ch.dir().join(SEQ_FILE)).unwrap();
    // The handle that still has the deleted file open notices and locks the new one.
    assert_eq!(ch.send("a", Draft::new(json!(null))).unwrap().seq, 4);
    std::fs::remove_file(ch.dir().join(SEQ_FILE)).unwrap();
    let fresh = channel(&ws, "general");
    assert_eq!(fresh.send("a", Draft::new(json!(null))).unwrap().seq, 5);
    assert_eq!(ch.send("a", Draft::new(json!(null))).unwrap().seq, 6);
    std::fs::write(ch.dir().join(SEQ_FILE), "garbage, not a number").unwrap();
    let fresh = channel(&ws, "general");
    assert_eq!(fresh.send("a", Draft::new(json!(null))).unwrap().seq, 7);
}

#[test]
fn recipients_decide_who_a_message_is_for() {
    let (_dir, ws) = workspace();
    let ch = channel(&ws, "team");
    ch.send("lead", Draft::new(json!("all"))).unwrap();
    ch.send("lead", Draft::new(json!("bob")).to("bob")).unwrap();
    ch.send("lead", Draft::new(json!("group")).to("bob").to("carol"))
        .unwrap();
    ch.send("lead", Draft::new(json!("reviewers")).to_role("reviewer"))
        .unwrap();
    let batch = ch.read_after(0, None).unwrap();
    let for_who = |agent: &str, roles: &[String]| -> Vec<serde_json::Value> {
        batch
            .messages
            .iter()
            .filter(|m| m.is_for(agent, roles))
            .map(|m| m.payload.clone())
            .collect()
    };
    assert_eq!(
        for_who("bob", &[]),
        [json!("all"), json!("bob"), json!("group")]
    );
    assert_eq!(for_who("carol", &[]), [json!("all"), json!("group")]);
    assert_eq!(
        for_who("dave", &["reviewer".to_owned()]),
        [json!("all"), json!("reviewers")]
    );
    let err = ch
        .send("lead", Draft::new(json!(1)).to("../evil"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn broadcasts_reach_the_topic_and_the_global_notices() {
    let (_dir, ws) = workspace();
    let (msg, notice) = broadcast(&ws, "deploy", "ops", Draft::new(json!({"v": 2}))).unwrap();
    assert_eq!(msg.channel, "broadcast/deploy");
    assert_eq!(notice.channel, "broadcast/all");
    assert_eq!(notice.payload, json!({"v": 2}));
    assert_eq!(notice.metadata["topic"], json!("deploy"));
    assert!(broadcast(&ws, "all", "ops", Draft::new(json!(1))).is_err());
    assert!(ChannelName::new("broadcast").is_err());
    let names: Vec<String> = list_channels(&ws)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["broadcast/all", "broadcast/deploy"]);
}

#[test]
fn cursors_are_saved_per_reader_and_channel() {
    let (_dir, ws) = workspace();
    let ch = channel(&ws, "general");
    let mut cursor = ch.cursor("bob").unwrap();
    assert_eq!(cursor.seq, 0);
    cursor.save(7).unwrap();
    assert_eq!(ch.cursor("bob").unwrap().seq, 7);
    assert_eq!(ch.cursor("alice").unwrap().seq, 0);
    let topic = Channel::open(&ws, ChannelName::topic("deploy").unwrap());
    topic.cursor("bob").unwrap().save(3).unwrap();
    assert_eq!(topic.cursor("bob").unwrap().seq, 3);
}

fn watcher_wakes(options: WatchOptions, expected: WakeSource) {
    let (_dir, ws) = workspace();
    let ch = channel(&ws, "live");
    let mut watcher = ch.watch(0, options).unwrap();
    assert_eq!(watcher.wake_source(), expected);
    assert!(
        watcher
            .next_batch(Some(Duration::from_millis(20)))
            .unwrap()
            .is_none()
    );
    let sender = {
        let ws = ws.clone();
        std::thread::spawn(move || {
            for i in 0..(SEGMENT_LEN + 3) {
                channel(&ws, "live")
                    .send("a", Draft::new(json!(i)))
                    .unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < (SEGMENT_LEN + 3) as usize {
        let batch = watcher
            .next_batch(Some(Duration::from_secs(30)))
            .unwrap()
            .unwrap();
        seen.extend(batch.messages.into_iter().map(|m| m.seq));
    }
    sender.join().unwrap();
    assert_eq!(seen, (1..=SEGMENT_LEN + 3).collect::<Vec<_>>());
    assert_eq!(
        watcher.wake_source(),
        expected,
        "the watcher changed how it wakes"
    );
}

#[test]
fn watcher_wakes_through_notify_across_segments() {
    watcher_wakes(
        // Neither the safety rescan nor polling can wake it within the test: only events.
        WatchOptions {
            rescan_interval: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(3600),
            ..WatchOptions::default()
        },
        WakeSource::Notify,
    );
}

#[test]
fn watcher_falls_back_to_polling() {
    watcher_wakes(
        WatchOptions {
            use_notify: false,
            poll_interval: Duration::from_millis(5),
            ..WatchOptions::default()
        },
        WakeSource::Poll,
    );
}

#[test]
fn a_subscription_resumes_after_the_last_handled_batch() {
    let (_dir, ws) = workspace();
    let topic = Channel::open(&ws, ChannelName::topic("builds").unwrap());
    topic.send("ci", Draft::new(json!(1))).unwrap();
    topic.send("ci", Draft::new(json!(2))).unwrap();
    let quick = Some(Duration::from_millis(10));
    let mut sub = subscribe_topic(&ws, "builds", "bob", WatchOptions::default()).unwrap();
    let first = sub.next_batch(quick).unwrap().unwrap();
    assert_eq!(first.cursor, 2);
    // Not yet committed: a restart would see the batch again (at least once).
    assert_eq!(topic.cursor("bob").unwrap().seq, 0);
    assert!(sub.next_batch(quick).unwrap().is_none());
    assert_eq!(topic.cursor("bob").unwrap().seq, 2);
    drop(sub);
    topic.send("ci", Draft::new(json!(3))).unwrap();
    let mut again = subscribe_topic(&ws, "builds", "bob", WatchOptions::default()).unwrap();
    let batch = again.next_batch(quick).unwrap().unwrap();
    assert_eq!(batch.messages.len(), 1);
    assert_eq!(batch.messages[0].payload, json!(3));
}

#[test]
fn the_end_never_passes_a_number_taken_but_not_yet_published() {
    let (_dir, ws) = workspace();
    let ch = channel(&ws, "inflight");
    ch.send("a", Draft::new(json!(1))).unwrap();
    let taken = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // A sender between taking seq 2 and publishing it.
            let lock = FileLock::acquire(&ch.seq_path(), ch.ws.kernel_lock_wait()).unwrap();
            let seq = lock.next_counter(|| Ok(0), false).unwrap();
            taken.wait();
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut message = Draft::new(json!(2)).into_message(&ch.name, "a").unwrap();
            message.seq = seq;
            std::fs::write(
                ch.segment_dir(0).join(file_name(seq)),
                crate::record::encode(&message),
            )
            .unwrap();
        });
        taken.wait();
        let end = ch.end().unwrap();
        let visible = ch.read_after(0, None).unwrap();
        assert_eq!(
            visible.cursor, end,
            "the end was taken past a message not yet visible"
        );
    });
}
