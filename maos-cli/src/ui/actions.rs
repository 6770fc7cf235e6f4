//! What a person can do from the dashboard — send a message, reassign or cancel a task, break
//! a lock or reservation, run `doctor --fix` — each asked for (text where it needs some),
//! confirmed, then done through the same library calls as the CLI, as the acting agent.

use maos_coordination::Workspace;
use maos_coordination::channel::{Channel, ChannelName, Draft};
use maos_coordination::doctor;
use maos_coordination::lock::{Locks, Reservations};
use maos_coordination::task::{Edit, Status, Tasks};

/// An action, ready to be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        channel: String,
        text: String,
        /// The message it answers (it joins that message's thread).
        reply_to: Option<u64>,
    },
    Reassign {
        task: String,
        to: String,
    },
    Cancel {
        task: String,
    },
    Break {
        resource: String,
        reservation: bool,
        reason: String,
    },
    Doctor,
}

/// What an action still needs: text typed into the footer, then a yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Text for `then`, typed so far.
    Text { then: Wanting, input: String },
    /// A yes (`y`) or no for the action.
    Confirm(Action),
}

/// The action that text is typed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanting {
    Message {
        channel: String,
        reply_to: Option<u64>,
    },
    Assignee {
        task: String,
    },
    Reason {
        resource: String,
        reservation: bool,
    },
}

impl Wanting {
    /// What the footer asks.
    pub fn label(&self) -> String {
        match self {
            Wanting::Message {
                channel,
                reply_to: None,
            } => format!("message to {channel}"),
            Wanting::Message {
                channel,
                reply_to: Some(seq),
            } => format!("reply to #{seq} in {channel}"),
            Wanting::Assignee { task } => format!("reassign {task} to agent"),
            Wanting::Reason { resource, .. } => format!("why break {resource}"),
        }
    }

    /// The action with `text` given.
    pub fn with(self, text: String) -> Action {
        match self {
            Wanting::Message { channel, reply_to } => Action::Send {
                channel,
                text,
                reply_to,
            },
            Wanting::Assignee { task } => Action::Reassign { task, to: text },
            Wanting::Reason {
                resource,
                reservation,
            } => Action::Break {
                resource,
                reservation,
                reason: text,
            },
        }
    }
}

impl Action {
    /// The question that confirms it.
    pub fn question(&self) -> String {
        match self {
            Action::Send {
                channel,
                text,
                reply_to: None,
            } => format!("send \"{text}\" to {channel}?"),
            Action::Send {
                channel,
                text,
                reply_to: Some(seq),
            } => format!("reply \"{text}\" to #{seq} in {channel}?"),
            Action::Reassign { task, to } => format!("reassign {task} to {to}?"),
            Action::Cancel { task } => format!("cancel {task}?"),
            Action::Break {
                resource, reason, ..
            } => format!("break {resource} (\"{reason}\")? its holder loses it"),
            Action::Doctor => {
                "run doctor --fix (quarantine broken files, clear stale ones)?".to_owned()
            }
        }
    }

    /// Does it as `me`: what happened, in a line (or, for doctor, its report).
    pub fn run(&self, ws: &Workspace, me: &str) -> String {
        self.done(ws, me)
            .unwrap_or_else(|e| format!("error: {e:#}"))
    }

    fn done(&self, ws: &Workspace, me: &str) -> anyhow::Result<String> {
        Ok(match self {
            Action::Send {
                channel,
                text,
                reply_to,
            } => {
                let payload =
                    serde_json::from_str(text).unwrap_or(serde_json::Value::String(text.clone()));
                let draft = match reply_to {
                    Some(seq) => Draft::new(payload).reply_to(*seq),
                    None => Draft::new(payload),
                };
                let sent = Channel::open(ws, ChannelName::new(channel)?).send(me, draft)?;
                format!("sent #{} to {channel}", sent.seq)
            }
            Action::Reassign { task, to } => {
                let edit = Edit {
                    assignee: Some(Some(to.clone())),
                    note: Some(format!("reassigned from the dashboard by {me}")),
                    ..Edit::default()
                };
                Tasks::new(ws).update(task, me, edit)?;
                format!("{task} assigned to {to}")
            }
            Action::Cancel { task } => {
                let note = Some(format!("cancelled from the dashboard by {me}"));
                Tasks::new(ws).set_status(task, me, Status::Cancelled, note)?;
                format!("{task} cancelled")
            }
            Action::Break {
                resource,
                reservation: false,
                reason,
            } => {
                let broken = Locks::new(ws).break_lock(resource, me, reason)?;
                format!("broke {resource} (held by {})", broken.owner)
            }
            Action::Break {
                resource,
                reservation: true,
                reason,
            } => {
                let broken =
                    Reservations::new(ws).break_reservations(resource, None, me, reason)?;
                format!("broke {} reservation(s) of {resource}", broken.len())
            }
            Action::Doctor => {
                let problems = doctor::check(ws)?;
                let repairs = doctor::fix(ws, &problems)?;
                let mut report = format!("doctor: {} problem(s)\n", problems.len());
                for repair in repairs {
                    report.push_str(&format!("{}: {}\n", repair.path.display(), repair.action));
                }
                report
            }
        })
    }
}
