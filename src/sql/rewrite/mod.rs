//! Rewrites of parsed statements before DataFusion plans them.
//!
//! Two kinds, both on the AST (never on SQL text):
//! - PostgreSQL spellings DataFusion does not accept (`OPERATOR(pg_catalog.~)`, `COLLATE`,
//!   `'t'::regclass`, `= ANY('{...}')`), using datafusion-pg-catalog's rules, and date/time
//!   spellings (`AT TIME ZONE`, `EXTRACT`, literals: `datetime`);
//! - name resolution: unqualified relation names are qualified by `search_path`, with
//!   `pg_catalog` searched first, as PostgreSQL does. CTE names are left alone.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock};

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement, Visit,
    Visitor, visit_relations_mut,
};
mod datetime;
mod functions;
mod subqueries;

pub use datetime::datetime_spellings;
pub use functions::set_returning_functions;
pub use subqueries::aggregate_correlated_subqueries;

use datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, ResolveUnqualifiedIdentifier,
    RewriteArrayAnyAllOperation, RewritePgCatalogOperator, RewriteRegCastToSubquery,
    SqlStatementRewriteRule, StripCallableQualifier, StripCollate,
};

static RULES: LazyLock<Vec<Arc<dyn SqlStatementRewriteRule>>> = LazyLock::new(|| {
    vec![
        Arc::new(AliasDuplicatedProjectionRewrite),
        Arc::new(ResolveUnqualifiedIdentifier),
        Arc::new(RewriteArrayAnyAllOperation),
        Arc::new(StripCallableQualifier),
        Arc::new(FixArrayLiteral),
        Arc::new(CurrentUserVariableToSessionUserFunctionCall),
        Arc::new(StripCollate),
        Arc::new(RewritePgCatalogOperator),
        Arc::new(RewriteRegCastToSubquery::new()),
        Arc::new(FixVersionColumnName),
    ]
});

/// Applies the PostgreSQL compatibility rewrites.
pub fn pg_compat(mut statement: Statement) -> Statement {
    pg_column_names(&mut statement);
    set_returning_functions(&mut statement);
    for rule in RULES.iter() {
        statement = rule.rewrite(statement);
    }
    aggregate_correlated_subqueries(&mut statement);
    statement
}

/// The name of an identifier as PostgreSQL folds it: unquoted names are lower-cased.
pub fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The parts of an object name, normalized.
pub fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => normalize_ident(ident),
            other => other.to_string(),
        })
        .collect()
}

/// A quoted identifier, so DataFusion keeps its case.
pub fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

/// Qualifies every unqualified relation in the statement with the first schema of `path`
/// that has it. `exists(schema, name)` answers whether a relation exists.
pub fn qualify_relations(
    statement: &mut Statement,
    path: &[String],
    exists: impl Fn(&str, &str) -> bool,
) {
    let ctes = cte_names(statement);
    let _ = visit_relations_mut(statement, |name: &mut ObjectName| {
        let parts = name_parts(name);
        if parts.len() == 1 && !ctes.contains(&parts[0]) {
            let relation = &parts[0];
            if let Some(schema) = path.iter().find(|schema| exists(schema, relation)) {
                name.0 = vec![
                    ObjectNamePart::Identifier(quoted(schema)),
                    ObjectNamePart::Identifier(quoted(relation)),
                ];
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Names defined by `WITH` clauses anywhere in the statement.
fn cte_names(statement: &Statement) -> HashSet<String> {
    struct Ctes(HashSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    self.0.insert(normalize_ident(&cte.alias.name));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(HashSet::new());
    let _ = statement.visit(&mut ctes);
    ctes.0
}

/// Separates a result column's display name from the suffix that keeps DataFusion's
/// projection names unique; the wire layer shows only what precedes it.
pub const NAME_MARK: char = '\u{1f}';

/// Names the result columns of a query as PostgreSQL does (`count`, `?column?`, `int4`),
/// where DataFusion would use the expression text. Duplicate names, which PostgreSQL allows
/// and DataFusion does not, get a hidden suffix after [`NAME_MARK`].
pub fn pg_column_names(statement: &mut Statement) {
    if let Statement::Query(query) = statement {
        name_set_expr(&mut query.body);
    }
}

fn name_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => name_select(select),
        SetExpr::SetOperation { left, .. } => name_set_expr(left),
        SetExpr::Query(query) => name_set_expr(&mut query.body),
        _ => {}
    }
}

fn name_select(select: &mut Select) {
    let mut used: HashMap<String, usize> = HashMap::new();
    for item in &mut select.projection {
        let (name, rename) = match item {
            SelectItem::UnnamedExpr(expr) => {
                let (name, rename) = figure_name(expr);
                (name, int4_literal(expr) || rename)
            }
            SelectItem::ExprWithAlias { alias, .. } => (normalize_ident(alias), false),
            _ => continue,
        };
        let seen = used.entry(name.clone()).or_insert(0);
        *seen += 1;
        let unique = if *seen > 1 {
            format!("{name}{NAME_MARK}{seen}")
        } else {
            name
        };
        match item {
            SelectItem::UnnamedExpr(expr) if rename || *seen > 1 => {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: quoted(&unique),
                };
            }
            SelectItem::ExprWithAlias { alias, .. } if *seen > 1 => *alias = quoted(&unique),
            _ => {}
        }
    }
}

/// `SELECT 1` is `integer` in PostgreSQL, not `bigint`: small integer literals in a select
/// list are typed int4.
fn int4_literal(expr: &mut Expr) -> bool {
    if let Expr::Value(v) = expr
        && let datafusion::sql::sqlparser::ast::Value::Number(text, false) = &v.value
        && text.parse::<i32>().is_ok()
        && let Ok(cast) = parse_expr(&format!("CAST({text} AS INT)"))
    {
        *expr = cast;
        return true;
    }
    false
}

/// PostgreSQL's `FigureColname`: the column name of an unnamed select item, and whether
/// DataFusion would name it differently.
fn figure_name(expr: &Expr) -> (String, bool) {
    match expr {
        Expr::Identifier(ident) => (normalize_ident(ident), false),
        Expr::CompoundIdentifier(parts) => {
            (parts.last().map(normalize_ident).unwrap_or_default(), false)
        }
        Expr::Function(f) => (
            name_parts(&f.name).pop().unwrap_or_default().to_lowercase(),
            true,
        ),
        Expr::Cast {
            expr, data_type, ..
        } => match figure_name(expr) {
            (name, _) if name != "?column?" => (name, true),
            _ => {
                let text = data_type.to_string();
                let name = crate::pgtypes::PgType::parse(&text)
                    .map(|t| t.typname().to_string())
                    .unwrap_or_else(|_| text.to_lowercase());
                (name, true)
            }
        },
        Expr::Nested(inner) => (figure_name(inner).0, true),
        Expr::Case { .. } => ("case".into(), true),
        Expr::Exists { .. } => ("exists".into(), true),
        Expr::Array(_) => ("array".into(), true),
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.first() {
                Some(SelectItem::UnnamedExpr(e)) => (figure_name(e).0, true),
                Some(SelectItem::ExprWithAlias { alias, .. }) => (normalize_ident(alias), true),
                _ => ("?column?".into(), true),
            },
            _ => ("?column?".into(), true),
        },
        _ => ("?column?".into(), true),
    }
}

pub(crate) fn parse_expr(
    text: &str,
) -> Result<Expr, datafusion::sql::sqlparser::parser::ParserError> {
    datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(text)?
    .parse_expr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn qualifies_by_search_path_and_skips_ctes() {
        let mut stmt = parse(
            "WITH t AS (SELECT 1) SELECT * FROM t, Readings r JOIN pg_class c ON true, nosuch",
        );
        let path = vec!["pg_catalog".to_string(), "ignition".into(), "public".into()];
        qualify_relations(&mut stmt, &path, |schema, name| {
            matches!(
                (schema, name),
                ("public", "readings") | ("pg_catalog", "pg_class") | ("ignition", "t")
            )
        });
        let sql = stmt.to_string();
        assert!(sql.contains("FROM t,"), "{sql}");
        assert!(sql.contains("\"public\".\"readings\" r"), "{sql}");
        assert!(sql.contains("\"pg_catalog\".\"pg_class\" c"), "{sql}");
        assert!(sql.contains(", nosuch"), "{sql}");
    }
}
