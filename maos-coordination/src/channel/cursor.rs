//! A reader's saved position in a channel: `.maos/cursors/<reader>/<channel>.json`.
//!
//! A reader that saves its cursor after handling messages picks up exactly where it left
//! off, in this process or the next.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{ChannelError, ChannelName};
use crate::atomic::Durability;
use crate::name::{self, NameKind};
use crate::record::{self, RecordError};
use crate::store::Spot;
use crate::workspace::Workspace;

/// A reader's position: every message with `seq <= seq` has been handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The reader (an agent id).
    pub reader: String,
    /// The channel.
    pub channel: String,
    /// The last handled sequence number.
    pub seq: u64,
    /// When it was last saved.
    pub updated_at: Option<Timestamp>,
    #[serde(skip)]
    spot: Option<Spot>,
}

impl Cursor {
    /// `reader`'s position in `channel`, kept under `base` (`cursors` or `inbox`, relative
    /// to `.maos/`) of `ws`.
    pub(super) fn load(
        ws: &Workspace,
        base: &str,
        channel: &ChannelName,
        reader: &str,
    ) -> Result<Self, ChannelError> {
        name::validate(NameKind::Agent, reader)?;
        let mut rel = Path::new(base)
            .join(name::file_name(reader))
            .join(channel.rel_path())
            .into_os_string();
        rel.push(".json");
        let spot = Spot::new(ws.store(), ws.dir(), PathBuf::from(rel));
        let path = spot.path();
        let saved = match spot.read()? {
            Some(bytes) => record::decode::<Cursor>(&path, "cursor", &bytes)?,
            None => Cursor {
                reader: reader.to_owned(),
                channel: channel.as_str().to_owned(),
                seq: 0,
                updated_at: None,
                spot: None,
            },
        };
        if saved.reader != reader || saved.channel != channel.as_str() {
            return Err(RecordError::corrupt(
                &path,
                "cursor",
                format!("it belongs to `{}` on `{}`", saved.reader, saved.channel),
            )
            .into());
        }
        Ok(Self {
            spot: Some(spot),
            ..saved
        })
    }

    /// Moves the cursor to `seq` and saves it atomically.
    pub fn save(&mut self, seq: u64) -> Result<(), ChannelError> {
        self.seq = seq;
        self.updated_at = Some(Timestamp::now());
        if let Some(spot) = &self.spot {
            spot.write(&record::encode(self), Durability::Buffered)?;
        }
        Ok(())
    }
}
