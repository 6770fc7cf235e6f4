//! The task state machine: the statuses and which changes between them are allowed.
//!
//! ```text
//! pending ──► in_progress ──► review ──► completed
//!    │  ▲         │  ▲  │        │
//!    ▼  │         │  └──┼────────┘ (changes requested)
//! blocked ◄───────┤     ▼
//!                 └──► failed ──► pending (retry)
//! any unfinished status ──► cancelled
//! ```
//!
//! `completed` and `cancelled` are final. A task whose dependencies are not all completed is
//! `blocked`; it becomes `pending` when the last one completes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ready to be claimed (every dependency completed).
    Pending,
    /// Waiting for dependencies, or blocked by hand with a reason.
    Blocked,
    /// Claimed and being worked on by its assignee.
    InProgress,
    /// Done by its assignee, waiting for review.
    Review,
    /// Finished.
    Completed,
    /// Given up on; may be retried.
    Failed,
    /// Will not be done.
    Cancelled,
}

impl Status {
    /// Every status, in life order.
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Blocked,
        Status::InProgress,
        Status::Review,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The name used on disk and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Blocked => "blocked",
            Status::InProgress => "in_progress",
            Status::Review => "review",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// The statuses this one may change to.
    pub fn allowed_next(self) -> &'static [Status] {
        use Status::*;
        match self {
            Pending => &[InProgress, Blocked, Cancelled],
            Blocked => &[Pending, Cancelled],
            InProgress => &[Review, Completed, Failed, Blocked, Pending, Cancelled],
            Review => &[Completed, InProgress, Failed, Cancelled],
            Failed => &[Pending, Cancelled],
            Completed | Cancelled => &[],
        }
    }

    /// Whether a task in this status may change to `to`.
    pub fn can_become(self, to: Status) -> bool {
        self.allowed_next().contains(&to)
    }

    /// Completed or cancelled: nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Cancelled)
    }

    /// Held by its assignee: in progress or in review.
    pub fn is_held(self) -> bool {
        matches!(self, Status::InProgress | Status::Review)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of the seven.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown status `{0}`: expected pending, blocked, in_progress, review, completed, failed or cancelled"
)]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| {
                status.as_str() == s || (s == "in-progress" && *status == Status::InProgress)
            })
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn status() -> impl Strategy<Value = Status> {
        proptest::sample::select(Status::ALL.to_vec())
    }

    proptest! {
        /// Any sequence of allowed changes: a final status is never left, nothing changes to
        /// itself, and every status can still reach a final one.
        #[test]
        fn walks_follow_the_machine(start in status(), picks in proptest::collection::vec(0usize..8, 0..40)) {
            let mut current = start;
            for pick in picks {
                let next = current.allowed_next();
                if current.is_final() {
                    prop_assert!(next.is_empty());
                    break;
                }
                prop_assert!(!next.contains(&current));
                prop_assert!(next.contains(&Status::Cancelled), "{current} cannot be cancelled");
                current = next[pick % next.len()];
            }
        }

        #[test]
        fn names_round_trip(s in status()) {
            prop_assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn completion_needs_the_work_to_have_started() {
        assert!(!Status::Pending.can_become(Status::Completed));
        assert!(!Status::Blocked.can_become(Status::InProgress));
        assert!(Status::InProgress.can_become(Status::Completed));
        assert!(Status::Review.can_become(Status::Completed));
        assert!(Status::Failed.can_become(Status::Pending));
        assert!(!Status::Completed.can_become(Status::Pending));
        assert!("done".parse::<Status>().is_err());
    }
}
