//! Acknowledgements: a sender asks each recipient of a message to say it was acted on
//! (`maos msg send --ack`), recipients do (`maos msg ack`), and anyone can see who has
//! (`maos msg show`) and who is late (`maos msg overdue`).
//!
//! Kept in `.maos/acks/<channel>/<seq>/` (the channel's name as a file name): `.expected.json`
//! — who owes an acknowledgement and by when, written when the message is posted — and one
//! `<agent>.json` per acknowledgement, created exclusively: a second acknowledgement by the
//! same agent finds the first and changes nothing. `<agent>.overdue`, also created
//! exclusively, records that the sender was told the agent is late, so it is told once.
//! `.pending/<channel>@<seq>` marks a message with a deadline that someone still owes an
//! acknowledgement of: only those are looked at for lateness, however many acknowledged
//! messages pile up.

use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Channel, ChannelError, ChannelName, Cursor, Draft, Known, Message, SYSTEM_SENDER};
use crate::atomic::{self, Durability, PublishError};
use crate::fs;
use crate::name;
use crate::record::{self, RecordError};
use crate::workspace::Workspace;

const EXPECTED: &str = ".expected.json";

/// `acks/.pending/<channel>@<seq>`: a message with a deadline not yet acknowledged by all —
/// the only ones `overdue` looks at.
const PENDING: &str = ".pending";

/// Who owes an acknowledgement of a message, and by when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    /// The channel.
    pub channel: String,
    /// The message.
    pub seq: u64,
    /// Who sent it (and is told when an acknowledgement is late).
    pub sender: String,
    /// When an acknowledgement not made by then is overdue.
    pub deadline: Option<Timestamp>,
    /// The agents asked (the recipients when it was sent).
    pub agents: Vec<String>,
}

/// One agent's acknowledgement of one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The channel.
    pub channel: String,
    /// The message.
    pub seq: u64,
    /// Who acknowledged it.
    pub agent: String,
    /// When.
    pub at: Timestamp,
    /// What they said.
    #[serde(default)]
    pub note: Option<String>,
}

/// Where a message stands with one recipient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// The recipient.
    pub agent: String,
    /// Its cursor on the channel has passed the message (`msg recv --new`, a subscription).
    pub delivered: bool,
    /// Its inbox has returned the message.
    pub read: bool,
    /// Its acknowledgement, if it made one.
    pub ack: Option<Ack>,
}

/// An acknowledgement past its deadline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overdue {
    /// The channel.
    pub channel: String,
    /// The message.
    pub seq: u64,
    /// Who sent it.
    pub sender: String,
    /// Who has not acknowledged it.
    pub agent: String,
    /// The deadline passed.
    pub deadline: Timestamp,
}

fn acks_dir(ws: &Workspace) -> PathBuf {
    ws.dir().join("acks")
}

fn message_dir(ws: &Workspace, channel: &ChannelName, seq: u64) -> PathBuf {
    acks_dir(ws)
        .join(name::file_name(channel.as_str()))
        .join(seq.to_string())
}

fn ack_path(ws: &Workspace, channel: &ChannelName, seq: u64, agent: &str) -> PathBuf {
    message_dir(ws, channel, seq).join(format!("{}.json", name::file_name(agent)))
}

/// Records who owes an acknowledgement of `message` (posted asking for them), resolved now:
/// the agents named, the holders of the roles named, or everyone who has not left.
pub(super) fn expect(ws: &Workspace, known: &Known, message: &Message) -> Result<(), ChannelError> {
    let Some(request) = &message.ack else {
        return Ok(());
    };
    let channel = ChannelName::new(&message.channel)?;
    let expected = Expected {
        channel: message.channel.clone(),
        seq: message.seq,
        sender: message.sender.clone(),
        deadline: request.deadline,
        agents: known.agents_for(&message.recipients, &message.sender),
    };
    let dir = message_dir(ws, &channel, message.seq);
    fs::create_dir_all(&dir)?;
    atomic::write_replace(
        &ws.tmp_dir(),
        &dir.join(EXPECTED),
        &record::encode(&expected),
        Durability::Buffered,
    )?;
    if expected.deadline.is_some() && !expected.agents.is_empty() {
        let marker = pending_marker(ws, &channel, message.seq);
        if let Some(dir) = marker.parent() {
            fs::create_dir_all(dir)?;
        }
        atomic::write_replace(&ws.tmp_dir(), &marker, b"", Durability::Buffered)?;
    }
    Ok(())
}

/// `agent` acknowledges message `seq` of `channel`, with an optional note. Returns the
/// acknowledgement on record and whether it is this one (`false`: the agent had already
/// acknowledged it, and that one stands).
pub fn acknowledge(
    ws: &Workspace,
    channel: &ChannelName,
    seq: u64,
    agent: &str,
    note: Option<String>,
) -> Result<(Ack, bool), ChannelError> {
    name::validate(name::NameKind::Agent, agent)?;
    Channel::open(ws, channel.clone()).get(seq)?;
    let ack = Ack {
        channel: channel.as_str().to_owned(),
        seq,
        agent: agent.to_owned(),
        at: Timestamp::now(),
        note,
    };
    let path = ack_path(ws, channel, seq, agent);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let staged = atomic::stage(&ws.tmp_dir(), &record::encode(&ack), Durability::Buffered)?;
    match staged.publish_new(&path) {
        Ok(()) => {
            tracing::debug!(channel = %channel, seq, agent, "message acknowledged");
            crate::journal::record(
                ws,
                crate::journal::Event::new("message.acked")
                    .agent(agent)
                    .subject(format!("{channel}#{seq}"))
                    .data(serde_json::json!({ "channel": channel.as_str(), "seq": seq })),
            );
            if let Some(expected) = expected(ws, channel, seq)?
                && missing_acks(ws, channel, &expected).is_empty()
            {
                settle(ws, channel, seq);
            }
            Ok((ack, true))
        }
        Err(PublishError::AlreadyExists { .. }) => Ok((read_ack(&path)?, false)),
        Err(PublishError::Io(e)) => Err(e.into()),
    }
}

fn read_ack(path: &std::path::Path) -> Result<Ack, RecordError> {
    record::read::<Ack>(path, "acknowledgement")
}

/// What `.expected.json` says of message `seq`, if it was posted asking for acknowledgements.
pub fn expected(
    ws: &Workspace,
    channel: &ChannelName,
    seq: u64,
) -> Result<Option<Expected>, ChannelError> {
    let path = message_dir(ws, channel, seq).join(EXPECTED);
    match fs::read_if_exists(&path)? {
        Some(bytes) => Ok(Some(record::decode(&path, "acknowledgement list", &bytes)?)),
        None => Ok(None),
    }
}

/// Where message `seq` of `channel` stands with each of its recipients (those asked for an
/// acknowledgement, else its recipients now).
pub fn deliveries(
    ws: &Workspace,
    channel: &ChannelName,
    seq: u64,
) -> Result<(Message, Vec<Delivery>), ChannelError> {
    let message = Channel::open(ws, channel.clone()).get(seq)?;
    let agents = match expected(ws, channel, seq)? {
        Some(expected) => expected.agents,
        None => Known::of(ws)?.agents_for(&message.recipients, &message.sender),
    };
    let mut deliveries = Vec::new();
    for agent in agents {
        let passed = |base: &str| Cursor::load(ws, base, channel, &agent).map(|c| c.seq >= seq);
        let path = ack_path(ws, channel, seq, &agent);
        let ack = if path.is_file() {
            Some(read_ack(&path)?)
        } else {
            None
        };
        deliveries.push(Delivery {
            delivered: passed("cursors")?,
            read: passed("inbox")?,
            ack,
            agent,
        });
    }
    Ok((message, deliveries))
}

/// Every acknowledgement past its deadline at `now`, by channel and message.
pub fn overdue(ws: &Workspace, now: Timestamp) -> Result<Vec<Overdue>, ChannelError> {
    let mut found = Vec::new();
    let pending = acks_dir(ws).join(PENDING);
    let mut owed: Vec<(ChannelName, u64)> = fs::list_names(&pending)?
        .iter()
        .filter_map(|marker| {
            let (channel, seq) = marker.rsplit_once('@')?;
            Some((
                ChannelName::new(&name::from_file_name(channel)?).ok()?,
                seq.parse().ok()?,
            ))
        })
        .collect();
    owed.sort();
    for (channel, seq) in owed {
        let Some(expected) = expected(ws, &channel, seq)? else {
            continue;
        };
        let missing = missing_acks(ws, &channel, &expected);
        if missing.is_empty() {
            settle(ws, &channel, seq);
            continue;
        }
        let Some(deadline) = expected.deadline.filter(|d| *d < now) else {
            continue;
        };
        found.extend(missing.into_iter().map(|agent| Overdue {
            channel: expected.channel.clone(),
            seq,
            sender: expected.sender.clone(),
            agent,
            deadline,
        }));
    }
    Ok(found)
}

/// The agents `expected` names that have not acknowledged yet.
fn missing_acks(ws: &Workspace, channel: &ChannelName, expected: &Expected) -> Vec<String> {
    expected
        .agents
        .iter()
        .filter(|agent| !ack_path(ws, channel, expected.seq, agent).is_file())
        .cloned()
        .collect()
}

/// Message `seq` is acknowledged by everyone asked: no longer looked at for lateness.
fn settle(ws: &Workspace, channel: &ChannelName, seq: u64) {
    let _ = fs::remove_file_if_exists(&pending_marker(ws, channel, seq));
}

fn pending_marker(ws: &Workspace, channel: &ChannelName, seq: u64) -> PathBuf {
    acks_dir(ws)
        .join(PENDING)
        .join(format!("{}@{seq}", name::file_name(channel.as_str())))
}

/// Tells each sender, once, of every acknowledgement it is owed that is overdue at `now`: a
/// message of type `ack.overdue` to the sender on the message's channel. Returns those told
/// now. A notice is claimed (exclusively) before it is sent: a process killed in between
/// loses that notice, never repeats it.
pub fn announce_overdue(ws: &Workspace, now: Timestamp) -> Result<Vec<Overdue>, ChannelError> {
    let mut told = Vec::new();
    for late in overdue(ws, now)? {
        let channel = ChannelName::new(&late.channel)?;
        let marker = message_dir(ws, &channel, late.seq)
            .join(format!("{}.overdue", name::file_name(&late.agent)));
        let staged = atomic::stage(&ws.tmp_dir(), b"", Durability::Buffered)?;
        match staged.publish_new(&marker) {
            Ok(()) => {}
            Err(PublishError::AlreadyExists { .. }) => continue,
            Err(PublishError::Io(e)) => return Err(e.into()),
        }
        let notice = Draft::new(json!({
            "channel": late.channel,
            "seq": late.seq,
            "agent": late.agent,
            "deadline": late.deadline,
        }))
        .kind("ack.overdue")
        .to(late.sender.clone());
        Channel::open(ws, channel).send(SYSTEM_SENDER, notice)?;
        told.push(late);
    }
    Ok(told)
}

/// Every acknowledgement file that cannot be read as what it should be (for `maos doctor`).
pub fn broken_files(ws: &Workspace) -> Result<Vec<RecordError>, ChannelError> {
    let root = acks_dir(ws);
    let mut broken = Vec::new();
    for channel in fs::list_names(&root)?.into_iter().filter(|c| c != PENDING) {
        for seq in fs::list_names(&root.join(&channel))? {
            let dir = root.join(&channel).join(&seq);
            for file in fs::list_names(&dir)? {
                let path = dir.join(&file);
                let read = if file == EXPECTED {
                    record::read::<Expected>(&path, "acknowledgement list").map(drop)
                } else if file.ends_with(".json") {
                    read_ack(&path).map(drop)
                } else {
                    Ok(())
                };
                broken.extend(read.err());
            }
        }
    }
    Ok(broken)
}

/// The seqs of `channel`'s messages that some recipient still owes an acknowledgement of.
pub fn unacked(ws: &Workspace, channel: &ChannelName) -> Result<Vec<u64>, ChannelError> {
    let dir = acks_dir(ws).join(name::file_name(channel.as_str()));
    let mut owed = Vec::new();
    for seq in fs::list_names(&dir)?
        .iter()
        .filter_map(|s| s.parse::<u64>().ok())
    {
        if let Some(expected) = expected(ws, channel, seq)?
            && !missing_acks(ws, channel, &expected).is_empty()
        {
            owed.push(seq);
        }
    }
    owed.sort_unstable();
    Ok(owed)
}
