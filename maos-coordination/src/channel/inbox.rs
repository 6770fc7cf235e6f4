//! An agent's inbox: the messages addressed to it — by its id or one of its roles, not to
//! everyone — in every channel, each handed out once.
//!
//! How far the inbox has read each channel is kept in `inbox/<agent>/<channel>.json` (the
//! format of a cursor), apart from the agent's own `cursors/`: reading the inbox does not
//! move `msg recv --new`. Taking unread messages reads and advances those positions under
//! the kernel lock `inbox/<agent>/.lock`, so two processes of one agent taking at once (two
//! editor hooks) never both get the same message. The position is saved before the messages
//! are returned: a crash in between loses their display, never repeats it.

use std::path::PathBuf;

use super::{Channel, ChannelError, ChannelName, Cursor, Message, list_channels};
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

    /// Every unread message addressed to the agent (sent by others), marked read.
    pub fn take(&self) -> Result<Unread, ChannelError> {
        self.read(true)
    }

    /// The same messages, left unread.
    pub fn peek(&self) -> Result<Unread, ChannelError> {
        self.read(false)
    }

    fn read(&self, mark: bool) -> Result<Unread, ChannelError> {
        let own = self.dir.join(name::file_name(&self.agent));
        crate::fs::create_dir_all(&own)?;
        let _lock = self.ws.kernel_lock(&own.join(".lock"))?;
        let mut unread = Unread::default();
        for summary in list_channels(&self.ws)? {
            // `broadcast/all` repeats every broadcast as a notice: its topic is read instead.
            let Ok(name) = ChannelName::new(&summary.name) else {
                continue;
            };
            if name.as_topic() == Some(super::ALL_TOPIC) {
                continue;
            }
            // A damaged position (a hand edit) holds back only its own channel: reading it
            // from the start would hand out its messages twice. `maos doctor` reports it.
            let mut position = match Cursor::load(&self.dir, &name, &self.agent) {
                Ok(position) => position,
                Err(ChannelError::Record(e)) => {
                    unread.skipped.push(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if summary.last_seq <= position.seq {
                continue;
            }
            let batch = Channel::open(&self.ws, name).read_after(position.seq, None)?;
            unread.messages.extend(
                batch
                    .messages
                    .into_iter()
                    .filter(|m| m.sender != self.agent && self.addressed(m)),
            );
            unread.skipped.extend(batch.skipped);
            if mark && batch.cursor > position.seq {
                position.save(batch.cursor)?;
            }
        }
        Ok(unread)
    }

    fn addressed(&self, message: &Message) -> bool {
        let to = &message.recipients;
        to.agents.contains(&self.agent) || to.roles.iter().any(|r| self.roles.contains(r))
    }
}
