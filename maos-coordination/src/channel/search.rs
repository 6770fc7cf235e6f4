//! Searching messages: a regular expression over payloads and metadata, in every channel or
//! one, from one sender, since a time — archives included (`maos msg search`).
//!
//! Message files are read on every core; a file is decoded only when the pattern matches
//! somewhere in its text, then the match is checked against the payload and metadata alone.

use jiff::Timestamp;
use regex::Regex;
use serde_json::Value;

use super::{Channel, ChannelError, ChannelName, Message, channel_names, read_archived};
use crate::fs;
use crate::record::RecordError;
use crate::workspace::Workspace;

/// What to look for.
#[derive(Debug, Clone)]
pub struct Query {
    /// Matched against each message's payload (a string as it is, anything else as JSON)
    /// and its metadata (as JSON).
    pub pattern: Regex,
    /// Only this channel.
    pub channel: Option<ChannelName>,
    /// Only messages from this sender.
    pub from: Option<String>,
    /// Only messages sent at or after this time.
    pub since: Option<Timestamp>,
}

/// What a search found.
#[derive(Debug, Default)]
pub struct Found {
    /// The matching messages: channel by channel (in name order), in channel order.
    pub messages: Vec<Message>,
    /// Files and archive lines that could not be read.
    pub skipped: Vec<RecordError>,
}

impl Query {
    fn selects(&self, message: &Message) -> bool {
        if self
            .from
            .as_ref()
            .is_some_and(|from| *from != message.sender)
            || self.since.is_some_and(|since| message.timestamp < since)
        {
            return false;
        }
        let payload_matches = match &message.payload {
            Value::String(text) => self.pattern.is_match(text),
            other => self.pattern.is_match(&other.to_string()),
        };
        payload_matches
            || (!message.metadata.is_empty()
                && self
                    .pattern
                    .is_match(&Value::Object(message.metadata.clone()).to_string()))
    }
}

/// Runs `query` over the workspace's messages.
pub fn search(ws: &Workspace, query: &Query) -> Result<Found, ChannelError> {
    let names = match &query.channel {
        Some(name) => vec![name.clone()],
        None => channel_names(ws)?
            .into_iter()
            // The notices of `broadcast/all` repeat every broadcast.
            .filter(|n| n.as_topic() != Some(super::ALL_TOPIC))
            .collect(),
    };
    let mut found = Found::default();
    for name in names {
        let channel = Channel::open(ws, name.clone());
        if !ws.store().is_files() {
            // On etcd: one range read of the channel, then its archives (a segment pruned in
            // between is found there).
            let batch = channel.read_after(0, None)?;
            let (archived, broken) = read_archived(ws, &name)?;
            found.skipped.extend(batch.skipped);
            found.skipped.extend(broken);
            let hits = archived
                .into_iter()
                .chain(batch.messages)
                .filter(|m| query.selects(m))
                .collect();
            found.messages.extend(in_order(hits));
            continue;
        }
        let mut files = Vec::new();
        for segment in channel.segments()? {
            let dir = channel.segment_dir(segment);
            let mut names: Vec<(u64, String)> = fs::list_names(&dir)?
                .into_iter()
                .filter_map(|n| Some((super::parse_file_name(&n)?, n)))
                .collect();
            names.sort();
            files.extend(names.into_iter().map(|(seq, n)| (seq, dir.join(n))));
        }
        let results = fs::on_every_core(&files, 1, |part: &[(u64, std::path::PathBuf)]| {
            let (mut hits, mut broken) = (Vec::new(), Vec::new());
            for (seq, path) in part {
                // A cheap look at the raw text first: most files do not match.
                match fs::read(path) {
                    Ok(bytes) if !query.pattern.is_match(&String::from_utf8_lossy(&bytes)) => {}
                    Ok(bytes) => match super::decode_message(*seq, path, &bytes) {
                        Ok(message) if query.selects(&message) => hits.push(message),
                        Ok(_) => {}
                        Err(e) => broken.push(e),
                    },
                    // Pruned meanwhile: the archive, read next, has it.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => broken.push(RecordError::from(e)),
                }
            }
            (hits, broken)
        });
        // The archives are read after the folder: a segment pruned in between is found there.
        let (archived, broken) = read_archived(ws, &name)?;
        let mut hits: Vec<Message> = archived.into_iter().filter(|m| query.selects(m)).collect();
        found.skipped.extend(broken);
        for (live, broken) in results {
            hits.extend(live);
            found.skipped.extend(broken);
        }
        found.messages.extend(in_order(hits));
    }
    Ok(found)
}

/// `hits` by seq, each once (a message read live and from an archive pruned meanwhile).
fn in_order(mut hits: Vec<Message>) -> Vec<Message> {
    hits.sort_by_key(|m| m.seq);
    hits.dedup_by_key(|m| m.seq);
    hits
}
