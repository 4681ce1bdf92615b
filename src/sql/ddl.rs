//! Data definition: `CREATE`/`DROP` of schemas, tables and indexes, `ALTER TABLE ... ADD
//! COLUMN`, `TRUNCATE`.
//!
//! DDL takes effect immediately, also inside a transaction block (PostgreSQL would roll it
//! back with the block; deltagate documents this difference). `TRUNCATE` is the exception: it
//! is a write and joins the transaction like `DELETE`. Storage work runs on its own task so a
//! client that goes away cannot leave a table half created.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, ColumnDef, ColumnOption, CreateIndex, CreateTable, DataType as SqlType,
    Expr, ObjectName, ObjectType, SchemaName, Statement, TableConstraint,
};

use crate::pgtypes::PgType;
use crate::storage::{ColumnMeta, IndexMeta, SequenceMeta, StorageError, TableHandle, WriteOp};

use super::rewrite::{name_parts, normalize_ident};
use super::session::Session;
use super::tables::{detached, resolve_table, unavailable_table};
use super::{Outcome, Result, SqlError, dml};

fn command(tag: &str) -> Outcome {
    Outcome::Command {
        tag: tag.to_string(),
        rows: None,
    }
}

/// Executes a DDL statement; `None` if the statement is not DDL.
///
/// # Errors
/// Invalid definitions, existing or missing objects, storage errors.
pub async fn execute(session: &Session, statement: &Statement) -> Result<Option<Outcome>> {
    let outcome = match statement {
        Statement::CreateSchema {
            schema_name,
            if_not_exists,
            ..
        } => {
            session.check_writable("CREATE SCHEMA")?;
            let name = match schema_name {
                SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => {
                    name_parts(name).join(".")
                }
                SchemaName::UnnamedAuthorization(user) => normalize_ident(user),
            };
            let storage = session.engine().storage().clone();
            let if_not_exists = *if_not_exists;
            let created = detached({
                let name = name.clone();
                async move { Ok(storage.create_schema(&name, if_not_exists).await?) }
            })
            .await?;
            if !created {
                session
                    .shared
                    .notice(format!("schema \"{name}\" already exists, skipping"));
            }
            command("CREATE SCHEMA")
        }
        Statement::CreateTable(create) => {
            session.check_writable("CREATE TABLE")?;
            create_table(session, create).await?
        }
        Statement::CreateIndex(create) => {
            session.check_writable("CREATE INDEX")?;
            create_index(session, create).await?
        }
        Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } => {
            session.check_writable("DROP")?;
            drop(session, *object_type, *if_exists, names, *cascade).await?
        }
        Statement::AlterTable(alter) => {
            session.check_writable("ALTER TABLE")?;
            let Some((schema, table)) = resolve_table(session, &alter.name) else {
                if alter.if_exists {
                    session.shared.notice(format!(
                        "relation \"{}\" does not exist, skipping",
                        name_parts(&alter.name).join(".")
                    ));
                    return Ok(Some(command("ALTER TABLE")));
                }
                return Err(SqlError::UndefinedTable(name_parts(&alter.name).join(".")));
            };
            for operation in &alter.operations {
                match operation {
                    AlterTableOperation::AddColumn {
                        if_not_exists,
                        column_def,
                        ..
                    } => add_column(session, &schema, &table, column_def, *if_not_exists).await?,
                    other => {
                        return Err(SqlError::Unsupported(format!(
                            "ALTER TABLE {other} is not supported"
                        )));
                    }
                }
            }
            command("ALTER TABLE")
        }
        Statement::Truncate(truncate) => {
            session.check_writable("TRUNCATE")?;
            let mut handles = Vec::new();
            for target in &truncate.table_names {
                let handle = resolve_table(session, &target.name)
                    .and_then(|(schema, name)| session.engine().storage().table(&schema, &name))
                    .ok_or_else(|| SqlError::UndefinedTable(name_parts(&target.name).join(".")))?;
                handles.push(handle);
            }
            dml::retry_conflicts(session, || truncate_tables(session, &handles)).await?;
            if matches!(
                truncate.identity,
                Some(datafusion::sql::sqlparser::ast::TruncateIdentityOption::Restart)
            ) {
                for handle in &handles {
                    for seq in &handle.state().meta.sequences {
                        handle.set_value(&seq.name, seq.start, false)?;
                        session.shared.sequences.lock().touched = true;
                    }
                }
            }
            command("TRUNCATE TABLE")
        }
        Statement::CreateView { .. } => {
            return Err(SqlError::Unsupported(
                "CREATE VIEW is not supported yet".into(),
            ));
        }
        _ => return Ok(None),
    };
    Ok(Some(outcome))
}

/// The schema a new object goes to: its qualifier, or the first schema of the search path.
fn creation_target(session: &Session, name: &ObjectName) -> Result<(String, String)> {
    let parts = name_parts(name);
    match parts.as_slice() {
        [object] => session
            .shared
            .current_schema()
            .map(|schema| (schema, object.clone()))
            .ok_or(SqlError::NoSchemaSelected),
        [schema, object] | [_, schema, object] => {
            if session.engine().storage().has_schema(schema) {
                Ok((schema.clone(), object.clone()))
            } else {
                Err(StorageError::UndefinedSchema(schema.clone()).into())
            }
        }
        _ => Err(SqlError::Syntax(format!("improper qualified name: {name}"))),
    }
}

/// A column definition as deltagate stores it, plus the sequence a serial column owns.
struct ColumnDefinition {
    column: ColumnMeta,
    primary_key: bool,
    sequence: Option<SequenceMeta>,
}

fn column_definition(schema: &str, table: &str, def: &ColumnDef) -> Result<ColumnDefinition> {
    let name = normalize_ident(&def.name);
    let type_text = def.data_type.to_string();
    let serial = match &def.data_type {
        SqlType::Custom(n, _) => PgType::is_serial_name(&name_parts(n).join(".")),
        _ => false,
    };
    let pg_type = PgType::parse(&type_text)?;
    let mut column = ColumnMeta {
        name: name.clone(),
        pg_type,
        not_null: false,
        default: None,
    };
    let mut primary_key = false;
    for option in &def.options {
        match &option.option {
            ColumnOption::Null => {}
            ColumnOption::NotNull => column.not_null = true,
            ColumnOption::Default(expr) => column.default = Some(expr.to_string()),
            ColumnOption::PrimaryKey(_) => {
                primary_key = true;
                column.not_null = true;
            }
            other => {
                return Err(SqlError::Unsupported(format!(
                    "column constraint {other} is not supported (deltagate enforces NOT NULL, DEFAULT and PRIMARY KEY)"
                )));
            }
        }
    }
    let sequence = serial.then(|| {
        let seq_name = format!("{table}_{name}_seq");
        let qualified = if schema == "public" {
            seq_name.clone()
        } else {
            format!("{schema}.{seq_name}")
        };
        column.default = Some(format!("nextval('{qualified}'::regclass)"));
        column.not_null = true;
        SequenceMeta {
            name: seq_name,
            column: name.clone(),
            start: 1,
            increment: 1,
            max_value: match pg_type {
                PgType::Int2 => i16::MAX as i64,
                PgType::Int4 => i32::MAX as i64,
                _ => i64::MAX,
            },
            reserved: 0,
        }
    });
    Ok(ColumnDefinition {
        column,
        primary_key,
        sequence,
    })
}

async fn create_table(session: &Session, create: &CreateTable) -> Result<Outcome> {
    if create.temporary {
        return Err(SqlError::Unsupported(
            "temporary tables are not supported".into(),
        ));
    }
    let (schema, table) = creation_target(session, &create.name)?;
    let storage = session.engine().storage().clone();
    if storage.relation_exists(&schema, &table) {
        if create.if_not_exists {
            session
                .shared
                .notice(format!("relation \"{table}\" already exists, skipping"));
            return Ok(command("CREATE TABLE"));
        }
        return Err(StorageError::DuplicateTable(table).into());
    }
    if let Some(query) = &create.query {
        return dml::create_table_as(session, &schema, &table, query).await;
    }
    let mut columns: Vec<ColumnMeta> = Vec::new();
    let mut sequences = Vec::new();
    let mut pk_columns: Option<Vec<String>> = None;
    let mut pk_name: Option<String> = None;
    for def in &create.columns {
        let defined = column_definition(&schema, &table, def)?;
        if columns.iter().any(|c| c.name == defined.column.name) {
            return Err(SqlError::DuplicateColumn(defined.column.name));
        }
        if defined.primary_key {
            if pk_columns.is_some() {
                return Err(SqlError::MultiplePrimaryKeys(table));
            }
            pk_columns = Some(vec![defined.column.name.clone()]);
        }
        sequences.extend(defined.sequence);
        columns.push(defined.column);
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                if pk_columns.is_some() {
                    return Err(SqlError::MultiplePrimaryKeys(table));
                }
                let names = pk
                    .columns
                    .iter()
                    .map(|c| match &c.column.expr {
                        Expr::Identifier(ident) => Ok(normalize_ident(ident)),
                        other => Err(SqlError::Unsupported(format!(
                            "primary key on expression {other} is not supported"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                pk_columns = Some(names);
                pk_name = pk.name.as_ref().map(normalize_ident);
            }
            other => {
                return Err(SqlError::Unsupported(format!(
                    "table constraint {other} is not supported (deltagate enforces PRIMARY KEY)"
                )));
            }
        }
    }
    let primary_key = match pk_columns {
        Some(pk) => {
            for name in &pk {
                let column = columns
                    .iter_mut()
                    .find(|c| &c.name == name)
                    .ok_or_else(|| SqlError::UndefinedColumn {
                        table: table.clone(),
                        column: name.clone(),
                    })?;
                column.not_null = true;
            }
            let name = pk_name.unwrap_or_else(|| format!("{table}_pkey"));
            if storage.relation_exists(&schema, &name) {
                return Err(StorageError::DuplicateTable(name).into());
            }
            Some(IndexMeta {
                name,
                columns: pk,
                unique: true,
                method: "btree".into(),
            })
        }
        None => None,
    };
    for seq in &sequences {
        if storage.relation_exists(&schema, &seq.name) {
            return Err(StorageError::DuplicateTable(seq.name.clone()).into());
        }
    }
    detached(async move {
        storage
            .create_table(&schema, &table, columns, primary_key, sequences)
            .await?;
        Ok(())
    })
    .await?;
    Ok(command("CREATE TABLE"))
}

async fn create_index(session: &Session, create: &CreateIndex) -> Result<Outcome> {
    let (schema, table) = resolve_table(session, &create.table_name)
        .ok_or_else(|| SqlError::UndefinedTable(name_parts(&create.table_name).join(".")))?;
    let storage = session.engine().storage().clone();
    let handle = storage
        .table(&schema, &table)
        .ok_or_else(|| SqlError::UndefinedTable(table.clone()))?;
    let meta = handle.state().meta;
    let mut columns = Vec::new();
    for column in &create.columns {
        match &column.column.expr {
            Expr::Identifier(ident) => {
                let name = normalize_ident(ident);
                if meta.column_index(&name).is_none() {
                    return Err(SqlError::UndefinedColumn {
                        table: table.clone(),
                        column: name,
                    });
                }
                columns.push(name);
            }
            other => {
                return Err(SqlError::Unsupported(format!(
                    "index on expression {other} is not supported"
                )));
            }
        }
    }
    if create.predicate.is_some() {
        return Err(SqlError::Unsupported(
            "partial indexes are not supported".into(),
        ));
    }
    let is_pk = meta
        .primary_key
        .as_ref()
        .is_some_and(|pk| pk.columns == columns);
    if create.unique && !is_pk {
        return Err(SqlError::Unsupported(
            "unique indexes other than the primary key are not enforced by deltagate".into(),
        ));
    }
    let name = match &create.name {
        Some(name) => name_parts(name).pop().unwrap_or_default(),
        None => format!("{table}_{}_idx", columns.join("_")),
    };
    if storage.relation_exists(&schema, &name) {
        if create.if_not_exists {
            session
                .shared
                .notice(format!("relation \"{name}\" already exists, skipping"));
            return Ok(command("CREATE INDEX"));
        }
        return Err(StorageError::DuplicateTable(name).into());
    }
    let method = create
        .using
        .as_ref()
        .map_or_else(|| "btree".to_string(), |m| m.to_string().to_lowercase());
    let mut indexes = meta.indexes.clone();
    indexes.push(IndexMeta {
        name,
        columns,
        unique: create.unique,
        method,
    });
    detached(async move {
        let mut guard = storage.lock_for_commit(vec![handle.clone()]).await;
        guard.set_indexes(&handle, indexes).await?;
        guard.publish().await;
        Ok(())
    })
    .await?;
    Ok(command("CREATE INDEX"))
}

async fn drop(
    session: &Session,
    object_type: ObjectType,
    if_exists: bool,
    names: &[ObjectName],
    cascade: bool,
) -> Result<Outcome> {
    let storage = session.engine().storage().clone();
    let skip = |kind: &str, name: &ObjectName| {
        session.shared.notice(format!(
            "{kind} \"{}\" does not exist, skipping",
            name_parts(name).join(".")
        ));
    };
    match object_type {
        ObjectType::Table => {
            for name in names {
                let Some((schema, table)) = resolve_table(session, name) else {
                    // Its rows are held until it can be read: it cannot be dropped unread.
                    if let Some(error) = unavailable_table(session, name) {
                        return Err(error.into());
                    }
                    if if_exists {
                        skip("table", name);
                        continue;
                    }
                    return Err(SqlError::UndefinedTable(name_parts(name).join(".")));
                };
                if let Some(handle) = storage.table(&schema, &table) {
                    let storage = storage.clone();
                    detached(async move { Ok(storage.drop_table(&handle).await?) }).await?;
                }
            }
            Ok(command("DROP TABLE"))
        }
        ObjectType::Index => {
            for name in names {
                let parts = name_parts(name);
                let index = parts.last().cloned().unwrap_or_default();
                let schemas = match parts.as_slice() {
                    [_] => session.shared.existing_search_path(),
                    [schema, _] => vec![schema.clone()],
                    _ => Vec::new(),
                };
                let owner = schemas.iter().find_map(|s| storage.index_owner(s, &index));
                let Some(handle) = owner else {
                    if if_exists {
                        skip("index", name);
                        continue;
                    }
                    return Err(StorageError::UndefinedIndex(index).into());
                };
                let meta = handle.state().meta;
                if meta.primary_key.as_ref().is_some_and(|pk| pk.name == index) {
                    return Err(SqlError::Unsupported(format!(
                        "cannot drop index {index} because constraint {index} on table {} requires it",
                        handle.name
                    )));
                }
                let indexes = meta
                    .indexes
                    .iter()
                    .filter(|i| i.name != index)
                    .cloned()
                    .collect();
                let storage = storage.clone();
                detached(async move {
                    let mut guard = storage.lock_for_commit(vec![handle.clone()]).await;
                    guard.set_indexes(&handle, indexes).await?;
                    guard.publish().await;
                    Ok(())
                })
                .await?;
            }
            Ok(command("DROP INDEX"))
        }
        ObjectType::Schema => {
            for name in names {
                let schema = name_parts(name).join(".");
                if !storage.has_schema(&schema) {
                    if if_exists {
                        skip("schema", name);
                        continue;
                    }
                    return Err(StorageError::UndefinedSchema(schema).into());
                }
                let storage = storage.clone();
                detached(async move { Ok(storage.drop_schema(&schema, cascade).await?) }).await?;
            }
            Ok(command("DROP SCHEMA"))
        }
        other => Err(SqlError::Unsupported(format!(
            "DROP {other} is not supported"
        ))),
    }
}

/// Deletes every row of the tables: of each, the data files it has once its buffer is flushed
/// (rows inserted meanwhile by other sessions come after the TRUNCATE and stay).
async fn truncate_tables(session: &Session, handles: &[Arc<TableHandle>]) -> Result<()> {
    let storage = session.engine().storage();
    for handle in handles {
        let _turn = handle.queue_change().await;
        let state = storage.read_for_change(handle).await?;
        let files = storage.files_matching(&state, None).await?;
        let ops = vec![WriteOp::Delete {
            predicate: None,
            files,
        }];
        dml::write(session, handle, state.stamp(), ops, None).await?;
    }
    Ok(())
}

async fn add_column(
    session: &Session,
    schema: &str,
    table: &str,
    def: &ColumnDef,
    if_not_exists: bool,
) -> Result<()> {
    let storage = session.engine().storage().clone();
    let handle = storage
        .table(schema, table)
        .ok_or_else(|| SqlError::UndefinedTable(table.to_string()))?;
    let defined = column_definition(schema, table, def)?;
    if defined.primary_key || defined.sequence.is_some() {
        return Err(SqlError::Unsupported(
            "adding a primary key or serial column to an existing table is not supported".into(),
        ));
    }
    let column = defined.column;
    let state = handle.state();
    if state.meta.column_index(&column.name).is_some() {
        if if_not_exists {
            session.shared.notice(format!(
                "column \"{}\" of relation \"{table}\" already exists, skipping",
                column.name
            ));
            return Ok(());
        }
        return Err(StorageError::DuplicateColumn {
            table: table.to_string(),
            column: column.name,
        }
        .into());
    }
    if column.default.is_some() && dml::has_pending_changes(session, &handle) {
        // The column is added (and the rows rewritten) at once, not at COMMIT: the rows this
        // transaction has not committed yet must not go with them.
        return Err(SqlError::Unsupported(format!(
            "cannot add a column with a default to \"{table}\" in a transaction that changed it"
        )));
    }
    if column.not_null && column.default.is_none() && dml::has_rows(session, schema, table).await? {
        return Err(SqlError::NotNullViolation {
            table: table.to_string(),
            column: column.name,
        });
    }
    dml::retry_conflicts(session, || async {
        // Existing rows take the default, as in PostgreSQL: they are rewritten with it in the
        // commit that adds the column.
        let (_pin, fill) = match &column.default {
            Some(default) => {
                let (pin, state) = dml::pin(session, &handle).await?;
                let rows = dml::rows_with_default(session, schema, table, &column, default).await?;
                let files = storage.files_matching(&state, None).await?;
                (Some(pin), Some((files, rows)))
            }
            None => (None, None),
        };
        detached({
            let (storage, handle, column) = (storage.clone(), handle.clone(), column.clone());
            async move {
                let mut guard = storage.lock_for_commit(vec![handle.clone()]).await;
                guard.add_column(&handle, column, fill).await?;
                guard.publish().await;
                Ok(())
            }
        })
        .await
    })
    .await
}
