//! Primary-key checks at ingest speed.
//!
//! Every table with a primary key keeps a key index: the keys of its rows that are in flight to
//! the write-ahead log or waiting in the write buffer, kept in step with both (added, or claimed at
//! commit, when a write is queued; dropped when it fails), and of the latest rows this server
//! flushed to Delta, up to a limit (the files they went to are then covered). Other rows in Delta
//! are screened with the files' column statistics: a new key can only clash with a file whose
//! min/max box holds it, and only then is it checked exactly, by a join with the stored keys.
//!
//! Rooms: `pack` (keys packed once per row), `index` (the key index), `boxes` (files' key
//! ranges from their statistics), `check` (the one key check every insert takes,
//! [`Storage::check_keys`](super::Storage::check_keys), on [`NewRows`]).

pub(super) mod boxes;
mod check;
pub(super) mod index;
mod pack;

pub use check::{Checked, NewRows, OnDuplicate, key_columns, key_set, matching_keys, violation_at};
pub use pack::{KeySet, PackedKey};
pub(super) use pack::{integer_bits, pack_batch_keys};
