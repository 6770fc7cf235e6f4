//! Channels in etcd: the same records at the same paths as the files, as keys.
//!
//! `channels/<name>/.seq` holds the last number handed out; message `n` is
//! `channels/<name>/<segment>/<n>.json` (the file store's names, zero-padded, so key order
//! is channel order). A send reads `.seq` and writes `.seq + 1` and the message in **one**
//! transaction that first compares `.seq`'s revision: of racing senders one wins each number,
//! the others take the next — every message gets a number, no number is skipped or given
//! twice, and a reader never sees message `n + 1` before `n`. The transaction also requires
//! the message's key not to exist: a counter behind the messages (rewound by hand, or put
//! back from an old copy) never makes a send overwrite one — the send moves past the newest
//! message instead. `channels/.names/<name>` marks that a channel exists (written with its
//! first message).

use std::path::PathBuf;
use std::sync::Arc;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::message::Message;
use super::{
    Batch, Channel, ChannelError, ChannelName, MAX_MESSAGE_BYTES, decode_message, file_name,
    segment_of,
};
use crate::record;
use crate::store::etcd::{Etcd, Kv, written};
use crate::workspace::Workspace;

/// Where channel names are listed.
const NAMES: &str = "channels/.names/";

/// `channels/<name>/`.
fn dir(channel: &ChannelName) -> String {
    format!("channels/{}/", rel(channel))
}

fn rel(channel: &ChannelName) -> String {
    channel.rel_path().to_string_lossy().into_owned()
}

fn seq_key(channel: &ChannelName) -> String {
    format!("{}.seq", dir(channel))
}

pub(super) fn message_key(channel: &ChannelName, seq: u64) -> String {
    format!("{}{:06}/{}", dir(channel), segment_of(seq), file_name(seq))
}

/// How errors name a key: `etcd:<prefix>/<key>`.
fn path(etcd: &Etcd, key: &str) -> PathBuf {
    PathBuf::from(format!("etcd:{}", etcd.key(key)))
}

/// The value of a `.seq` key.
fn counter(etcd: &Etcd, kv: &Kv) -> Result<u64, ChannelError> {
    std::str::from_utf8(&kv.value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            crate::record::RecordError::corrupt(
                &path(etcd, &kv.key),
                "counter",
                "it does not hold a number",
            )
            .into()
        })
}

/// Gives `message` the next number of its channel and publishes it.
pub(super) fn send(
    ws: &Workspace,
    etcd: &Etcd,
    channel: &ChannelName,
    message: &mut Message,
) -> Result<(), ChannelError> {
    let seq_key = seq_key(channel);
    // The newest message there is, once a number was found taken (the counter is behind).
    let mut newest = 0;
    loop {
        let (counted, revision) = match etcd.get(&seq_key)? {
            Some(kv) => (counter(etcd, &kv)?, kv.mod_revision),
            None => (0, 0),
        };
        let last = counted.max(newest);
        message.seq = last + 1;
        let encoded = record::encode(message);
        if encoded.len() > MAX_MESSAGE_BYTES {
            return Err(ChannelError::TooLarge {
                size: encoded.len(),
            });
        }
        let key = message_key(channel, message.seq);
        let mut puts = vec![
            TxnOp::put(etcd.key(&seq_key), message.seq.to_string(), None),
            TxnOp::put(etcd.key(&key), encoded.clone(), None),
        ];
        if let Some((key, value)) = crate::journal::pending(ws, &[super::sent(message)]) {
            puts.push(TxnOp::put(etcd.key(&key), value, None));
        }
        if last == 0 {
            puts.push(TxnOp::put(
                etcd.key(&format!("{NAMES}{}", rel(channel))),
                channel.as_str(),
                None,
            ));
        }
        let txn = Txn::new()
            .when([
                Compare::mod_revision(etcd.key(&seq_key), CompareOp::Equal, revision),
                Compare::create_revision(etcd.key(&key), CompareOp::Equal, 0),
            ])
            .and_then(puts);
        // A message is recognised by its id: sent, or not (then the next number is tried).
        let outcome = etcd.txn("send a message", txn, |etcd| {
            Ok(written(etcd.get(&key)?, &encoded))
        })?;
        if outcome.applied() {
            return Ok(());
        }
        // Lost a race (the counter moved), or the number is taken although the counter
        // says otherwise: then number past the newest message.
        if etcd.get(&key)?.is_some() {
            newest = etcd
                .last_key(&dir(channel))?
                .and_then(|kv| seq_of_key(&kv.key))
                .unwrap_or(0)
                .max(message.seq);
        }
    }
}

/// Message `seq`, when it exists.
pub(super) fn get(
    etcd: &Etcd,
    channel: &ChannelName,
    seq: u64,
) -> Result<Option<Message>, ChannelError> {
    let key = message_key(channel, seq);
    match etcd.get(&key)? {
        Some(kv) => Ok(Some(decode_message(seq, &path(etcd, &key), &kv.value)?)),
        None => Ok(None),
    }
}

/// The messages with `seq > after`, in order, at most `limit`.
pub(super) fn read_after(
    ws: &Workspace,
    etcd: &Etcd,
    channel: &ChannelName,
    after: u64,
    limit: Option<usize>,
) -> Result<Batch, ChannelError> {
    let kvs = etcd.list_from(&dir(channel), &message_key(channel, after + 1), limit)?;
    let mut batch = Batch {
        cursor: after,
        ..Batch::default()
    };
    for kv in kvs {
        let Some(seq) = seq_of_key(&kv.key) else {
            continue;
        };
        batch.cursor = seq;
        match decode_message(seq, &path(etcd, &kv.key), &kv.value) {
            Ok(message) => batch.messages.push(message),
            Err(e) => batch.skipped.push(e),
        }
    }
    // Sends leave no gaps on etcd: one at the start is a prune the reader is told of. (A
    // read that finds nothing new is at the end: a prune always leaves the newest segment.)
    if batch.messages.first().is_some_and(|m| m.seq > after + 1) {
        batch.pruned = Channel::open(ws, channel.clone())
            .pruned()?
            .filter(|p| after < p.upto);
        if let Some(pruned) = &batch.pruned {
            batch.cursor = batch.cursor.max(pruned.upto);
        }
    }
    Ok(batch)
}

/// The seq of a message key (`…/000000/0000000042.json`).
fn seq_of_key(key: &str) -> Option<u64> {
    super::parse_file_name(key.rsplit('/').next()?)
}

/// The last number handed out (0: none yet).
pub(super) fn last_seq(etcd: &Etcd, channel: &ChannelName) -> Result<u64, ChannelError> {
    match etcd.get(&seq_key(channel))? {
        Some(kv) => counter(etcd, &kv),
        None => Ok(0),
    }
}

/// How many messages the channel holds.
pub(super) fn count(etcd: &Etcd, channel: &ChannelName) -> Result<u64, ChannelError> {
    Ok(etcd.count_from(&dir(channel), &message_key(channel, 1))?)
}

/// Every channel that has had a message, sorted.
pub(super) fn names(etcd: &Etcd) -> Result<Vec<ChannelName>, ChannelError> {
    let kvs = etcd.list(NAMES)?;
    let mut names: Vec<ChannelName> = kvs
        .iter()
        .filter_map(|kv| {
            let text = std::str::from_utf8(&kv.value).ok()?;
            match text.split_once('/') {
                Some((super::BROADCAST, topic)) => ChannelName::topic(topic).ok(),
                _ => ChannelName::new(text).ok(),
            }
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Sets the counter to `last` and lists the channel (a channel copied from another store).
pub(super) fn set_last_seq(
    etcd: &Etcd,
    channel: &ChannelName,
    last: u64,
) -> Result<(), ChannelError> {
    etcd.put(&seq_key(channel), last.to_string().as_bytes(), None)?;
    etcd.put(
        &format!("{NAMES}{}", rel(channel)),
        channel.as_str().as_bytes(),
        None,
    )?;
    Ok(())
}

/// Wake-ups for every change in `channel`.
pub(super) fn watch(
    etcd: &Arc<Etcd>,
    channel: &ChannelName,
) -> Result<crate::store::etcd::EtcdWatch, ChannelError> {
    Ok(etcd.watch(&dir(channel))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_channel_order_and_mirror_the_files() {
        let ch = ChannelName::new("general").unwrap();
        assert_eq!(
            message_key(&ch, 42),
            "channels/general/000000/0000000042.json"
        );
        assert!(message_key(&ch, 999) < message_key(&ch, 1000));
        assert!(message_key(&ch, 1000) < message_key(&ch, 1001));
        assert!(seq_key(&ch) < message_key(&ch, 1));
        assert_eq!(seq_of_key(&message_key(&ch, 1234)), Some(1234));
    }
}
