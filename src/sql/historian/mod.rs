//! Ignition's tag historian in the SQL layer: the built-in `tag_history` view over a schema's
//! historian data tables, and the key seek that answers the historian's seed and range queries
//! without a plan. What a historian table is (names, shapes, month partitions) is storage's
//! (`storage::historian`); so is the duplicate rule of its inserts
//! (`storage::historian::on_duplicate`, applied by the one key check in `storage::keys`).

pub(super) mod seek;
pub(super) mod tag_history;
