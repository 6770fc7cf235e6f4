use super::*;
use serde_json::json;

fn ws() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::init(dir.path()).expect("init").workspace;
    (dir, ws)
}

fn lines(ws: &Workspace) -> Vec<String> {
    let path = segment_path(&dir(ws), 1);
    String::from_utf8(fs::read(&path).expect("segment"))
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(ws: &Workspace, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(segment_path(&dir(ws), 1), text).expect("write");
}

#[test]
fn entries_chain_and_verify() {
    let (_d, ws) = ws();
    for i in 0..5 {
        let n = append(&ws, &Event::new("test.event").subject(format!("s{i}"))).expect("append");
        assert_eq!(n, Some(i + 1));
    }
    let report = verify(&ws).expect("verify");
    assert_eq!(report.entries, 5);
    assert!(report.problem.is_none(), "{:?}", report.problem);
    let (entries, _) = read_from(&ws, Cursor::default(), &Filter::default()).expect("read");
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].prev, GENESIS);
    assert_eq!(entries[1].prev, entries[0].hash);
    assert_eq!(head(&ws).expect("head").expect("some").n, 5);
}

#[test]
fn verify_names_an_edit_a_deletion_a_swap_and_a_cut() {
    let (_d, ws) = ws();
    for i in 0..6 {
        append(&ws, &Event::new("test.event").data(json!({"i": i}))).expect("append");
    }
    let good = lines(&ws);
    let problem = |ls: Vec<String>| {
        write_lines(&ws, &ls);
        let p = verify(&ws).expect("verify").problem.expect("a problem");
        write_lines(&ws, &good);
        p
    };
    let mut edited = good.clone();
    edited[2] = edited[2].replace("\"i\":2", "\"i\":9");
    let p = problem(edited);
    assert_eq!((p.n, p.line), (3, 3), "{p:?}");
    assert!(p.what.contains("edited"), "{p:?}");

    let mut deleted = good.clone();
    deleted.remove(3);
    let p = problem(deleted);
    assert_eq!((p.n, p.line), (4, 4), "{p:?}");
    assert!(p.what.contains("missing"), "{p:?}");

    let mut swapped = good.clone();
    swapped.swap(1, 2);
    let p = problem(swapped);
    assert_eq!(p.n, 2, "{p:?}");

    let mut cut = good.clone();
    cut.truncate(4);
    let p = problem(cut);
    assert_eq!(p.n, 5, "{p:?}");
    assert!(p.what.contains("cut off"), "{p:?}");
    assert!(verify(&ws).expect("verify").problem.is_none());
}

/// A workspace whose journal segments close at 600 bytes (two entries or so).
fn small_segments() -> (tempfile::TempDir, Workspace) {
    let (dir_, ws) = ws();
    let mut config = ws.config().clone();
    config.journal_segment_bytes = Some(600);
    std::fs::write(
        ws.dir().join("maos.json"),
        serde_json::to_vec(&config).expect("json"),
    )
    .expect("config");
    let ws = Workspace::open(dir_.path()).expect("open");
    (dir_, ws)
}

#[test]
fn segments_roll_over_and_the_chain_continues() {
    let (_dir, ws) = small_segments();
    for _ in 0..10 {
        append(&ws, &Event::new("test.event").agent("a")).expect("append");
    }
    assert!(segments(&dir(&ws)).expect("segments").len() > 2);
    let report = verify(&ws).expect("verify");
    assert_eq!(report.entries, 10);
    assert!(report.problem.is_none(), "{:?}", report.problem);
}

#[test]
fn kinds_match_globs() {
    assert!(kind_matches_any("task.*", "task.completed"));
    assert!(kind_matches_any("*", "lock.stolen"));
    assert!(kind_matches_any("lock.stolen", "lock.stolen"));
    assert!(!kind_matches_any("lock.stolen", "lock.stolenx"));
    assert!(!kind_matches_any("task.*", "lock.acquired"));
    assert!(kind_matches_any("*.failed", "hook.failed"));
}

fn kind_matches_any(pattern: &str, kind: &str) -> bool {
    read::kind_matches(pattern, kind)
}

#[test]
fn pruned_segments_are_archived_and_the_chain_is_verified_from_the_base() {
    let (_dir, ws) = small_segments();
    for _ in 0..12 {
        append(&ws, &Event::new("test.event").agent("a")).expect("append");
    }
    let before = segments(&dir(&ws)).expect("segments").len();
    assert!(before > 3, "{before} segments");
    let pruned = prune(&ws, Keep::Segments(2)).expect("prune");
    assert_eq!(pruned.archives.len(), before - 2);
    assert!(pruned.archives.iter().all(|a| a.exists()));
    // Two kept, and perhaps a new one begun by the prune's own entry.
    assert!(segments(&dir(&ws)).expect("segments").len() <= 3);
    let report = verify(&ws).expect("verify");
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!(report.first, pruned.upto + 1);
    assert_eq!(report.entries, 13);
    let (entries, _) = read_from(&ws, Cursor::default(), &Filter::default()).expect("read");
    assert_eq!(entries.first().map(|e| e.n), Some(pruned.upto + 1));
    // Removing a kept segment is still caught.
    let (_, oldest) = segments(&dir(&ws)).expect("segments").remove(0);
    std::fs::remove_file(oldest).expect("remove");
    let problem = verify(&ws).expect("verify").problem.expect("a problem");
    assert!(
        problem.what.contains("missing") || problem.what.contains("cut off"),
        "{problem:?}"
    );
    // Pruning by age: everything before the current segment.
    let (_dir2, ws) = small_segments();
    for _ in 0..8 {
        append(&ws, &Event::new("test.event")).expect("append");
    }
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let pruned = prune(&ws, Keep::Since(later)).expect("prune");
    assert!(!pruned.archives.is_empty());
    assert!(segments(&dir(&ws)).expect("segments").len() <= 2);
    assert!(verify(&ws).expect("verify").problem.is_none());
}

#[test]
fn bytes_that_are_not_text_are_named_not_a_panic() {
    let (_d, ws) = ws();
    for _ in 0..3 {
        append(&ws, &Event::new("test.event")).expect("append");
    }
    let path = segment_path(&dir(&ws), 1);
    let good = std::fs::read(&path).expect("read");
    // A tail of bytes that are not text after the last entry: decoded lossily it is three
    // times longer than the file. Past the head, it is a write in progress, not damage.
    let mut tail = good.clone();
    tail.extend_from_slice(&[0xff; 2000]);
    std::fs::write(&path, &tail).expect("write");
    let report = verify(&ws).expect("verify");
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!(report.entries, 3);
    // Inside an entry, it is named.
    let mut inside = good;
    let second = inside.iter().position(|&b| b == b'\n').expect("a line") + 5;
    inside[second] = 0xff;
    std::fs::write(&path, inside).expect("write");
    let problem = verify(&ws).expect("verify").problem.expect("a problem");
    assert_eq!((problem.n, problem.line), (2, 2), "{problem:?}");
}

#[test]
fn a_journal_copied_line_for_line_verifies_to_the_same_hash_and_goes_on() {
    let (_a, from) = small_segments();
    for i in 0..30 {
        append(&from, &Event::new("test.event").subject(format!("s{i}"))).expect("append");
    }
    prune(&from, Keep::Segments(2)).expect("prune");
    let source = verify(&from).expect("verify");
    assert!(source.first > 1, "something was pruned");
    let (base, copied) = super::lines(&from).expect("lines");
    assert_eq!(copied.len() as u64, source.entries + 1 - source.first);

    let (_b, to) = ws();
    adopt(&to, base.as_ref(), &copied).expect("adopt");
    let target = verify(&to).expect("verify");
    assert!(target.problem.is_none(), "{:?}", target.problem);
    assert_eq!(
        (target.first, target.entries, &target.last_hash),
        (source.first, source.entries, &source.last_hash)
    );
    let next = append(&to, &Event::new("test.after")).expect("append");
    assert_eq!(next, Some(source.entries + 1), "numbering goes on");
    assert!(verify(&to).expect("verify").problem.is_none());
}
