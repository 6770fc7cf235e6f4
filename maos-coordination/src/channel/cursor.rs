//! A reader's saved position in a channel: `.maos/cursors/<reader>/<channel>.json`.
//!
//! A reader that saves its cursor after handling messages picks up exactly where it left
//! off, in this process or the next.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{ChannelError, ChannelName};
use crate::atomic::{self, Durability};
use crate::fs;
use crate::name::{self, NameKind};
use crate::record::{self, RecordError};

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
    path: PathBuf,
    #[serde(skip)]
    tmp_dir: PathBuf,
}

impl Cursor {
    pub(super) fn load(
        cursors_dir: &Path,
        channel: &ChannelName,
        reader: &str,
    ) -> Result<Self, ChannelError> {
        name::validate(NameKind::Agent, reader)?;
        let mut path = cursors_dir
            .join(name::file_name(reader))
            .join(channel.rel_path())
            .into_os_string();
        path.push(".json");
        let path = PathBuf::from(path);
        let tmp_dir = cursors_dir.with_file_name("tmp");
        let saved = match fs::read_if_exists(&path)? {
            Some(bytes) => record::decode::<Cursor>(&path, "cursor", &bytes)?,
            None => Cursor {
                reader: reader.to_owned(),
                channel: channel.as_str().to_owned(),
                seq: 0,
                updated_at: None,
                path: PathBuf::new(),
                tmp_dir: PathBuf::new(),
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
            path,
            tmp_dir,
            ..saved
        })
    }

    /// Moves the cursor to `seq` and saves it atomically.
    pub fn save(&mut self, seq: u64) -> Result<(), ChannelError> {
        self.seq = seq;
        self.updated_at = Some(Timestamp::now());
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        atomic::write_replace(
            &self.tmp_dir,
            &self.path,
            &record::encode(self),
            Durability::Buffered,
        )?;
        Ok(())
    }
}
