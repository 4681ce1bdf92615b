//! PostgreSQL metadata kept with each Delta table: column types, defaults, keys, indexes and
//! sequences.
//!
//! ARCHITECTURE.md contract 1: there is no side catalog. What a PostgreSQL client must see again
//! after a restart lives in the Delta log itself — the exact declared type and default of each
//! column in the column's metadata (`deltagate.pg_type`, `deltagate.default`), NOT NULL as Delta
//! nullability, and the primary key, index definitions and sequence positions as table
//! properties (`deltagate.*`). Spark ignores all of these. A Delta table written by another
//! engine has none of them; its columns get a type derived from their Arrow type.
//!
//! [`TableMeta`] is rebuilt from a snapshot after every commit, so it always agrees with the
//! Delta version it describes. Storage owns this module; the SQL layer reads `TableMeta`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::kernel::{MetadataValue, StructField, StructType};
use serde::{Deserialize, Serialize};

use crate::pgtypes::{PG_ATTNUM_KEY, PG_TABLE_OID_KEY, PG_TYPE_KEY, PgType};

use super::StorageError;

/// Column metadata key: the PostgreSQL type as `format_type` prints it.
pub const COLUMN_TYPE_KEY: &str = "deltagate.pg_type";
/// Column metadata key: the column default as SQL text.
pub const COLUMN_DEFAULT_KEY: &str = "deltagate.default";
/// Column metadata key: NOT NULL recorded by deltagate where Delta nullability cannot say it
/// (a column added to a table that already has rows).
pub const COLUMN_NOT_NULL_KEY: &str = "deltagate.not_null";
/// Table property: the primary key, as JSON.
pub const PRIMARY_KEY_PROPERTY: &str = "deltagate.primaryKey";
/// Table property: secondary index definitions, as JSON.
pub const INDEXES_PROPERTY: &str = "deltagate.indexes";
/// Table property: sequences owned by the table's columns, as JSON.
pub const SEQUENCES_PROPERTY: &str = "deltagate.sequences";
/// Table property: the metadata format version.
pub const FORMAT_PROPERTY: &str = "deltagate.format";
/// The metadata format this build writes.
pub const FORMAT_VERSION: &str = "1";

/// One column as PostgreSQL clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMeta {
    pub name: String,
    pub pg_type: PgType,
    pub not_null: bool,
    /// Default expression as SQL text (`nextval('t_id_seq'::regclass)`, `0`, `now()`).
    pub default: Option<String>,
}

/// A primary key or secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMeta {
    pub name: String,
    pub columns: Vec<String>,
    #[serde(default)]
    pub unique: bool,
    #[serde(default = "default_method")]
    pub method: String,
}

fn default_method() -> String {
    "btree".to_string()
}

/// A sequence owned by a column (`serial`), with its durable reservation mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceMeta {
    pub name: String,
    pub column: String,
    #[serde(default = "one")]
    pub start: i64,
    #[serde(default = "one")]
    pub increment: i64,
    pub max_value: i64,
    /// Highest value that may have been handed out. Values above it were never used, so a
    /// restarted server continues from here without repeating any value.
    pub reserved: i64,
}

fn one() -> i64 {
    1
}

/// Everything PostgreSQL clients need to know about one table.
#[derive(Debug, Clone)]
pub struct TableMeta {
    pub columns: Vec<ColumnMeta>,
    pub primary_key: Option<IndexMeta>,
    pub indexes: Vec<IndexMeta>,
    pub sequences: Vec<SequenceMeta>,
    /// Arrow schema DataFusion plans against, with PostgreSQL type metadata on each field.
    pub arrow_schema: SchemaRef,
    /// The Arrow schema rows are stored with: the table's types, no PostgreSQL metadata, every
    /// column nullable (deltagate enforces NOT NULL). Kept here because every insert needs it.
    pub stored_schema: SchemaRef,
}

impl TableMeta {
    /// The metadata of a table with these columns, keys and sequences (`table_oid` goes into
    /// the Arrow fields' metadata; 0 before the catalog assigns one).
    pub fn new(
        columns: Vec<ColumnMeta>,
        primary_key: Option<IndexMeta>,
        indexes: Vec<IndexMeta>,
        sequences: Vec<SequenceMeta>,
        table_oid: u32,
    ) -> TableMeta {
        let arrow_schema = arrow_schema(&columns, table_oid);
        let stored_schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.pg_type.arrow_type(), true))
                .collect::<Vec<_>>(),
        ));
        TableMeta {
            columns,
            primary_key,
            indexes,
            sequences,
            arrow_schema,
            stored_schema,
        }
    }

    /// Builds the metadata of a table from its Delta schema and properties.
    ///
    /// # Errors
    /// [`StorageError::Metadata`] when a deltagate property is present but unreadable.
    /// `hidden` names a column clients do not see (the partition column of a historian month).
    pub fn from_delta(
        schema: &StructType,
        arrow: &Schema,
        properties: &HashMap<String, String>,
        table_oid: u32,
        hidden: Option<&str>,
    ) -> Result<TableMeta, StorageError> {
        let mut columns = Vec::new();
        for field in schema.fields() {
            if Some(field.name().as_str()) == hidden {
                continue;
            }
            let arrow_field = arrow
                .field_with_name(field.name())
                .map_err(|e| StorageError::Metadata(format!("column {}: {e}", field.name())))?;
            let pg_type = match field.metadata().get(COLUMN_TYPE_KEY) {
                Some(MetadataValue::String(text)) => PgType::parse(text)
                    .map_err(|e| StorageError::Metadata(format!("column {}: {e}", field.name())))?,
                _ => PgType::from_arrow(arrow_field.data_type()).ok_or_else(|| {
                    StorageError::Metadata(format!(
                        "column {} has type {} which deltagate cannot serve",
                        field.name(),
                        arrow_field.data_type()
                    ))
                })?,
            };
            let default = match field.metadata().get(COLUMN_DEFAULT_KEY) {
                Some(MetadataValue::String(text)) => Some(text.clone()),
                _ => None,
            };
            let declared_not_null = matches!(
                field.metadata().get(COLUMN_NOT_NULL_KEY),
                Some(MetadataValue::Boolean(true))
            );
            columns.push(ColumnMeta {
                name: field.name().clone(),
                pg_type,
                not_null: !field.is_nullable() || declared_not_null,
                default,
            });
        }
        let primary_key = parse_property::<IndexMeta>(properties, PRIMARY_KEY_PROPERTY)?;
        let indexes =
            parse_property::<Vec<IndexMeta>>(properties, INDEXES_PROPERTY)?.unwrap_or_default();
        let sequences = parse_property::<Vec<SequenceMeta>>(properties, SEQUENCES_PROPERTY)?
            .unwrap_or_default();
        Ok(TableMeta::new(
            columns,
            primary_key,
            indexes,
            sequences,
            table_oid,
        ))
    }

    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Column positions of the primary key, in key order.
    pub fn primary_key_indices(&self) -> Vec<usize> {
        self.primary_key
            .iter()
            .flat_map(|pk| pk.columns.iter())
            .filter_map(|c| self.column_index(c))
            .collect()
    }

    /// The table properties that carry this metadata (everything but column-level facts).
    pub fn properties(&self) -> Result<HashMap<String, String>, StorageError> {
        let mut props = HashMap::new();
        props.insert(FORMAT_PROPERTY.to_string(), FORMAT_VERSION.to_string());
        if let Some(pk) = &self.primary_key {
            props.insert(PRIMARY_KEY_PROPERTY.to_string(), to_json(pk)?);
        }
        props.insert(INDEXES_PROPERTY.to_string(), to_json(&self.indexes)?);
        props.insert(SEQUENCES_PROPERTY.to_string(), to_json(&self.sequences)?);
        Ok(props)
    }
}

/// The Delta column for a PostgreSQL column, with its type and default in the metadata.
pub fn delta_field(column: &ColumnMeta) -> StructField {
    let mut metadata: Vec<(String, MetadataValue)> = vec![(
        COLUMN_TYPE_KEY.to_string(),
        MetadataValue::String(column.pg_type.to_string()),
    )];
    if let Some(default) = &column.default {
        metadata.push((
            COLUMN_DEFAULT_KEY.to_string(),
            MetadataValue::String(default.clone()),
        ));
    }
    StructField::new(&column.name, column.pg_type.delta_type(), !column.not_null)
        .with_metadata(metadata)
}

/// The Arrow schema DataFusion sees: Delta's types plus PostgreSQL facts in field metadata.
pub fn arrow_schema(columns: &[ColumnMeta], table_oid: u32) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Field::new(&c.name, c.pg_type.arrow_type(), !c.not_null).with_metadata(HashMap::from([
                (PG_TYPE_KEY.to_string(), c.pg_type.to_string()),
                (PG_TABLE_OID_KEY.to_string(), table_oid.to_string()),
                (PG_ATTNUM_KEY.to_string(), (i + 1).to_string()),
            ]))
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn parse_property<T: for<'de> Deserialize<'de>>(
    properties: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, StorageError> {
    properties
        .get(key)
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|e| StorageError::Metadata(format!("table property {key}: {e}")))
        })
        .transpose()
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StorageError> {
    serde_json::to_string(value).map_err(|e| StorageError::Metadata(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_delta_schema() {
        let columns = vec![
            ColumnMeta {
                name: "id".into(),
                pg_type: PgType::Int4,
                not_null: true,
                default: Some("nextval('t_id_seq'::regclass)".into()),
            },
            ColumnMeta {
                name: "name".into(),
                pg_type: PgType::Varchar(Some(255)),
                not_null: false,
                default: None,
            },
        ];
        let schema = StructType::try_new(columns.iter().map(delta_field)).unwrap();
        let meta = TableMeta::new(
            columns.clone(),
            Some(IndexMeta {
                name: "t_pkey".into(),
                columns: vec!["id".into()],
                unique: true,
                method: "btree".into(),
            }),
            vec![],
            vec![SequenceMeta {
                name: "t_id_seq".into(),
                column: "id".into(),
                start: 1,
                increment: 1,
                max_value: i32::MAX as i64,
                reserved: 0,
            }],
            16384,
        );
        let arrow = Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.pg_type.arrow_type(), !c.not_null))
                .collect::<Vec<_>>(),
        );
        let back = TableMeta::from_delta(&schema, &arrow, &meta.properties().unwrap(), 16384, None)
            .unwrap();
        assert_eq!(back.columns, columns);
        assert_eq!(back.primary_key, meta.primary_key);
        assert_eq!(back.sequences, meta.sequences);
        assert_eq!(back.primary_key_indices(), vec![0]);
    }
}
