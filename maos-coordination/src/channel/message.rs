//! The message record and the draft a sender fills in.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{ChannelError, ChannelName};
use crate::name::{self, NameKind};
use crate::priority::Priority;

/// One message of a channel, as stored in its file (fields in this order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// A unique id (UUID v7: it also sorts by creation time).
    pub id: Uuid,
    /// The position in the channel: 1, 2, 3… in the one order every reader sees.
    pub seq: u64,
    /// The channel it was sent on.
    pub channel: String,
    /// When it was sent, by the sender's clock (informative; `seq` is the order).
    pub timestamp: Timestamp,
    /// The agent that sent it.
    pub sender: String,
    /// Who it is for.
    pub recipients: Recipients,
    /// A free-form type tag, e.g. `chat`, `task.completed`, `deadlock`.
    #[serde(rename = "type")]
    pub kind: String,
    /// How urgent it is.
    pub priority: Priority,
    /// Any JSON value.
    pub payload: Value,
    /// Extra key/value pairs for tools.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The message (of the same channel) this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// The first message of the thread this one belongs to (set on replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<u64>,
    /// Whether its recipients are asked to acknowledge it, and by when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<AckRequest>,
}

/// A sender's request that each recipient acknowledge a message (`maos msg ack`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// When an acknowledgement not made by then is overdue (`None`: never).
    #[serde(default)]
    pub deadline: Option<Timestamp>,
}

impl Message {
    /// Whether the message is for `agent`, which holds `roles`.
    pub fn is_for(&self, agent: &str, roles: &[String]) -> bool {
        self.recipients.includes(agent, roles)
    }
}

/// Who a message is for: everyone (both lists empty), some agents (one: a direct message;
/// several: a group), the agents holding some roles, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipients {
    /// Agent ids the message is addressed to.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Roles the message is addressed to.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Recipients {
    /// Everyone.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether the message is for everyone.
    pub fn is_everyone(&self) -> bool {
        self.agents.is_empty() && self.roles.is_empty()
    }

    /// Whether `agent`, holding `roles`, is among the recipients.
    pub fn includes(&self, agent: &str, roles: &[String]) -> bool {
        self.is_everyone()
            || self.agents.iter().any(|a| a == agent)
            || self.roles.iter().any(|r| roles.contains(r))
    }
}

impl std::fmt::Display for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_everyone() {
            return f.write_str("all");
        }
        let parts: Vec<String> = (self.agents.iter().cloned())
            .chain(self.roles.iter().map(|r| format!("role:{r}")))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// What a sender provides; the channel adds id, seq, timestamp and sender.
#[derive(Debug, Clone)]
pub struct Draft {
    recipients: Recipients,
    kind: String,
    priority: Priority,
    payload: Value,
    metadata: Map<String, Value>,
    reply_to: Option<u64>,
    ack: Option<AckRequest>,
}

impl Draft {
    /// A message for everyone, of type `message`, medium priority.
    pub fn new(payload: Value) -> Self {
        Self {
            recipients: Recipients::all(),
            kind: "message".to_owned(),
            priority: Priority::default(),
            payload,
            metadata: Map::new(),
            reply_to: None,
            ack: None,
        }
    }

    /// Makes it a reply to message `seq` of the same channel (which must exist).
    pub fn reply_to(mut self, seq: u64) -> Self {
        self.reply_to = Some(seq);
        self
    }

    /// Asks each recipient to acknowledge it, by `deadline` if one is given.
    pub fn ack(mut self, deadline: Option<Timestamp>) -> Self {
        self.ack = Some(AckRequest { deadline });
        self
    }

    /// Who it is addressed to.
    pub fn recipients(&self) -> &Recipients {
        &self.recipients
    }

    /// Addresses the message to `agent` (call several times for a group).
    pub fn to(mut self, agent: impl Into<String>) -> Self {
        self.recipients.agents.push(agent.into());
        self
    }

    /// Addresses the message to every agent holding `role`.
    pub fn to_role(mut self, role: impl Into<String>) -> Self {
        self.recipients.roles.push(role.into());
        self
    }

    /// Sets the type tag.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// The notice posted on `broadcast/all` for `message`, sent on a topic.
    pub(super) fn notice_of(self, message: &Message) -> Self {
        let topic = message
            .channel
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        self.meta("topic", Value::String(topic))
            .meta("topic_seq", Value::from(message.seq))
            .meta("topic_message_id", Value::String(message.id.to_string()))
    }

    pub(super) fn into_message(
        self,
        channel: &ChannelName,
        sender: &str,
    ) -> Result<Message, ChannelError> {
        name::validate(NameKind::Agent, sender)?;
        for agent in &self.recipients.agents {
            name::validate(NameKind::Agent, agent)?;
        }
        for role in &self.recipients.roles {
            name::validate(NameKind::Role, role)?;
        }
        Ok(Message {
            id: Uuid::now_v7(),
            seq: 0,
            channel: channel.as_str().to_owned(),
            timestamp: Timestamp::now(),
            sender: sender.to_owned(),
            recipients: self.recipients,
            kind: self.kind,
            priority: self.priority,
            payload: self.payload,
            metadata: self.metadata,
            reply_to: self.reply_to,
            thread: None,
            ack: self.ack,
        })
    }
}
