//! Who can receive a message: the agents that ever joined (the registry, whatever their
//! state) or are named as a task's assignee, and the roles some agent that has not left
//! holds. A message addressed to anyone else would be written where no one ever reads it.

use std::collections::{BTreeMap, BTreeSet};

use super::{ChannelError, Recipients};
use crate::agents::{AgentStatus, Registry};
use crate::name::{self, NameKind};
use crate::task::Tasks;
use crate::workspace::Workspace;

/// The agents and roles of a workspace, as they are now.
#[derive(Debug, Clone, Default)]
pub struct Known {
    agents: BTreeSet<String>,
    /// The agents that have not left.
    present: BTreeSet<String>,
    /// Role → the agents holding it that have not left.
    holders: BTreeMap<String, BTreeSet<String>>,
}

impl Known {
    /// Reads the registry (broken agent records are left out).
    pub fn of(ws: &Workspace) -> Result<Self, ChannelError> {
        let (records, _) = Registry::new(ws).list()?;
        let mut known = Known::default();
        for record in records {
            if record.status != AgentStatus::Gone {
                if let Some(role) = &record.role {
                    known
                        .holders
                        .entry(role.clone())
                        .or_default()
                        .insert(record.id.clone());
                }
                known.present.insert(record.id.clone());
            }
            known.agents.insert(record.id);
        }
        Ok(known)
    }

    /// Refuses recipients no one would read: an agent that never joined and is no task's
    /// assignee, a role no agent holds. Tasks are looked at only for agents the registry
    /// does not know.
    pub fn check(&self, ws: &Workspace, to: &Recipients) -> Result<(), ChannelError> {
        // A name that could never be an agent or a role is bad input, not an unknown one.
        for agent in &to.agents {
            name::validate(NameKind::Agent, agent)?;
        }
        for role in &to.roles {
            name::validate(NameKind::Role, role)?;
        }
        let mut unknown: Vec<String> = to
            .agents
            .iter()
            .filter(|a| !self.agents.contains(*a))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            let view = Tasks::new(ws).summaries(true)?;
            let assignees: BTreeSet<&str> =
                view.tasks.iter().filter_map(|t| t.assignee()).collect();
            unknown.retain(|a| !assignees.contains(a.as_str()));
        }
        let what = if let Some(agent) = unknown.first() {
            format!("no agent `{agent}` has joined or is assigned a task")
        } else if let Some(role) = to.roles.iter().find(|r| !self.holders.contains_key(*r)) {
            format!("no agent holds the role `{role}`")
        } else {
            return Ok(());
        };
        let list = |items: Vec<&String>| {
            if items.is_empty() {
                "none".to_owned()
            } else {
                items
                    .into_iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        Err(ChannelError::UnknownRecipient {
            what,
            agents: list(self.agents.iter().collect()),
            roles: list(self.holders.keys().collect()),
        })
    }

    /// The agents a message from `sender` addressed to `to` is for: the agents named, the
    /// holders of the roles named, or — addressed to everyone — every agent that has not
    /// left; never the sender.
    pub fn agents_for(&self, to: &Recipients, sender: &str) -> Vec<String> {
        let mut agents: BTreeSet<String> = to.agents.iter().cloned().collect();
        for role in &to.roles {
            agents.extend(self.holders.get(role).into_iter().flatten().cloned());
        }
        if to.is_everyone() {
            agents.extend(self.present.iter().cloned());
        }
        agents.remove(sender);
        agents.into_iter().collect()
    }
}
