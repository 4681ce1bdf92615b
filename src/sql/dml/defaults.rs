//! Column defaults in INSERT: omitted columns, `DEFAULT` markers and `DEFAULT VALUES` take the
//! stored default expression; `'\\x..'` literals for bytea columns are read as hex.

use super::*;

/// Fills omitted columns and `DEFAULT` markers of an INSERT with the columns' defaults.
pub(super) fn fill_defaults(
    insert: &mut datafusion::sql::sqlparser::ast::Insert,
    meta: &TableMeta,
) -> Result<()> {
    let default_of = |column: &ColumnMeta| -> Result<SqlExpr> {
        match &column.default {
            Some(text) => parse_default(text),
            None => Ok(SqlExpr::Value(Value::Null.into())),
        }
    };
    let mut listed: Vec<String> = insert
        .columns
        .iter()
        .map(|c| name_parts(c).pop().unwrap_or_default())
        .collect();
    if insert.source.is_none() {
        // DEFAULT VALUES
        let row: Vec<SqlExpr> = meta.columns.iter().map(default_of).collect::<Result<_>>()?;
        insert.columns = meta.columns.iter().map(|c| column_name(&c.name)).collect();
        insert.source = Some(Box::new(values_query(vec![row])?));
        return Ok(());
    }
    let Some(source) = insert.source.as_mut() else {
        return Ok(());
    };
    if listed.is_empty() {
        let width = match source.body.as_ref() {
            SetExpr::Values(values) => values
                .rows
                .first()
                .map_or(meta.columns.len(), |r| r.content.len()),
            _ => meta.columns.len(),
        };
        listed = meta
            .columns
            .iter()
            .take(width)
            .map(|c| c.name.clone())
            .collect();
        insert.columns = listed.iter().map(|c| column_name(c)).collect();
    }
    let omitted: Vec<&ColumnMeta> = meta
        .columns
        .iter()
        .filter(|c| !listed.contains(&c.name) && c.default.is_some())
        .collect();
    if let SetExpr::Select(select) = source.body.as_mut() {
        name_repeated_expressions(&mut select.projection);
    }
    match source.body.as_mut() {
        SetExpr::Values(values) => {
            for row in &mut values.rows {
                for (i, value) in row.content.iter_mut().enumerate() {
                    if is_default_marker(value) {
                        let column = listed
                            .get(i)
                            .and_then(|name| meta.columns.iter().find(|c| &c.name == name));
                        *value = match column {
                            Some(column) => default_of(column)?,
                            None => SqlExpr::Value(Value::Null.into()),
                        };
                    }
                }
                for (i, value) in row.content.iter_mut().enumerate() {
                    let is_bytea = listed
                        .get(i)
                        .and_then(|name| meta.columns.iter().find(|c| &c.name == name))
                        .is_some_and(|c| c.pg_type == PgType::Bytea);
                    if is_bytea {
                        bytea_literal(value)?;
                    }
                }
                for column in &omitted {
                    row.content.push(default_of(column)?);
                }
            }
        }
        _ if !omitted.is_empty() => {
            // INSERT ... SELECT: SELECT src.*, <defaults> FROM (<source>) AS src
            let mut projection = vec![SelectItem::QualifiedWildcard(
                datafusion::sql::sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(
                    ObjectName::from(vec![Ident::new("__deltagate_src")]),
                ),
                Default::default(),
            )];
            for column in &omitted {
                projection.push(SelectItem::UnnamedExpr(default_of(column)?));
            }
            let inner = source.clone();
            let sql = format!(
                "SELECT {} FROM ({inner}) AS __deltagate_src",
                projection
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let parsed = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&sql)?
                .parse_query()?;
            *source = parsed;
        }
        _ => {}
    }
    for column in omitted {
        insert.columns.push(column_name(&column.name));
    }
    Ok(())
}

/// Gives each unnamed SELECT item whose text repeats another's (`SELECT 'x', 1, 1`) a name of
/// its own: INSERT takes them by position, but a projection needs unique names.
fn name_repeated_expressions(projection: &mut [SelectItem]) {
    let texts: Vec<Option<String>> = projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some(expr.to_string()),
            _ => None,
        })
        .collect();
    for (i, item) in projection.iter_mut().enumerate() {
        let repeated = texts[i]
            .as_ref()
            .is_some_and(|text| texts.iter().filter(|t| t.as_ref() == Some(text)).count() > 1);
        if let (true, SelectItem::UnnamedExpr(expr)) = (repeated, &*item) {
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::with_quote('"', format!("?column?{}", i + 1)),
            };
        }
    }
}

/// Computes the defaults of the columns not `given` for rows decoded outside SQL (COPY); a
/// volatile default such as `nextval` is evaluated once per row.
pub(super) async fn with_defaults(
    session: &Session,
    meta: &TableMeta,
    given: &[bool],
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let frame = session.ctx.read_batches(batches)?;
    let schema = frame.schema().clone();
    let mut exprs = Vec::with_capacity(meta.columns.len());
    for (i, column) in meta.columns.iter().enumerate() {
        let current = col(Column::new_unqualified(&column.name));
        exprs.push(
            match (&column.default, given.get(i).copied().unwrap_or(true)) {
                (Some(text), false) => {
                    let sql = parse_default(text)?.to_string();
                    let target = meta.arrow_schema.field(i).data_type().clone();
                    datafusion::logical_expr::cast(
                        session.ctx.parse_sql_expr(&sql, &schema)?,
                        target,
                    )
                    .alias(&column.name)
                }
                _ => current,
            },
        );
    }
    Ok(frame.select(exprs)?.collect().await?)
}

/// `'\x00ff'` for a bytea column is hex input, as PostgreSQL reads it.
fn bytea_literal(value: &mut SqlExpr) -> Result<()> {
    if let SqlExpr::Value(v) = value
        && let Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) = &v.value
        && let Some(hex) = text.strip_prefix("\\x")
    {
        if hex.len() % 2 != 0 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SqlError::InvalidTextRepresentation(format!(
                "invalid hexadecimal data for type bytea: \"{text}\""
            )));
        }
        *value = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&format!("decode('{hex}', 'hex')"))?
            .parse_expr()?;
    }
    Ok(())
}

fn column_name(name: &str) -> ObjectName {
    ObjectName(vec![ObjectNamePart::Identifier(quoted(name))])
}

fn values_query(rows: Vec<Vec<SqlExpr>>) -> Result<Query> {
    let sql = format!(
        "VALUES {}",
        rows.iter()
            .map(|r| format!(
                "({})",
                r.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(*Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)?
        .parse_query()?)
}

fn is_default_marker(expr: &SqlExpr) -> bool {
    matches!(expr, SqlExpr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// Parses a stored default. `'seq'::regclass` becomes the plain name, which `nextval`
/// resolves through the search path.
pub(super) fn parse_default(text: &str) -> Result<SqlExpr> {
    let mut expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)?
        .parse_expr()?;
    strip_regclass(&mut expr);
    Ok(expr)
}

pub(super) fn strip_regclass(expr: &mut SqlExpr) {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    match expr {
        SqlExpr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr: inner,
            data_type,
            ..
        } if matches!(data_type, SqlType::Regclass)
            || data_type.to_string().eq_ignore_ascii_case("regclass") =>
        {
            *expr = (**inner).clone();
        }
        SqlExpr::Function(f) => {
            if let FunctionArguments::List(list) = &mut f.args {
                for arg in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                        strip_regclass(e);
                    }
                }
            }
        }
        _ => {}
    }
}
