//! Keys packed for hashing and ordering: integer keys (the historian's `tagid, t_stamp`) into
//! one inline `u128` that orders as the key tuple does, any other key into Arrow's row format.
//! Keys are packed once per batch and shared by the index, the checks and the flush's sort.

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int8Type, Int16Type, Int32Type, Int64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};

use super::super::StorageError;

/// An encoded key, held inline when short (as integer keys are) so that millions of them cost
/// no allocation each. Made by [`pack_keys`]; equal keys of one table's key types pack equally.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PackedKey {
    /// Two words rather than a `u128`, whose 16-byte alignment would pad every map slot.
    Short([u64; 2]),
    Long(Box<[u8]>),
}

impl PackedKey {
    /// A key in arrow's row format: inline below 16 bytes, the length in the last byte keeping
    /// keys of different lengths apart.
    fn from_row(row: &[u8]) -> PackedKey {
        if row.len() < 16 {
            let mut bytes = [0u8; 16];
            bytes[..row.len()].copy_from_slice(row);
            bytes[15] = row.len() as u8;
            PackedKey::from_u128(u128::from_le_bytes(bytes))
        } else {
            PackedKey::Long(row.into())
        }
    }

    fn from_u128(key: u128) -> PackedKey {
        PackedKey::Short([key as u64, (key >> 64) as u64])
    }

    /// The key as a number; for keys [`pack_keys`] packed straight from integer columns, ordered
    /// as the key tuples are (`None` for a key it could not pack so).
    pub(in crate::storage) fn ordered(&self) -> Option<u128> {
        match self {
            PackedKey::Short([low, high]) => Some(u128::from(*low) | (u128::from(*high) << 64)),
            PackedKey::Long(_) => None,
        }
    }
}

/// The width in bits of an integer key column, which [`pack_keys`] packs without the row format.
pub(in crate::storage) fn integer_bits(data_type: &DataType) -> Option<u32> {
    match data_type {
        DataType::Int8 => Some(8),
        DataType::Int16 => Some(16),
        DataType::Int32 => Some(32),
        DataType::Int64 => Some(64),
        _ => None,
    }
}

/// Packs the keys of rows given as their key columns.
///
/// Integer keys of at most 128 bits without NULLs (historian keys `(int4, int8)`, serial ids)
/// are packed straight from the columns, two shifts a value (ingest packs every key it checks),
/// in key order (see [`PackedKey::ordered`]).
/// Other keys, and batches with a NULL key value, go through arrow's row format; such a batch
/// of integer columns packs its keys as `Long`, so they cannot meet a directly packed key.
///
/// # Errors
/// Arrow errors encoding rows.
pub fn pack_keys(columns: &[ArrayRef]) -> std::result::Result<Vec<PackedKey>, ArrowError> {
    let rows = columns.first().map_or(0, |c| c.len());
    let bits: Option<Vec<u32>> = columns
        .iter()
        .map(|c| integer_bits(c.data_type()))
        .collect();
    let integer = bits.filter(|b| b.iter().sum::<u32>() <= 128);
    if let Some(bits) = &integer
        && columns.iter().all(|c| c.null_count() == 0)
    {
        let mut packed = vec![0u128; rows];
        for (column, bits) in columns.iter().zip(bits) {
            // Each value's bits with the sign bit flipped: unsigned order is then the values'
            // order, so packed keys compare as the key tuples do.
            let sign = 1u128 << (bits - 1);
            macro_rules! shift_in {
                ($type:ty, $unsigned:ty) => {
                    for (key, value) in packed
                        .iter_mut()
                        .zip(column.as_primitive::<$type>().values())
                    {
                        *key = (*key << bits) | (u128::from(*value as $unsigned) ^ sign);
                    }
                };
            }
            match column.data_type() {
                DataType::Int8 => shift_in!(Int8Type, u8),
                DataType::Int16 => shift_in!(Int16Type, u16),
                DataType::Int32 => shift_in!(Int32Type, u32),
                _ => shift_in!(Int64Type, u64),
            }
        }
        return Ok(packed.into_iter().map(PackedKey::from_u128).collect());
    }
    let fields = columns
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let encoded = RowConverter::new(fields)?.convert_columns(columns)?;
    Ok(encoded
        .iter()
        .map(|row| match integer {
            Some(_) => PackedKey::Long(row.as_ref().into()),
            None => PackedKey::from_row(row.as_ref()),
        })
        .collect())
}

/// Packs the keys of a batch's rows, its key columns being `key_indices`.
///
/// # Errors
/// As [`pack_keys`].
pub fn pack_batch_keys(
    batch: &RecordBatch,
    key_indices: &[usize],
) -> std::result::Result<Vec<PackedKey>, ArrowError> {
    let columns: Vec<ArrayRef> = key_indices
        .iter()
        .map(|i| batch.column(*i).clone())
        .collect();
    pack_keys(&columns)
}

/// Packs the keys of rows, counted across the batches.
///
/// # Errors
/// As [`pack_keys`].
pub fn pack_rows_keys(
    batches: &[RecordBatch],
    key_indices: &[usize],
) -> std::result::Result<Vec<PackedKey>, ArrowError> {
    let mut keys = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        keys.extend(pack_batch_keys(batch, key_indices)?);
    }
    Ok(keys)
}

/// A set of keys. Keys are hashed millions of times a second at ingest and come from the
/// server's own encoding, so a fast non-cryptographic hasher is the right trade.
pub type KeySet = std::collections::HashSet<PackedKey, foldhash::fast::RandomState>;

pub(in crate::storage) fn arrow_error(e: ArrowError) -> StorageError {
    StorageError::DataFusion(e.into())
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};

    use super::*;

    /// Key columns of a historian table: tag ids and stamps.
    pub(in crate::storage) fn historian(tags: Vec<Option<i32>>, stamps: Vec<i64>) -> Vec<ArrayRef> {
        vec![
            Arc::new(Int32Array::from(tags)),
            Arc::new(Int64Array::from(stamps)),
        ]
    }

    #[test]
    fn integer_keys_pack_equal_exactly_when_equal() {
        // Values whose bytes collide under careless packing: signs, and a tag's bits spilling
        // into the stamp's.
        let tags = [0, 1, -1, i32::MIN, i32::MAX, 256];
        let stamps = [0, 1, -1, i64::MIN, i64::MAX, 1 << 32, 1_793_491_200_000];
        let pairs: Vec<(i32, i64)> = tags
            .iter()
            .flat_map(|t| stamps.iter().map(move |s| (*t, *s)))
            .collect();
        let columns = historian(
            pairs.iter().map(|p| Some(p.0)).collect(),
            pairs.iter().map(|p| p.1).collect(),
        );
        let packed = pack_keys(&columns).unwrap();
        assert!(packed.iter().all(|k| matches!(k, PackedKey::Short(_))));
        let distinct: std::collections::HashSet<&PackedKey> = packed.iter().collect();
        assert_eq!(distinct.len(), pairs.len());
        // Packed keys order as the key tuples do.
        let mut by_tuple: Vec<usize> = (0..pairs.len()).collect();
        by_tuple.sort_by_key(|i| pairs[*i]);
        let mut by_packed: Vec<usize> = (0..pairs.len()).collect();
        by_packed.sort_by_key(|i| packed[*i].ordered().unwrap());
        assert_eq!(by_tuple, by_packed);
        // The same keys in another batch pack the same.
        let again = pack_keys(&historian(vec![Some(-1)], vec![1 << 32])).unwrap();
        let at = pairs.iter().position(|p| *p == (-1, 1 << 32)).unwrap();
        assert_eq!(again[0], packed[at]);
    }

    #[test]
    fn null_and_non_integer_keys_use_the_row_format() {
        let with_null = pack_keys(&historian(vec![None, Some(0)], vec![0, 0])).unwrap();
        assert!(matches!(with_null[1], PackedKey::Long(_)));
        assert_ne!(with_null[0], with_null[1]);
        let plain = pack_keys(&historian(vec![Some(0)], vec![0])).unwrap();
        assert_ne!(plain[0], with_null[1]);
        let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a"]));
        let packed = pack_keys(&[names]).unwrap();
        assert_eq!(packed[0], packed[2]);
        assert_ne!(packed[0], packed[1]);
    }
}
