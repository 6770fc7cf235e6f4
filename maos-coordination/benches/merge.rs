//! Merge benchmark: `prepare` and `forecast` on a generated repository with 10,000 files
//! and 1,000 commits on each of 8 agent branches. Baseline in the same run: git's own
//! in-memory merge, `git merge-tree --write-tree` (git ≥ 2.38), for the same pairs.
//!
//! Run: `cargo bench -p maos-coordination --bench merge` (`-- --quick`: 100 commits per
//! branch).
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

mod common;

use common::{bench_dir, measure, print_header};
use git2::{Repository, Signature, Tree};
use maos_coordination::Workspace;
use maos_coordination::merge::MergeCoordinator;

const DIRS: usize = 100;
const FILES_PER_DIR: usize = 100;
const BRANCHES: usize = 8;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let commits = if quick { 100 } else { 1_000 };
    let dir = bench_dir();
    print_header("merge", quick, dir.path());
    let root = dir.path().join("repo");
    let repo = Repository::init(&root).unwrap();
    let started = std::time::Instant::now();
    generate(&repo, commits);
    println!(
        "generated: {} files, {BRANCHES} branches × {commits} commits, in {:.1}s\n",
        DIRS * FILES_PER_DIR,
        started.elapsed().as_secs_f64()
    );
    let ws = Workspace::init(&root).unwrap().workspace;
    let merge = MergeCoordinator::open(&ws).unwrap();
    let git_version = Command::new("git").arg("--version").output().ok();
    let merge_tree = |a: &str, b: &str| {
        Command::new("git")
            .args(["merge-tree", "--write-tree", "--name-only", a, b])
            .current_dir(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.code() == Some(0) || s.code() == Some(1))
            .unwrap_or(false)
    };
    let has_merge_tree = git_version.is_some() && merge_tree("maos/agent-0/work", "main");
    let baseline = has_merge_tree.then(|| {
        let stats = measure(20, |_| {
            assert!(merge_tree("maos/agent-0/work", "maos/agent-1/work"));
        });
        stats.print("baseline: git merge-tree, one pair", None);
        stats
    });
    if !has_merge_tree {
        println!("(git merge-tree --write-tree unavailable: no baseline)");
    }
    let prepare_clean = measure(20, |_| {
        let prep = merge.prepare("maos/agent-0/work", "main").unwrap();
        assert_eq!(prep.strategy.as_str(), "clean_merge");
    });
    prepare_clean.print("prepare, clean pair (agent-0 → main)", baseline.as_ref());
    let prepare_conflict = measure(20, |_| {
        let prep = merge
            .prepare("maos/agent-0/work", "maos/agent-1/work")
            .unwrap();
        assert_eq!(prep.strategy.as_str(), "needs_resolution");
    });
    prepare_conflict.print(
        "prepare, conflicting pair (agent-0 → agent-1)",
        baseline.as_ref(),
    );
    let baseline_all = has_merge_tree.then(|| {
        let stats = measure(5, |_| {
            for i in 0..BRANCHES {
                for j in i + 1..BRANCHES {
                    assert!(merge_tree(&branch(i), &branch(j)));
                }
            }
        });
        stats.print("baseline: git merge-tree, all 28 pairs", None);
        stats
    });
    let forecast = measure(5, |_| {
        let result = merge.forecast(&[], "bench").unwrap();
        assert_eq!(result.branches.len(), BRANCHES);
        assert_eq!(result.conflicts.len(), BRANCHES / 2);
    });
    forecast.print("forecast, 8 branches (28 pairs)", baseline_all.as_ref());
    println!("\nratio: this row's p50 over its baseline's p50.");
    common::report_peak_memory();
}

fn branch(i: usize) -> String {
    format!("maos/agent-{i}/work")
}

/// `main` with 10,000 files in 100 folders, then 8 branches of `commits` commits each.
/// Branches 2k and 2k+1 both edit file `k` of folder 0 (a conflict); otherwise each branch
/// edits its own folder. `main` gets a commit of its own in folder 99.
fn generate(repo: &Repository, commits: usize) {
    let sig = Signature::now("planner", "planner@example.invalid").unwrap();
    let mut root = repo.treebuilder(None).unwrap();
    for d in 0..DIRS {
        let mut sub = repo.treebuilder(None).unwrap();
        for f in 0..FILES_PER_DIR {
            let blob = repo.blob(content(d, f, "base").as_bytes()).unwrap();
            sub.insert(format!("f{f:03}.txt"), blob, 0o100644).unwrap();
        }
        root.insert(format!("d{d:03}"), sub.write().unwrap(), 0o040000)
            .unwrap();
    }
    let tree = repo.find_tree(root.write().unwrap()).unwrap();
    let base = repo
        .commit(Some("refs/heads/main"), &sig, &sig, "base", &tree, &[])
        .unwrap();
    for b in 0..BRANCHES {
        let agent = Signature::now(&format!("agent-{b}"), "agent@example.invalid").unwrap();
        let mut parent = repo.find_commit(base).unwrap();
        for c in 0..commits {
            let (d, f) = if c == 0 {
                (0, b / 2)
            } else {
                (1 + b, c % FILES_PER_DIR)
            };
            let tree = with_file(
                repo,
                &parent.tree().unwrap(),
                d,
                f,
                &format!("agent-{b} commit {c}"),
            );
            let id = repo
                .commit(
                    None,
                    &agent,
                    &agent,
                    &format!("agent-{b} {c}"),
                    &tree,
                    &[&parent],
                )
                .unwrap();
            parent = repo.find_commit(id).unwrap();
        }
        repo.branch(&branch(b), &parent, true).unwrap();
    }
    let main = repo.find_commit(base).unwrap();
    let tree = with_file(repo, &main.tree().unwrap(), 99, 0, "main's own change");
    repo.commit(Some("refs/heads/main"), &sig, &sig, "main", &tree, &[&main])
        .unwrap();
}

fn content(d: usize, f: usize, tag: &str) -> String {
    (0..20)
        .map(|l| format!("folder {d} file {f} line {l} {tag}\n"))
        .collect()
}

/// `tree` with file `f` of folder `d` rewritten (line 10 carries `tag`).
fn with_file<'r>(repo: &'r Repository, tree: &Tree<'_>, d: usize, f: usize, tag: &str) -> Tree<'r> {
    let folder = format!("d{d:03}");
    let sub_id = tree.get_name(&folder).unwrap().id();
    let sub = repo.find_tree(sub_id).unwrap();
    let mut sub_builder = repo.treebuilder(Some(&sub)).unwrap();
    let text: String = (0..20)
        .map(|l| {
            if l == 10 {
                format!("{tag}\n")
            } else {
                format!("folder {d} file {f} line {l} base\n")
            }
        })
        .collect();
    let blob = repo.blob(text.as_bytes()).unwrap();
    sub_builder
        .insert(format!("f{f:03}.txt"), blob, 0o100644)
        .unwrap();
    let mut root = repo.treebuilder(Some(tree)).unwrap();
    root.insert(folder, sub_builder.write().unwrap(), 0o040000)
        .unwrap();
    repo.find_tree(root.write().unwrap()).unwrap()
}
