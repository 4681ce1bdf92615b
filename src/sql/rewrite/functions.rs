//! Set-returning and array spellings of PostgreSQL, in DataFusion's terms.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArguments, Ident, ObjectName, Query, SelectItem, SetExpr, Statement,
    TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
};

use super::{name_parts, normalize_ident, parse_expr};

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
                if let Ok(parsed) =
                    parse_expr(&format!("get_field({root}, '{}')", normalize_ident(field)))
                {
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
        let constant = |a: &String| {
            a.chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == ' ')
        };
        let projection = match function.as_str() {
            "unnest" => format!("unnest({})", args.join(", ")),
            // Table functions with computed bounds (often outer columns) as a projection.
            "generate_series" if args.len() == 2 && !args.iter().all(constant) => format!(
                "unnest(range(CAST({} AS BIGINT), CAST({} AS BIGINT) + 1))",
                args[0], args[1]
            ),
            // A one-column function's column takes the table alias's name: `generate_series(1,
            // 3) g` has a column `g` (DataFusion would call it `value`).
            "generate_series" => {
                if let Some(alias) = alias
                    && alias.columns.is_empty()
                {
                    alias.columns.push(TableAliasColumnDef {
                        name: alias.name.clone(),
                        data_type: None,
                    });
                }
                return ControlFlow::Continue(());
            }
            _ => return ControlFlow::Continue(()),
        };
        {
            let alias_name = alias
                .as_ref()
                .map_or_else(|| function.clone(), |a| a.name.to_string());
            let sql =
                format!("SELECT * FROM (SELECT {projection} AS {alias_name}) AS {alias_name}");
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
                    && let datafusion::sql::sqlparser::ast::Value::SingleQuotedString(text) =
                        &v.value
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
        Some(datafusion::sql::sqlparser::ast::OrderByKind::Expressions(exprs))
            if !exprs.is_empty() =>
        {
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
