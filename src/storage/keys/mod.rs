//! Primary-key checks at ingest speed.
//!
//! Every table with a primary key keeps a [`KeyIndex`]: the keys of its rows that are in flight to
//! the write-ahead log or waiting in the write buffer, kept in step with both (added, or claimed at
//! commit, when a write is queued; dropped when it fails), and of the latest rows this server
//! flushed to Delta, up to a limit (the files they went to are then covered). Other rows in Delta
//! are screened with the files' column statistics: a new key can only clash with a file whose
//! min/max box holds it. [`Storage::key_clash`] answers from these two alone in the common case
//! (new keys past everything stored, as historian data is), and says [`KeyCheck::Unknown`] when
//! some stored file might hold a new key; the SQL layer then runs its exact check against the
//! snapshot for those rows.
//!
//! Rooms: `pack` (keys packed once per batch), `index` (the key index), `boxes` (files' key
//! ranges from their statistics); this file answers a write's key check from them.

pub(super) mod boxes;
pub(super) mod index;
mod pack;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;

use super::table::TableHandle;
use super::{Result, Storage, StorageError};
use boxes::stored_may_hold;

pub use pack::{KeySet, PackedKey, pack_keys, pack_rows_keys};
pub(super) use pack::{integer_bits, pack_batch_keys};

/// What the index and the statistics say about a set of new keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// No stored, buffered or in-flight row has any of the keys.
    Free,
    /// Row `n` of the new rows repeats a buffered or in-flight key.
    Taken(usize),
    /// A stored file may hold one of the keys: check exactly.
    Unknown,
}

/// Which of a set of new keys the table already holds, as far as the index knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysTaken {
    /// Rows (counted across the new batches) whose key is buffered, in flight or flushed by
    /// this server.
    pub rows: Vec<usize>,
    /// Whether a stored file may hold one of the other keys: check those exactly.
    pub stored_unknown: bool,
}

impl Storage {
    /// Checks new rows' primary keys against the table's in-flight, buffered and stored rows
    /// (see the module comment). Call under the table's admission lock for a decision that holds
    /// until the rows are queued.
    ///
    /// # Errors
    /// Arrow errors encoding keys, Delta errors reading statistics.
    pub fn key_clash(&self, table: &Arc<TableHandle>, batches: &[RecordBatch]) -> Result<KeyCheck> {
        let taken = self.keys_taken(table, batches, false)?;
        Ok(match (taken.rows.first(), taken.stored_unknown) {
            (Some(row), _) => KeyCheck::Taken(*row),
            (None, true) => KeyCheck::Unknown,
            (None, false) => KeyCheck::Free,
        })
    }

    /// Like [`Storage::key_clash`], but finds every row whose key the index holds (or only the
    /// first, when `all` is false), for inserts that skip duplicates.
    ///
    /// # Errors
    /// As [`Storage::key_clash`].
    pub fn keys_taken(
        &self,
        table: &Arc<TableHandle>,
        batches: &[RecordBatch],
        all: bool,
    ) -> Result<KeysTaken> {
        // The snapshot and the index are read together, so a flush moving rows from the
        // buffer to Delta is seen entirely on one side.
        let taken = table.with_keys(|state, index| {
            let Some(index) = index else {
                return Ok(None);
            };
            let rows = index.taken(batches, all)?;
            if !all && !rows.is_empty() {
                return Ok(Some(KeysTaken {
                    rows,
                    stored_unknown: false,
                }));
            }
            let boxes = table.uncovered_boxes(state, index)?;
            let stored_unknown = stored_may_hold(&boxes, index.columns(), batches);
            Ok::<_, StorageError>(Some(KeysTaken {
                rows,
                stored_unknown,
            }))
        })?;
        Ok(taken.unwrap_or(KeysTaken {
            rows: Vec::new(),
            stored_unknown: false,
        }))
    }
}
