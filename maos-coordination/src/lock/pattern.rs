//! Reservation patterns: gitignore-style globs over repository paths, what they match, and
//! whether two of them can match one path.
//!
//! A pattern is relative to the repository root. As in `.gitignore`: a glob without a `/`
//! matches at any depth (`*.rs` is `**/*.rs`); a leading `/` anchors it at the root (and is
//! dropped); a trailing `/` means everything under the folder. Unlike `.gitignore`, a plain
//! name (`docs`, `docs/`, `Makefile`) is the one at the root: reserving `docs/` means the
//! repository's `docs` folder, not every folder of that name.
//! A pattern whose last segment is literal or `**` covers everything under what it matches
//! (`src/db` covers `src/db/pool.rs`); one ending in a glob segment matches at that depth only
//! (`*.rs` is files named so, `src/db/*` the entries of `src/db`) — unlike `.gitignore`, so
//! that `*.rs` and `*.md` never collide over a folder named `x.rs`. `*`, `?` and `[…]` stay
//! within one path segment; `**` as a whole segment crosses any number of them. Negation
//! (`!`) and `{a,b}` are refused.
//!
//! **Overlap** of two patterns is decided per segment: literal segments are compared exactly,
//! a literal against a glob by matching it, two globs by their fixed prefix and suffix (and a
//! few witnesses tried on both). When two glob segments are neither told apart nor shown to
//! share a name, the answer is [`Overlap::Unsure`] — which callers treat as overlapping.

use globset::{GlobBuilder, GlobMatcher};

/// A validated, normalized reservation pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    segments: Vec<String>,
    /// Whether everything under a match is covered too (last segment literal or `**`).
    covers_tree: bool,
    /// Every segment literal: matched by comparing strings, no glob compiled.
    literal: bool,
    /// The compiled glob, made on first use (compiling costs far more than checking: a
    /// hook that checks one path against a thousand patterns compiles only the few whose
    /// literal start fits it). `None` only if it cannot be built, which `new` rules out.
    matcher: std::sync::OnceLock<Option<GlobMatcher>>,
}

/// Whether two patterns can match one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Overlap {
    /// They cannot.
    No,
    /// Neither proven nor ruled out: treated as overlapping.
    Unsure,
    /// Some path matches both.
    Yes,
}

/// A pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// Why it was refused.
    pub reason: String,
}

const MAX_PATTERN_LEN: usize = 255;

/// The pattern that covers exactly the file (or folder) `path` — a literal repository path,
/// whatever its name holds: each of `[`, `]`, `*`, `?`, `{`, `}`, `,` and `\\` is put in a
/// class of its own (`app/[id]/page.tsx` → `/app/[[]id[]]/page.tsx`), and it is anchored at
/// the root. What an editor's automatic lease reserves. (A last name with such characters
/// covers that name only, not what is under a folder of that name.)
pub fn literal(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    for c in path.trim_start_matches('/').chars() {
        match c {
            ']' => out.push_str("[]]"),
            '[' | '*' | '?' | '{' | '}' | ',' | '\\' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

impl Pattern {
    /// Parses and normalizes a pattern (see the module docs).
    pub fn new(given: &str) -> Result<Self, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: given.to_owned(),
            reason: reason.to_owned(),
        };
        if given.is_empty() || given.len() > MAX_PATTERN_LEN {
            return Err(err("it must be 1–255 bytes"));
        }
        if given.starts_with('!') {
            return Err(err(
                "negation (`!`) is not supported: reserve what you mean",
            ));
        }
        // `{`, `}`, `,` and `\\` only inside a `[...]` class, where they stand for themselves
        // (how [`literal`] writes a file name that has them).
        let mut in_class = false;
        for c in given.chars() {
            match c {
                '[' if !in_class => in_class = true,
                ']' if in_class => in_class = false,
                c if c.is_control() || (!in_class && matches!(c, '\\' | '{' | '}' | ',')) => {
                    return Err(err(&format!(
                        "{c:?} is not allowed (use `*`, `?`, `[...]` and `**`)"
                    )));
                }
                _ => {}
            }
        }
        let anchored = given.starts_with('/');
        let body = given.trim_start_matches('/');
        let folder = body.ends_with('/');
        let body = body.trim_end_matches('/');
        if body.is_empty() {
            return Err(err("it names no path"));
        }
        let mut segments: Vec<String> = body.split('/').map(str::to_owned).collect();
        for segment in &segments {
            if segment.is_empty() {
                return Err(err("it has an empty segment (`//`)"));
            }
            if segment == "." || segment == ".." {
                return Err(err(
                    "`.` and `..` are not allowed: patterns are relative to the repository root",
                ));
            }
            if segment.contains("**") && segment != "**" {
                return Err(err("`**` must be a whole segment (`src/**/x.rs`)"));
            }
        }
        if !anchored && segments.len() == 1 && is_glob(&segments[0]) && segments[0] != "**" {
            segments.insert(0, "**".into());
        }
        if folder {
            segments.push("**".into());
        }
        segments.dedup_by(|a, b| a == "**" && b == "**");
        let text = segments.join("/");
        let literal = segments.iter().all(|s| s != "**" && !is_glob(s));
        if !literal {
            // Parsed now, so that a bad glob is refused here; compiled when first matched.
            glob(&text).map_err(|e| err(&e.kind().to_string()))?;
        }
        let covers_tree = segments
            .last()
            .is_some_and(|last| last == "**" || !is_glob(last));
        Ok(Self {
            text,
            segments,
            covers_tree,
            literal,
            matcher: std::sync::OnceLock::new(),
        })
    }

    fn is_match(&self, path: &str) -> bool {
        self.matcher
            .get_or_init(|| glob(&self.text).ok().map(|g| g.compile_matcher()))
            .as_ref()
            .is_some_and(|m| m.is_match(path))
    }

    /// The normalized pattern (`*.rs` → `**/*.rs`, `src/db/` → `src/db/**`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern covers `path` (a `/`-separated repository path): it matches the
    /// path, or (see the module docs) a folder above it. Never a resource that is no path.
    pub fn matches(&self, path: &str) -> bool {
        if !is_path(path) {
            return false;
        }
        if self.literal {
            return path
                .strip_prefix(self.text.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        }
        // The literal segments the pattern starts with must start the path.
        let mut names = path.split('/');
        for segment in self
            .segments
            .iter()
            .take_while(|s| *s != "**" && !is_glob(s))
        {
            if names.next() != Some(segment.as_str()) {
                return false;
            }
        }
        if !self.covers_tree {
            return self.is_match(path);
        }
        let mut prefix = path;
        loop {
            if self.is_match(prefix) {
                return true;
            }
            match prefix.rfind('/') {
                Some(at) => prefix = &prefix[..at],
                None => return false,
            }
        }
    }

    /// Whether the two patterns may overlap, judged from their literal starts alone (no
    /// glob compiled): `false` only when, before either reaches a glob or `**`, a segment
    /// differs. A cheap first sieve before [`overlap`](Self::overlap).
    pub fn may_overlap(&self, other: &Pattern) -> bool {
        for (a, b) in self.segments.iter().zip(&other.segments) {
            let literal = |s: &String| s != "**" && !is_glob(s);
            if !(literal(a) && literal(b)) {
                return true;
            }
            if a != b {
                return false;
            }
        }
        true
    }

    /// Whether some path is covered by both patterns.
    pub fn overlap(&self, other: &Pattern) -> Overlap {
        let mut memo = vec![vec![None; other.segments.len() + 1]; self.segments.len() + 1];
        overlap_from(
            (&self.segments, self.covers_tree),
            (&other.segments, other.covers_tree),
            0,
            0,
            &mut memo,
        )
    }
}

/// Whether a lock resource is a repository path a pattern may cover: resources starting
/// with `@` (the merge lock) are names of MAOS's own, never paths.
pub fn is_path(resource: &str) -> bool {
    !resource.starts_with('@')
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Overlap of `a[i..]` and `b[j..]` (each with whether it covers the tree under a match).
/// When one runs out first, the other's longer paths lie under its match: an overlap if it
/// covers that tree, or if all the other has left is `**` (which matches nothing more).
fn overlap_from(
    (a, a_tree): (&[String], bool),
    (b, b_tree): (&[String], bool),
    i: usize,
    j: usize,
    memo: &mut Vec<Vec<Option<Overlap>>>,
) -> Overlap {
    if let Some(known) = memo[i][j] {
        return known;
    }
    let only_stars = |rest: &[String]| rest.iter().all(|s| s == "**");
    let (a2, b2) = ((a, a_tree), (b, b_tree));
    let result = if i == a.len() || j == b.len() {
        let fits = (i == a.len() && (a_tree || only_stars(&b[j..])))
            || (j == b.len() && (b_tree || only_stars(&a[i..])));
        if fits { Overlap::Yes } else { Overlap::No }
    } else if a[i] == "**" {
        overlap_from(a2, b2, i + 1, j, memo).max(overlap_from(a2, b2, i, j + 1, memo))
    } else if b[j] == "**" {
        overlap_from(a2, b2, i, j + 1, memo).max(overlap_from(a2, b2, i + 1, j, memo))
    } else {
        match segment_overlap(&a[i], &b[j]) {
            Overlap::No => Overlap::No,
            first => first.min(overlap_from(a2, b2, i + 1, j + 1, memo)),
        }
    };
    memo[i][j] = Some(result);
    result
}

fn is_glob(segment: &str) -> bool {
    segment.contains(['*', '?', '['])
}

/// The glob of a normalized pattern or segment, as MAOS reads globs (`*` stays within a
/// segment, `\\` is no escape).
fn glob(text: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(false)
        .build()
}

fn segment_matches(pattern: &str, name: &str) -> bool {
    glob(pattern).is_ok_and(|g| g.compile_matcher().is_match(name))
}

/// Whether one segment name can match both segment patterns.
fn segment_overlap(a: &str, b: &str) -> Overlap {
    match (is_glob(a), is_glob(b)) {
        (false, false) => {
            if a == b {
                Overlap::Yes
            } else {
                Overlap::No
            }
        }
        (true, false) => matches_or_not(a, b),
        (false, true) => matches_or_not(b, a),
        (true, true) => {
            let (pa, sa) = fixed_ends(a);
            let (pb, sb) = fixed_ends(b);
            if !(pa.starts_with(pb) || pb.starts_with(pa))
                || !(sa.ends_with(sb) || sb.ends_with(sa))
            {
                return Overlap::No;
            }
            let (p, s) = (longer(pa, pb), longer(sa, sb));
            let witnesses = [
                format!("{p}{s}"),
                format!("{p}x{s}"),
                format!("{pa}{pb}{sa}{sb}"),
                format!("{p}{sa}{sb}"),
            ];
            if witnesses
                .iter()
                .any(|w| segment_matches(a, w) && segment_matches(b, w))
            {
                Overlap::Yes
            } else {
                Overlap::Unsure
            }
        }
    }
}

fn matches_or_not(glob: &str, name: &str) -> Overlap {
    if segment_matches(glob, name) {
        Overlap::Yes
    } else {
        Overlap::No
    }
}

/// The literal text before the first and after the last wildcard of a glob segment.
fn fixed_ends(glob: &str) -> (&str, &str) {
    let first = glob.find(['*', '?', '[']).unwrap_or(glob.len());
    let last = glob.rfind(['*', '?', ']']).map_or(glob.len(), |i| i + 1);
    (&glob[..first], &glob[last.max(first)..])
}

fn longer<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.len() >= b.len() { a } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any valid file name, as a literal pattern, covers that file and no other.
    #[test]
    fn a_literal_path_covers_itself_and_nothing_else() {
        for (path, other) in [
            ("app/[id]/page.tsx", "app/i/page.tsx"),
            ("app/[...slug]/page.tsx", "app/s/page.tsx"),
            ("src/a,b.rs", "src/a.rs"),
            ("src/{x}.rs", "src/x.rs"),
            ("src/!bang.rs", "src/bang.rs"),
            ("!top.rs", "top.rs"),
            ("src/a*b?.rs", "src/axxbz.rs"),
            ("docs/my notes/é ü.md", "docs/my notes/e u.md"),
            ("src/back\\slash.rs", "src/backslash.rs"),
            ("x]y.rs", "xy.rs"),
            ("Makefile", "sub/Makefile"),
        ] {
            let p = Pattern::new(&literal(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(p.matches(path), "{path} by {}", p.as_str());
            assert!(!p.matches(other), "{other} by {} ({path})", p.as_str());
        }
    }
    use proptest::prelude::*;

    fn p(text: &str) -> Pattern {
        Pattern::new(text).unwrap()
    }

    #[test]
    fn normalizes_like_gitignore() {
        assert_eq!(p("*.rs").as_str(), "**/*.rs");
        assert_eq!(p("/Cargo.toml").as_str(), "Cargo.toml");
        assert_eq!(p("src/db/").as_str(), "src/db/**");
        assert_eq!(p("docs/").as_str(), "docs/**");
        assert_eq!(p("Makefile").as_str(), "Makefile");
        assert_eq!(p("src/**/**/x.rs").as_str(), "src/**/x.rs");
        assert_eq!(p("src/db/a.rs").as_str(), "src/db/a.rs");
    }

    #[test]
    fn refuses_what_it_cannot_mean() {
        for bad in [
            "", "!src", "../x", "a//b", "a/./b", "src/a**", "{a,b}", "a\\b", "/",
        ] {
            assert!(Pattern::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn matches_paths_and_everything_under_folders() {
        assert!(p("src/db/**").matches("src/db/pool.rs"));
        assert!(p("src/db").matches("src/db/pool.rs"));
        assert!(p("src/db/*").matches("src/db/pool.rs"));
        assert!(!p("src/db/*").matches("src/db/sub/x.rs"));
        assert!(!p("*.rs").matches("a.rs/b.md"));
        assert!(!p("src/db/*").matches("src/dbx/pool.rs"));
        assert!(p("*.rs").matches("deep/in/it.rs"));
        assert!(!p("src/*.rs").matches("src/db/pool.rs"));
        assert!(p("src/db/pool.rs").matches("src/db/pool.rs"));
        assert!(!p("src/db/pool.rs").matches("src/db/pool.rs.bak"));
        assert!(p("**").matches("anything/at/all"));
        assert!(
            !p("**").matches("@merge"),
            "no pattern covers the merge lock"
        );
    }

    #[test]
    fn overlap_is_decided_per_segment() {
        let cases = [
            ("src/**", "src/db/*", Overlap::Yes),
            ("src/db/*", "src/db/a.rs", Overlap::Yes),
            ("src/**", "src/db/a.rs", Overlap::Yes),
            ("src/db/*", "src/web/*", Overlap::No),
            ("*.rs", "*.md", Overlap::No),
            ("src/db/*", "src/db/sub/x.rs", Overlap::No),
            ("src/db", "src/db/sub/x.rs", Overlap::Yes),
            ("*.rs", "src/a.rs", Overlap::Yes),
            ("src/*.rs", "src/a*", Overlap::Yes),
            ("src/a.rs", "src/b.rs", Overlap::No),
            ("docs", "docs/guide.md", Overlap::Yes),
            ("src/[ab].rs", "src/[cd].rs", Overlap::Unsure),
            ("src/x*y", "src/z*w", Overlap::No),
        ];
        for (a, b, want) in cases {
            assert_eq!(p(a).overlap(&p(b)), want, "{a} vs {b}");
            assert_eq!(p(b).overlap(&p(a)), want, "{b} vs {a}");
        }
    }

    proptest! {
        /// Soundness: whenever a path is covered by both patterns, overlap never says No.
        #[test]
        fn overlap_never_misses_a_shared_path(
            a in "(src|docs|[a-c*?]{1,3})(/(db|web|\\*|\\*\\*|[a-c]\\*|\\*\\.rs|a\\.rs)){0,3}",
            b in "(src|docs|[a-c*?]{1,3})(/(db|web|\\*|\\*\\*|[a-c]\\*|\\*\\.rs|a\\.rs)){0,3}",
            path in "(src|docs|a|b|c|ab)(/(db|web|a|b\\.rs|a\\.rs|c\\.md)){0,4}",
        ) {
            if let (Ok(a), Ok(b)) = (Pattern::new(&a), Pattern::new(&b))
                && a.matches(&path) && b.matches(&path)
            {
                prop_assert_ne!(a.overlap(&b), Overlap::No, "{} and {} both cover {}", a, b, path);
            }
        }
    }
}
