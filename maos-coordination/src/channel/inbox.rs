//! An agent's inbox: the messages addressed to it — by its id (alone or in a group) or one
//! of its roles — in every channel, and the broadcasts on the topics it subscribes to (those
//! it holds a cursor on: `maos msg watch --new`, a subscription), each handed out once,
//! oldest first.
//!
//! How far the inbox has read each channel is kept in `inbox/<agent>/<channel>.json` (the
//! format of a cursor), apart from the agent's own `cursors/`: reading the inbox does not
//! move `msg recv --new`. Taking unread messages reads and advances those positions under
//! the kernel lock `inbox/<agent>/.lock`, so two processes of one agent taking at once (two
//! editor hooks) never both get the same message. The position is saved before the messages
//! are returned: a crash in between loses their display, never repeats it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Channel, ChannelError, ChannelsWatch, Cursor, Message, channel_names};
use crate::name::{self, NameKind};
use crate::record::RecordError;
use crate::workspace::Workspace;

/// The inbox of one agent.
#[derive(Debug, Clone)]
pub struct Inbox {
    ws: Workspace,
    agent: String,
    roles: Vec<String>,
    dir: PathBuf,
}

/// What the inbox held unread.
#[derive(Debug, Default)]
pub struct Unread {
    /// The messages, channel by channel (in name order), oldest first in each.
    pub messages: Vec<Message>,
    /// Message files that could not be read (they count as read), and damaged positions
    /// (their channel is not read until `maos doctor --fix` moves them aside).
    pub skipped: Vec<RecordError>,
    /// Channels pruned past the inbox's position: what was archived before it was read.
    pub pruned: Vec<(String, super::Pruned)>,
}

impl Inbox {
    /// The inbox of `agent`, which holds `roles`.
    pub fn new(ws: &Workspace, agent: &str, roles: Vec<String>) -> Result<Self, ChannelError> {
        name::validate(NameKind::Agent, agent)?;
        Ok(Self {
            dir: ws.dir().join("inbox"),
            ws: ws.clone(),
            agent: agent.to_owned(),
            roles,
        })
    }

    /// The inbox of `agent`, with the role the registry records for it.
    pub fn of(ws: &Workspace, agent: &str) -> Result<Self, ChannelError> {
        let roles = crate::agents::Registry::new(ws)
            .get(agent)?
            .and_then(|r| r.role)
            .into_iter()
            .collect();
        Self::new(ws, agent, roles)
    }

    /// Every unread message addressed to the agent (sent by others), marked read.
    pub fn take(&self) -> Result<Unread, ChannelError> {
        self.read(true, false)
    }

    /// The same messages, left unread.
    pub fn peek(&self) -> Result<Unread, ChannelError> {
        self.read(false, false)
    }

    /// Every message addressed to the agent, read or not, left as it is.
    pub fn history(&self) -> Result<Unread, ChannelError> {
        self.read(false, true)
    }

    /// Waits until there is unread mail, then takes it like [`take`](Self::take); `None`
    /// when `timeout` passes first. Woken by changes in the channels' folders (polling where
    /// notify cannot be used).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<Unread>, ChannelError> {
        let until = timeout.map(|t| Instant::now() + t);
        #[cfg(feature = "etcd")]
        if let crate::store::Store::Etcd(etcd) = self.ws.store() {
            return self.wait_etcd(etcd, until);
        }
        let mut watch = ChannelsWatch::start(&self.ws)?;
        loop {
            watch.refresh()?;
            let unread = self.take()?;
            if !unread.messages.is_empty() {
                return Ok(Some(unread));
            }
            let Some(left) = time_left(until) else {
                return Ok(None);
            };
            watch.wait(left);
        }
    }

    /// [`wait`](Self::wait) on the etcd store: woken by a watch on every channel's keys,
    /// started before the first look (a send after it always wakes it).
    #[cfg(feature = "etcd")]
    fn wait_etcd(
        &self,
        etcd: &std::sync::Arc<crate::store::etcd::Etcd>,
        until: Option<Instant>,
    ) -> Result<Option<Unread>, ChannelError> {
        let mut watch = Some(etcd.watch("channels/")?);
        loop {
            let unread = self.take()?;
            if !unread.messages.is_empty() {
                return Ok(Some(unread));
            }
            let Some(left) = time_left(until) else {
                return Ok(None);
            };
            // A broken watch: made again at the next turn (reading finds whatever it missed).
            let nap = left.min(Duration::from_secs(1));
            match &mut watch {
                Some(w) => {
                    if w.wait(nap).is_err() {
                        watch = None;
                    }
                }
                None => {
                    std::thread::sleep(nap.min(Duration::from_millis(200)));
                    watch = etcd.watch("channels/").ok();
                }
            }
        }
    }

    fn read(&self, mark: bool, all: bool) -> Result<Unread, ChannelError> {
        // One reader of an agent's inbox at a time, on any host: its kernel lock, or on etcd
        // a mutex key.
        #[cfg(feature = "etcd")]
        let _mutex = match self.ws.store() {
            crate::store::Store::Etcd(etcd) => Some(etcd.mutex(
                &format!("inbox/{}/.lock", name::file_name(&self.agent)),
                self.ws.kernel_lock_wait(),
            )?),
            crate::store::Store::Files => None,
        };
        let own = self.dir.join(name::file_name(&self.agent));
        crate::fs::create_dir_all(&own)?;
        let _lock = self.ws.kernel_lock(&own.join(".lock"))?;
        let mut unread = Unread::default();
        let mut per_channel: Vec<VecDeque<Message>> = Vec::new();
        for name in channel_names(&self.ws)? {
            // `broadcast/all` repeats every broadcast as a notice: its topic is read instead.
            if name.as_topic() == Some(super::ALL_TOPIC) {
                continue;
            }
            // A damaged position (a hand edit) holds back only its own channel: reading it
            // from the start would hand out its messages twice. `maos doctor` reports it.
            let mut position = match Cursor::load(&self.ws, "inbox", &name, &self.agent) {
                Ok(position) => position,
                Err(ChannelError::Record(e)) => {
                    unread.skipped.push(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let from = if all { 0 } else { position.seq };
            let channel = Channel::open(&self.ws, name.clone());
            if channel.last_seq()? <= from {
                continue;
            }
            let subscribed = name.as_topic().is_some()
                && Cursor::load(&self.ws, "cursors", &name, &self.agent)?
                    .updated_at
                    .is_some();
            let batch = channel.read_after(from, None)?;
            per_channel.push(
                batch
                    .messages
                    .into_iter()
                    .filter(|m| {
                        m.sender != self.agent
                            && (self.addressed(m) || (subscribed && m.recipients.is_everyone()))
                    })
                    .collect(),
            );
            unread.skipped.extend(batch.skipped);
            if let Some(pruned) = batch.pruned {
                unread.pruned.push((name.as_str().to_owned(), pruned));
            }
            if mark && batch.cursor > position.seq {
                position.save(batch.cursor)?;
            }
        }
        unread.messages = oldest_first(per_channel);
        Ok(unread)
    }

    fn addressed(&self, message: &Message) -> bool {
        let to = &message.recipients;
        to.agents.contains(&self.agent) || to.roles.iter().any(|r| self.roles.contains(r))
    }
}

/// The messages of several channels in one list, oldest first by the senders' clocks, each
/// channel's own order kept (a message never comes before one sent earlier on its channel,
/// whatever the clocks say).
fn oldest_first(mut channels: Vec<VecDeque<Message>>) -> Vec<Message> {
    let mut merged = Vec::with_capacity(channels.iter().map(VecDeque::len).sum());
    loop {
        let next = channels
            .iter_mut()
            .filter(|c| !c.is_empty())
            .min_by(|a, b| {
                let (a, b) = (&a[0], &b[0]);
                (a.timestamp, &a.channel).cmp(&(b.timestamp, &b.channel))
            });
        match next.and_then(VecDeque::pop_front) {
            Some(message) => merged.push(message),
            None => return merged,
        }
    }
}

/// How long a wait until `until` has left (an hour at a time when it has no end); `None`
/// once it is over.
fn time_left(until: Option<Instant>) -> Option<Duration> {
    match until {
        Some(until) => until
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero()),
        None => Some(Duration::from_secs(3600)),
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;

    fn message(channel: &str, seq: u64, secs: i64) -> Message {
        serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::now_v7(),
            "seq": seq,
            "channel": channel,
            "timestamp": Timestamp::from_second(secs).unwrap(),
            "sender": "s",
            "recipients": {"agents": ["me"], "roles": []},
            "type": "message",
            "priority": "medium",
            "payload": null,
        }))
        .unwrap()
    }

    #[test]
    fn oldest_first_across_channels_keeps_each_channels_order() {
        // `b`'s sender has a clock running behind: its #2 says it was sent before its #1.
        let a = VecDeque::from([message("a", 1, 10), message("a", 2, 30)]);
        let b = VecDeque::from([message("b", 1, 20), message("b", 2, 5)]);
        let order: Vec<(String, u64)> = oldest_first(vec![a, b])
            .into_iter()
            .map(|m| (m.channel, m.seq))
            .collect();
        let expected = [("a", 1), ("b", 1), ("b", 2), ("a", 2)];
        assert_eq!(
            order,
            expected.map(|(c, s)| (c.to_owned(), s)).to_vec(),
            "b's #2 never before its #1"
        );
    }
}
