//! Rewrites of parsed statements before DataFusion plans them.
//!
//! Two kinds, both on the AST (never on SQL text):
//! - PostgreSQL spellings DataFusion does not accept (`OPERATOR(pg_catalog.~)`, `COLLATE`,
//!   `'t'::regclass`, `= ANY('{...}')`), using datafusion-pg-catalog's rules;
//! - name resolution: unqualified relation names are qualified by `search_path`, with
//!   `pg_catalog` searched first, as PostgreSQL does. CTE names are left alone.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock};

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
    GroupByExpr, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement,
    TableFactor, Visit, VisitMut, Visitor, VisitorMut, visit_relations_mut,
};
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
            SelectItem::UnnamedExpr(expr) => figure_name(expr),
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

/// PostgreSQL's `FigureColname`: the column name of an unnamed select item, and whether
/// DataFusion would name it differently.
fn figure_name(expr: &Expr) -> (String, bool) {
    match expr {
        Expr::Identifier(ident) => (normalize_ident(ident), false),
        Expr::CompoundIdentifier(parts) => (parts.last().map(normalize_ident).unwrap_or_default(), false),
        Expr::Function(f) => (name_parts(&f.name).pop().unwrap_or_default().to_lowercase(), true),
        Expr::Cast { expr, data_type, .. } => match figure_name(expr) {
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

/// Spells PostgreSQL's array constructors and set-returning helpers in DataFusion's terms:
/// `ARRAY(SELECT e ... ORDER BY k)` becomes `(SELECT array_agg(e ORDER BY k) ...)`, and
/// `generate_subscripts(a, d)` becomes `unnest(range(1, array_length(a, d) + 1))`, which runs
/// in lockstep with an `unnest(a)` beside it as PostgreSQL's does.
pub fn set_returning_functions(statement: &mut Statement) {
    struct Rewrite;
    impl VisitorMut for Rewrite {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::CompoundFieldAccess { root, access_chain } = expr
                && matches!(root.as_ref(), Expr::Nested(_) | Expr::Function(_))
                && let [datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field))] =
                    access_chain.as_slice()
            {
                // (record).field
                if let Ok(parsed) = parse_expr(&format!("get_field({root}, '{}')", normalize_ident(field))) {
                    *expr = parsed;
                }
                return ControlFlow::Continue(());
            }
            let Expr::Function(f) = expr else {
                return ControlFlow::Continue(());
            };
            let name = name_parts(&f.name).pop().unwrap_or_default();
            match (name.as_str(), &f.args) {
                ("array", FunctionArguments::Subquery(query)) => {
                    if let Some(rewritten) = array_subquery(query) {
                        *expr = rewritten;
                    }
                }
                ("_pg_expandarray", FunctionArguments::List(_)) => {
                    // information_schema._pg_expandarray(a) returns a set of (x, n) records.
                    f.name = ObjectName::from(vec![Ident::new("_pg_expandarray")]);
                    if let Ok(parsed) = parse_expr(&format!("unnest({expr})")) {
                        *expr = parsed;
                    }
                }
                ("generate_subscripts", FunctionArguments::List(list)) if !list.args.is_empty() => {
                    let args: Vec<String> = list.args.iter().map(ToString::to_string).collect();
                    let dim = args.get(1).cloned().unwrap_or_else(|| "1".into());
                    let text = format!(
                        "unnest(range(1, CAST(coalesce(array_length({}, {dim}), 0) AS BIGINT) + 1))",
                        args[0]
                    );
                    if let Ok(parsed) = parse_expr(&text) {
                        *expr = parsed;
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(statement, &mut Rewrite);
    let _ = VisitMut::visit(statement, &mut FunctionsInFrom);
    let _ = VisitMut::visit(statement, &mut ArrayLiterals);
}

/// `FROM unnest(arr) AS x` becomes `FROM (SELECT unnest(arr) AS x) AS x`: PostgreSQL names the
/// column after the alias, and DataFusion's unnest is a projection.
struct FunctionsInFrom;

impl VisitorMut for FunctionsInFrom {
    type Break = ();
    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let function = name_parts(name).pop().unwrap_or_default();
        let args: Vec<String> = args.args.iter().map(ToString::to_string).collect();
        let constant = |a: &String| a.chars().all(|c| c.is_ascii_digit() || c == '-' || c == ' ');
        let projection = match function.as_str() {
            "unnest" => format!("unnest({})", args.join(", ")),
            // Table functions with computed bounds (often outer columns) as a projection.
            "generate_series" if args.len() == 2 && !args.iter().all(constant) => format!(
                "unnest(range(CAST({} AS BIGINT), CAST({} AS BIGINT) + 1))",
                args[0], args[1]
            ),
            _ => return ControlFlow::Continue(()),
        };
        {
            let alias_name = alias
                .as_ref()
                .map_or_else(|| function.clone(), |a| a.name.to_string());
            let sql = format!(
                "SELECT * FROM (SELECT {projection} AS {alias_name}) AS {alias_name}"
            );
            if let Ok(mut parsed) = datafusion::sql::sqlparser::parser::Parser::new(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            )
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_query())
                && let SetExpr::Select(select) = parsed.body.as_mut()
                && let Some(from) = select.from.pop()
            {
                *factor = from.relation;
            }
        }
        ControlFlow::Continue(())
    }
}

/// `arr = '{0}'`: an array literal written as a string is an array, as PostgreSQL infers it.
struct ArrayLiterals;

impl VisitorMut for ArrayLiterals {
    type Break = ();
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp { left, op, right } = expr
            && matches!(
                op,
                datafusion::sql::sqlparser::ast::BinaryOperator::Eq
                    | datafusion::sql::sqlparser::ast::BinaryOperator::NotEq
            )
        {
            for side in [left, right] {
                if let Expr::Value(v) = side.as_ref()
                    && let datafusion::sql::sqlparser::ast::Value::SingleQuotedString(text) = &v.value
                    && text.starts_with('{')
                    && text.ends_with('}')
                    && let Some(array) = array_literal(text)
                {
                    **side = array;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `'{1,2}'` as `make_array(1, 2)`; `'{a,"b c"}'` as `make_array('a', 'b c')`.
fn array_literal(text: &str) -> Option<Expr> {
    let inner = &text[1..text.len() - 1];
    let items: Vec<String> = if inner.trim().is_empty() {
        Vec::new()
    } else {
        inner
            .split(',')
            .map(|item| {
                let item = item.trim();
                if item.parse::<f64>().is_ok() {
                    item.to_string()
                } else {
                    format!("'{}'", item.trim_matches('"').replace('\'', "''"))
                }
            })
            .collect()
    };
    parse_expr(&format!("make_array({})", items.join(", "))).ok()
}

fn parse_expr(text: &str) -> Result<Expr, datafusion::sql::sqlparser::parser::ParserError> {
    datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(text)?
        .parse_expr()
}

fn array_subquery(query: &Query) -> Option<Expr> {
    let mut query = query.clone();
    let order_by = query.order_by.take();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let [item] = select.projection.as_slice() else {
        return None;
    };
    let element = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    let order = match order_by.as_ref().map(|o| &o.kind) {
        Some(datafusion::sql::sqlparser::ast::OrderByKind::Expressions(exprs)) if !exprs.is_empty() => {
            let keys: Vec<String> = exprs
                .iter()
                .map(|o| {
                    let key = match &o.expr {
                        Expr::Value(v) if v.to_string() == "1" => element.to_string(),
                        other => other.to_string(),
                    };
                    format!("{key}{}", o.options)
                })
                .collect();
            format!(" ORDER BY {}", keys.join(", "))
        }
        _ => String::new(),
    };
    let aggregate = parse_expr(&format!("array_agg({element}{order})")).ok()?;
    select.projection = vec![SelectItem::UnnamedExpr(aggregate)];
    Some(Expr::Subquery(Box::new(query)))
}

/// Wraps the single result of correlated scalar subqueries in `max(...)`.
///
/// PostgreSQL evaluates `(SELECT x FROM t WHERE t.k = outer.k)` per row and errors only if it
/// returns several rows; DataFusion decorrelates only aggregated subqueries. When the
/// subquery returns at most one row, `max` of it is the same value, so catalog queries such
/// as psql's `\d` (which reads a column default this way) plan and answer correctly.
pub fn aggregate_correlated_subqueries(statement: &mut Statement) {
    struct Wrap;
    impl VisitorMut for Wrap {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Subquery(query) = expr
                && let SetExpr::Select(select) = query.body.as_mut()
                && select.projection.len() == 1
                && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
                && query.limit_clause.is_none()
                && is_correlated(select)
            {
                let item = &mut select.projection[0];
                let inner = match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                    _ => return ControlFlow::Continue(()),
                };
                if !is_aggregate(inner) {
                    *inner = Expr::Function(Function {
                        name: ObjectName::from(vec![Ident::new("max")]),
                        uses_odbc_syntax: false,
                        parameters: FunctionArguments::None,
                        args: FunctionArguments::List(FunctionArgumentList {
                            duplicate_treatment: None,
                            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(inner.clone()))],
                            clauses: vec![],
                        }),
                        filter: None,
                        null_treatment: None,
                        over: None,
                        within_group: vec![],
                    });
                }
                hoist_outer_conditions(expr);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Wrap);
}

/// Moves conditions that only test the outer row out of an aggregated scalar subquery:
/// `(SELECT max(x) FROM t WHERE t.k = o.k AND o.flag)` becomes
/// `CASE WHEN o.flag THEN (SELECT max(x) FROM t WHERE t.k = o.k) END`, which is the same
/// value (an empty aggregate is NULL) and which DataFusion can decorrelate.
fn hoist_outer_conditions(expr: &mut Expr) {
    let Expr::Subquery(query) = expr else { return };
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    let Some(selection) = select.selection.take() else { return };
    let local = local_qualifiers(select);
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    // Where `inner = outer.col` holds, other conditions may read `inner` instead of
    // `outer.col`; that turns mixed conditions (which DataFusion cannot decorrelate) into
    // local ones.
    let mut equal: HashMap<String, Expr> = HashMap::new();
    for c in &conjuncts {
        if let Expr::BinaryOp { left, op: datafusion::sql::sqlparser::ast::BinaryOperator::Eq, right } = c {
            for (a, b) in [(left, right), (right, left)] {
                if matches!(a.as_ref(), Expr::CompoundIdentifier(_)) && only_outer(a, &local) && only_local(b, &local) {
                    equal.insert(a.to_string(), (**b).clone());
                }
            }
        }
    }
    let conjuncts: Vec<Expr> = conjuncts
        .into_iter()
        .map(|c| {
            if only_outer(&c, &local) || equal.is_empty() || is_correlation_equality(&c, &equal) {
                return c;
            }
            let mut c = c;
            let _ = VisitMut::visit(&mut c, &mut Substitute(&equal));
            c
        })
        .collect();
    let (outer, inner): (Vec<Expr>, Vec<Expr>) = conjuncts
        .into_iter()
        .partition(|c| only_outer(c, &local));
    select.selection = inner.into_iter().reduce(and);
    if let Some(condition) = outer.into_iter().reduce(and) {
        let text = format!("CASE WHEN {condition} THEN ({query}) END");
        if let Ok(parsed) = datafusion::sql::sqlparser::parser::Parser::new(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        )
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        {
            *expr = parsed;
        }
    }
}

/// Replaces outer columns by the local expressions they are known to equal.
struct Substitute<'a>(&'a HashMap<String, Expr>);

impl VisitorMut for Substitute<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(_) = expr
            && let Some(local) = self.0.get(&expr.to_string())
        {
            *expr = local.clone();
        }
        ControlFlow::Continue(())
    }
}

fn is_correlation_equality(expr: &Expr, equal: &HashMap<String, Expr>) -> bool {
    matches!(expr, Expr::BinaryOp { left, op: datafusion::sql::sqlparser::ast::BinaryOperator::Eq, right }
        if equal.contains_key(&left.to_string()) || equal.contains_key(&right.to_string()))
}

/// Whether an expression reads only columns qualified by the subquery's own relations.
fn only_local(expr: &Expr, local: &HashSet<String>) -> bool {
    struct Refs<'a> {
        local: &'a HashSet<String>,
        outer: bool,
    }
    impl Visitor for Refs<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = expr
                && parts.len() >= 2
                && !self.local.contains(&normalize_ident(&parts[parts.len() - 2]))
            {
                self.outer = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut refs = Refs { local, outer: false };
    let _ = expr.visit(&mut refs);
    !refs.outer
}

fn and(left: Expr, right: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(left),
        op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
        right: Box::new(right),
    }
}

fn split_and(expr: Expr, out: &mut Vec<Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        Expr::Nested(inner) if matches!(inner.as_ref(), Expr::BinaryOp { op: datafusion::sql::sqlparser::ast::BinaryOperator::And, .. }) => {
            split_and(*inner, out)
        }
        other => out.push(other),
    }
}

/// Whether an expression reads only qualified columns of outer relations.
fn only_outer(expr: &Expr, local: &HashSet<String>) -> bool {
    struct Refs<'a> {
        local: &'a HashSet<String>,
        outer: usize,
        other: usize,
    }
    impl Visitor for Refs<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    if self.local.contains(&normalize_ident(&parts[parts.len() - 2])) {
                        self.other += 1;
                    } else {
                        self.outer += 1;
                    }
                }
                Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    self.other += 1
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut refs = Refs {
        local,
        outer: 0,
        other: 0,
    };
    let _ = expr.visit(&mut refs);
    refs.outer > 0 && refs.other == 0
}

fn is_aggregate(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(f) if matches!(
        name_parts(&f.name).last().map(String::as_str),
        Some("max" | "min" | "count" | "sum" | "avg" | "array_agg" | "string_agg" | "bool_and" | "bool_or")
    ))
}

/// The names a SELECT's FROM clause defines (aliases and table names).
fn local_qualifiers(select: &Select) -> HashSet<String> {
    let mut local: HashSet<String> = HashSet::new();
    for table in &select.from {
        for factor in std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table { name, alias, .. } = factor {
                if let Some(alias) = alias {
                    local.insert(normalize_ident(&alias.name));
                }
                if let Some(last) = name_parts(name).pop() {
                    local.insert(last);
                }
            }
        }
    }
    local
}

/// Whether a subquery refers to a qualifier its own FROM clause does not define.
fn is_correlated(select: &Select) -> bool {
    let local = local_qualifiers(select);
    struct Outer<'a> {
        local: &'a HashSet<String>,
        found: bool,
    }
    impl Visitor for Outer<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = expr
                && parts.len() >= 2
                && !self.local.contains(&normalize_ident(&parts[parts.len() - 2]))
            {
                self.found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut outer = Outer {
        local: &local,
        found: false,
    };
    let _ = select.selection.visit(&mut outer);
    let _ = select.projection.visit(&mut outer);
    outer.found
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0)
    }

    #[test]
    fn qualifies_by_search_path_and_skips_ctes() {
        let mut stmt = parse(
            "WITH t AS (SELECT 1) SELECT * FROM t, Readings r JOIN pg_class c ON true, nosuch",
        );
        let path = vec!["pg_catalog".to_string(), "ignition".into(), "public".into()];
        qualify_relations(&mut stmt, &path, |schema, name| {
            matches!((schema, name), ("public", "readings") | ("pg_catalog", "pg_class") | ("ignition", "t"))
        });
        let sql = stmt.to_string();
        assert!(sql.contains("FROM t,"), "{sql}");
        assert!(sql.contains("\"public\".\"readings\" AS r"), "{sql}");
        assert!(sql.contains("\"pg_catalog\".\"pg_class\" AS c"), "{sql}");
        assert!(sql.contains(", nosuch"), "{sql}");
    }
}
