//! The log record of an insert: for each table its schema, name and incarnation id, and its
//! rows as an Arrow IPC stream. Naming the incarnation (the Delta table id, and a historian
//! month's registration) means a record of a dropped table is never replayed into a new table
//! of the same name (ARCHITECTURE.md contract 15).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;

use super::super::table::TableHandle;
use super::super::{Result, StorageError};

const RECORD_INSERT: u8 = 1;

fn encode_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Metadata(format!("cannot encode rows for the log: {e}"))
}

/// Encodes an insert record: the rows of each table, as Arrow IPC streams.
pub(in crate::storage) fn encode_insert(
    tables: &[(Arc<TableHandle>, String, Vec<RecordBatch>)],
) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_INSERT];
    out.extend_from_slice(&(tables.len() as u32).to_le_bytes());
    for (table, table_id, batches) in tables {
        for text in [&table.schema, &table.name, table_id] {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| encode_error("no rows"))?;
        let mut ipc = Vec::new();
        {
            let mut writer = StreamWriter::try_new(&mut ipc, &schema).map_err(encode_error)?;
            for batch in batches {
                writer.write(batch).map_err(encode_error)?;
            }
            writer.finish().map_err(encode_error)?;
        }
        out.extend_from_slice(&(ipc.len() as u64).to_le_bytes());
        out.extend_from_slice(&ipc);
    }
    Ok(out)
}

/// A decoded insert record: (schema, table, Delta table id, rows) per table.
pub(in crate::storage) type Decoded = Vec<(String, String, String, Vec<RecordBatch>)>;

pub(in crate::storage) fn decode_insert(payload: &[u8]) -> Result<Decoded> {
    let bad = |what: &str| StorageError::Metadata(format!("malformed log record: {what}"));
    let mut rest = payload;
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    if take(1)? != [RECORD_INSERT] {
        return Err(bad("unknown record kind"));
    }
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("count"))?);
    let mut tables = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut texts = Vec::with_capacity(3);
        for _ in 0..3 {
            let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("length"))?);
            let text = std::str::from_utf8(take(len as usize)?).map_err(|_| bad("name"))?;
            texts.push(text.to_string());
        }
        let len = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad("length"))?);
        let ipc = take(usize::try_from(len).map_err(|_| bad("length"))?)?;
        let reader = StreamReader::try_new(ipc, None).map_err(|e| bad(&e.to_string()))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e.to_string()))?;
        let table_id = texts.pop().unwrap_or_default();
        let name = texts.pop().unwrap_or_default();
        let schema = texts.pop().unwrap_or_default();
        tables.push((schema, name, table_id, batches));
    }
    Ok(tables)
}
