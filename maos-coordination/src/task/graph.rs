//! The dependency graph of tasks: cycle checks and the critical path.
//!
//! Edges go from a task to each of its dependencies. The functions take the graph as a map
//! from task id to dependency ids, so they work on any set of records (including hand-edited
//! ones with dangling or cyclic references, which they survive).

use std::collections::{HashMap, HashSet};

/// Task id → ids of its dependencies.
pub type DepGraph = HashMap<String, Vec<String>>;

/// If giving `task` the dependencies `new_deps` would close a cycle, the cycle as a path
/// `task → … → task`; `None` when it stays acyclic.
pub fn cycle_through(graph: &DepGraph, task: &str, new_deps: &[String]) -> Option<Vec<String>> {
    for dep in new_deps {
        if dep == task {
            return Some(vec![task.to_owned(), task.to_owned()]);
        }
        // Depth-first from the dependency, looking for a way back to `task`.
        let mut stack: Vec<(String, usize)> = vec![(dep.clone(), 0)];
        let mut path = vec![dep.clone()];
        let mut seen = HashSet::from([dep.clone()]);
        while let Some((node, next)) = stack.last_mut() {
            let deps = graph.get(node.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            match deps.get(*next) {
                Some(child) => {
                    *next += 1;
                    if child == task {
                        let mut cycle = vec![task.to_owned()];
                        cycle.extend(path.iter().cloned());
                        cycle.push(task.to_owned());
                        return Some(cycle);
                    }
                    if seen.insert(child.clone()) {
                        path.push(child.clone());
                        stack.push((child.clone(), 0));
                    }
                }
                None => {
                    stack.pop();
                    path.pop();
                }
            }
        }
    }
    None
}

/// The longest chain of unfinished tasks linked by dependencies, first task first: the work
/// that bounds how soon everything can be done. `unfinished`: each unfinished task's id
/// and dependencies (dependencies on any other task do not count).
pub fn critical_path<'a, D: IntoIterator<Item = &'a str>>(
    unfinished: impl IntoIterator<Item = (&'a str, D)>,
) -> Vec<String> {
    // Tasks are numbered in id order; dependencies among them kept as numbers, all in one
    // list (`deps[starts[i]..starts[i + 1]]` are task i's).
    let mut tasks: Vec<(&str, D)> = unfinished.into_iter().collect();
    tasks.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let ids: Vec<&str> = tasks.iter().map(|(id, _)| *id).collect();
    let number: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut starts = Vec::with_capacity(ids.len() + 1);
    let mut deps = Vec::new();
    for (_, task_deps) in tasks {
        starts.push(deps.len());
        deps.extend(task_deps.into_iter().filter_map(|d| number.get(d).copied()));
    }
    starts.push(deps.len());
    let deps_of = |i: usize| deps.get(starts[i]..starts[i + 1]).unwrap_or_default();
    // Longest chain ending at each task, memoized; a task on the current stack (a cycle in
    // hand-edited data) counts as a chain of zero so the walk always ends.
    let mut best: Vec<Option<(usize, Option<usize>)>> = vec![None; ids.len()];
    let mut on_stack = vec![false; ids.len()];
    let mut stack: Vec<(usize, bool)> = Vec::new();
    for start in 0..ids.len() {
        stack.push((start, false));
        while let Some((i, expanded)) = stack.pop() {
            if best[i].is_some() {
                continue;
            }
            if expanded {
                on_stack[i] = false;
                // The longest chain below; on a tie, the dependency first in id order.
                let pick = deps_of(i)
                    .iter()
                    .filter_map(|&d| best[d].map(|(len, _)| (len, d)))
                    .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                best[i] = Some(match pick {
                    Some((len, dep)) => (len + 1, Some(dep)),
                    None => (1, None),
                });
            } else {
                on_stack[i] = true;
                stack.push((i, true));
                for &d in deps_of(i) {
                    if best[d].is_none() && !on_stack[d] {
                        stack.push((d, false));
                    }
                }
            }
        }
    }
    // The longest chain's last task (on a tie, the first in id order), then back along it.
    let Some(end) = (0..ids.len())
        .filter_map(|i| Some((best[i]?.0, i)))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, i)| i)
    else {
        return Vec::new();
    };
    let mut on_chain = vec![false; ids.len()];
    let mut chain = Vec::new();
    let mut at = Some(end);
    while let Some(i) = at.filter(|i| !on_chain[*i]) {
        on_chain[i] = true;
        chain.push(ids[i].to_owned());
        at = best[i].and_then(|(_, dep)| dep);
    }
    chain.reverse();
    chain
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The critical path through the tasks of `g` named in `unfinished`.
    fn path_of(g: &DepGraph, unfinished: &HashSet<&str>) -> Vec<String> {
        critical_path(
            g.iter()
                .filter(|(id, _)| unfinished.contains(id.as_str()))
                .map(|(id, deps)| (id.as_str(), deps.iter().map(String::as_str))),
        )
    }

    fn graph(edges: &[(&str, &[&str])]) -> DepGraph {
        edges
            .iter()
            .map(|(id, deps)| (id.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_cycle_is_named_from_the_task_back_to_itself() {
        let g = graph(&[("a", &[]), ("b", &["a"]), ("c", &["b"])]);
        assert_eq!(
            cycle_through(&g, "a", &["c".into()]).unwrap(),
            ["a", "c", "b", "a"]
        );
        assert_eq!(cycle_through(&g, "a", &["a".into()]).unwrap(), ["a", "a"]);
        assert!(cycle_through(&g, "c", &["a".into()]).is_none());
        assert!(cycle_through(&g, "new", &["c".into(), "missing".into()]).is_none());
    }

    #[test]
    fn the_critical_path_is_the_longest_unfinished_chain() {
        // a ← b ← c ← e, a ← d ← e; x alone. `a` is done.
        let g = graph(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("d", &["a"]),
            ("e", &["c", "d"]),
            ("x", &[]),
        ]);
        let unfinished: HashSet<&str> = ["b", "c", "d", "e", "x"].into();
        assert_eq!(path_of(&g, &unfinished), ["b", "c", "e"]);
        assert!(path_of(&g, &HashSet::new()).is_empty());
        // A hand-made cycle does not hang it.
        let g = graph(&[("p", &["q"]), ("q", &["p"])]);
        let path = path_of(&g, &["p", "q"].into());
        assert!(!path.is_empty() && path.len() <= 2);
    }

    /// Random DAGs (edges only from higher to lower index) never report a cycle for an edge
    /// that keeps them acyclic, and always report one for an edge that closes one.
    fn dag() -> impl Strategy<Value = DepGraph> {
        (2usize..25).prop_flat_map(|n| {
            proptest::collection::vec(
                proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
                n,
            )
            .prop_map(move |picks| {
                picks
                    .into_iter()
                    .enumerate()
                    .map(|(i, deps)| {
                        let deps = if i == 0 {
                            Vec::new()
                        } else {
                            deps.into_iter()
                                .map(|d| format!("t{}", d.index(i)))
                                .collect()
                        };
                        (format!("t{i}"), deps)
                    })
                    .collect()
            })
        })
    }

    fn reaches(g: &DepGraph, from: &str, to: &str) -> bool {
        let mut stack = vec![from.to_owned()];
        let mut seen = HashSet::new();
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n.clone()) {
                stack.extend(g.get(&n).into_iter().flatten().cloned());
            }
        }
        false
    }

    proptest! {
        #[test]
        fn cycle_check_agrees_with_reachability(g in dag(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
            let n = g.len();
            let (task, dep) = (format!("t{}", a.index(n)), format!("t{}", b.index(n)));
            let found = cycle_through(&g, &task, std::slice::from_ref(&dep));
            prop_assert_eq!(found.is_some(), reaches(&g, &dep, &task));
            if let Some(cycle) = found {
                prop_assert_eq!(cycle.first(), Some(&task));
                prop_assert_eq!(cycle.last(), Some(&task));
                // Every step of the reported cycle is a real edge (or the new one).
                for pair in cycle.windows(2) {
                    let edge = g[&pair[0]].contains(&pair[1]) || (pair[0] == task && pair[1] == dep);
                    prop_assert!(edge, "{:?} is not an edge", pair);
                }
            }
        }

        #[test]
        fn the_critical_path_is_a_real_chain_and_no_chain_is_longer(g in dag()) {
            let unfinished: HashSet<&str> = g.keys().map(String::as_str).collect();
            let path = path_of(&g, &unfinished);
            for pair in path.windows(2) {
                prop_assert!(g[&pair[1]].contains(&pair[0]), "{:?} is not a dependency link", pair);
            }
            // Longest chain by brute force (DAG, small): depth of each node.
            fn depth(g: &DepGraph, id: &str, memo: &mut HashMap<String, usize>) -> usize {
                if let Some(&d) = memo.get(id) {
                    return d;
                }
                let d = 1 + g[id].iter().map(|d| depth(g, d, memo)).max().unwrap_or(0);
                memo.insert(id.to_owned(), d);
                d
            }
            let mut memo = HashMap::new();
            let longest = g.keys().map(|k| depth(&g, k, &mut memo)).max().unwrap_or(0);
            prop_assert_eq!(path.len(), longest);
        }
    }
}
