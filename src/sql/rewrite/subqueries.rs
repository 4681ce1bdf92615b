//! Correlated scalar subqueries reshaped so DataFusion can decorrelate them (those it still
//! cannot are run per row by [`crate::sql::subplan`]).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, GroupByExpr, Ident, ObjectName, Select, SelectItem, SetExpr, Statement,
    TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};

use super::{name_parts, normalize_ident};

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
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let Some(selection) = select.selection.take() else {
        return;
    };
    let local = local_qualifiers(select);
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    // Where `inner = outer.col` holds, other conditions may read `inner` instead of
    // `outer.col`; that turns mixed conditions (which DataFusion cannot decorrelate) into
    // local ones.
    let mut equal: HashMap<String, Expr> = HashMap::new();
    for c in &conjuncts {
        if let Expr::BinaryOp {
            left,
            op: datafusion::sql::sqlparser::ast::BinaryOperator::Eq,
            right,
        } = c
        {
            for (a, b) in [(left, right), (right, left)] {
                if matches!(a.as_ref(), Expr::CompoundIdentifier(_))
                    && only_outer(a, &local)
                    && only_local(b, &local)
                {
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
    let (outer, inner): (Vec<Expr>, Vec<Expr>) =
        conjuncts.into_iter().partition(|c| only_outer(c, &local));
    // Rebuilt balanced when long, as the parse left them (see `limits`).
    select.selection = crate::sql::limits::join_terms(inner, &BinaryOperator::And);
    if let Some(condition) = crate::sql::limits::join_terms(outer, &BinaryOperator::And) {
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
                && !self
                    .local
                    .contains(&normalize_ident(&parts[parts.len() - 2]))
            {
                self.outer = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut refs = Refs {
        local,
        outer: false,
    };
    let _ = expr.visit(&mut refs);
    !refs.outer
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
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
                    ..
                }
            ) =>
        {
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
                    if self
                        .local
                        .contains(&normalize_ident(&parts[parts.len() - 2]))
                    {
                        self.other += 1;
                    } else {
                        self.outer += 1;
                    }
                }
                Expr::Identifier(_)
                | Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::InSubquery { .. } => self.other += 1,
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
        for factor in
            std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation))
        {
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
                && !self
                    .local
                    .contains(&normalize_ident(&parts[parts.len() - 2]))
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
