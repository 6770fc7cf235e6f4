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
//! messages pile up. On the etcd store the same records are keys of the same paths.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Channel, ChannelError, ChannelName, Cursor, Draft, Known, Message, SYSTEM_SENDER};
use crate::atomic::Durability;
use crate::name;
use crate::record::{self, RecordError};
use crate::store::Spot;
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

/// Where acknowledgements are, relative to `.maos/`.
const ACKS: &str = "acks";

/// The record at `rel` (relative to `.maos/`), in the workspace's store.
fn spot(ws: &Workspace, rel: PathBuf) -> Spot {
    Spot::new(ws.store(), ws.dir(), rel)
}

/// The folder of message `seq`'s acknowledgements, relative to `.maos/`.
fn message_dir(channel: &ChannelName, seq: u64) -> PathBuf {
    Path::new(ACKS)
        .join(name::file_name(channel.as_str()))
        .join(seq.to_string())
}

fn ack_spot(ws: &Workspace, channel: &ChannelName, seq: u64, agent: &str) -> Spot {
    spot(
        ws,
        message_dir(channel, seq).join(format!("{}.json", name::file_name(agent))),
    )
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
    spot(ws, message_dir(&channel, message.seq).join(EXPECTED))
        .write(&record::encode(&expected), Durability::Buffered)?;
    if expected.deadline.is_some() && !expected.agents.is_empty() {
        pending_marker(ws, &channel, message.seq).write(b"", Durability::Buffered)?;
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
    let place = ack_spot(ws, channel, seq, agent);
    match place.create(&record::encode(&ack), Durability::Buffered)? {
        true => {
            tracing::debug!(channel = %channel, seq, agent, "message acknowledged");
            crate::journal::record(
                ws,
                crate::journal::Event::new("message.acked")
                    .agent(agent)
                    .subject(format!("{channel}#{seq}"))
                    .data(serde_json::json!({ "channel": channel.as_str(), "seq": seq })),
            );
            if let Some(expected) = expected(ws, channel, seq)?
                && missing_acks(ws, channel, &expected)?.is_empty()
            {
                settle(ws, channel, seq);
            }
            Ok((ack, true))
        }
        false => match read_ack(&place)? {
            Some(first) => Ok((first, false)),
            None => Err(RecordError::corrupt(
                &place.path(),
                "acknowledgement",
                "it was there, then gone",
            )
            .into()),
        },
    }
}

/// The acknowledgement at `place`, if there is one.
/// Whether `agent` acknowledged message `seq` of `channel` (it has read it, then).
pub(super) fn acknowledged(
    ws: &Workspace,
    channel: &ChannelName,
    seq: u64,
    agent: &str,
) -> Result<bool, ChannelError> {
    Ok(read_ack(&ack_spot(ws, channel, seq, agent))?.is_some())
}

fn read_ack(place: &Spot) -> Result<Option<Ack>, ChannelError> {
    match place.read()? {
        Some(bytes) => Ok(Some(record::decode::<Ack>(
            &place.path(),
            "acknowledgement",
            &bytes,
        )?)),
        None => Ok(None),
    }
}

/// What `.expected.json` says of message `seq`, if it was posted asking for acknowledgements.
pub fn expected(
    ws: &Workspace,
    channel: &ChannelName,
    seq: u64,
) -> Result<Option<Expected>, ChannelError> {
    let place = spot(ws, message_dir(channel, seq).join(EXPECTED));
    match place.read()? {
        Some(bytes) => Ok(Some(record::decode(
            &place.path(),
            "acknowledgement list",
            &bytes,
        )?)),
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
        let ack = read_ack(&ack_spot(ws, channel, seq, &agent))?;
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
    let pending = Path::new(ACKS).join(PENDING);
    let mut owed: Vec<(ChannelName, u64)> = ws
        .store()
        .names_in(ws.dir(), &pending)?
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
        let missing = missing_acks(ws, &channel, &expected)?;
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
fn missing_acks(
    ws: &Workspace,
    channel: &ChannelName,
    expected: &Expected,
) -> Result<Vec<String>, ChannelError> {
    let mut missing = Vec::new();
    for agent in &expected.agents {
        if !ack_spot(ws, channel, expected.seq, agent).exists()? {
            missing.push(agent.clone());
        }
    }
    Ok(missing)
}

/// Message `seq` is acknowledged by everyone asked: no longer looked at for lateness.
fn settle(ws: &Workspace, channel: &ChannelName, seq: u64) {
    let _ = pending_marker(ws, channel, seq).remove();
}

fn pending_marker(ws: &Workspace, channel: &ChannelName, seq: u64) -> Spot {
    spot(
        ws,
        Path::new(ACKS)
            .join(PENDING)
            .join(format!("{}@{seq}", name::file_name(channel.as_str()))),
    )
}

/// Tells each sender, once, of every acknowledgement it is owed that is overdue at `now`: a
/// message of type `ack.overdue` to the sender on the message's channel. Returns those told
/// now. A notice is claimed (exclusively) before it is sent: a process killed in between
/// loses that notice, never repeats it.
pub fn announce_overdue(ws: &Workspace, now: Timestamp) -> Result<Vec<Overdue>, ChannelError> {
    let mut told = Vec::new();
    for late in overdue(ws, now)? {
        let channel = ChannelName::new(&late.channel)?;
        let marker = spot(
            ws,
            message_dir(&channel, late.seq)
                .join(format!("{}.overdue", name::file_name(&late.agent))),
        );
        if !marker.create(b"", Durability::Buffered)? {
            continue;
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
    let store = ws.store();
    let root = Path::new(ACKS);
    let mut broken = Vec::new();
    for channel in store
        .names_in(ws.dir(), root)?
        .into_iter()
        .filter(|c| c != PENDING)
    {
        for seq in store.names_in(ws.dir(), &root.join(&channel))? {
            let dir = root.join(&channel).join(&seq);
            for file in store.names_in(ws.dir(), &dir)? {
                let place = spot(ws, dir.join(&file));
                let Some(bytes) = place.read()? else {
                    continue;
                };
                let read = if file == EXPECTED {
                    record::decode::<Expected>(&place.path(), "acknowledgement list", &bytes)
                        .map(drop)
                } else if file.ends_with(".json") {
                    record::decode::<Ack>(&place.path(), "acknowledgement", &bytes).map(drop)
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
    let dir = Path::new(ACKS).join(name::file_name(channel.as_str()));
    let mut owed = Vec::new();
    for seq in ws
        .store()
        .names_in(ws.dir(), &dir)?
        .iter()
        .filter_map(|s| s.parse::<u64>().ok())
    {
        if let Some(expected) = expected(ws, channel, seq)?
            && !missing_acks(ws, channel, &expected)?.is_empty()
        {
            owed.push(seq);
        }
    }
    owed.sort_unstable();
    Ok(owed)
}
