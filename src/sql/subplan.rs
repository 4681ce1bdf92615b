//! Correlated scalar subqueries that DataFusion cannot decorrelate, evaluated per outer row.
//!
//! Catalog queries from psql, SQLAlchemy and JDBC tools correlate subqueries in ways
//! DataFusion's decorrelation rejects (non-equality conditions, outer columns inside function
//! calls). PostgreSQL runs such a subquery as a *SubPlan*: once per outer row, with the outer
//! values as parameters. This module does the same. When a plan fails for that reason, each
//! correlated scalar subquery is replaced by a call to a per-statement function whose
//! arguments are the outer columns it reads; the function plans the subquery once with those
//! columns as `$n` parameters, runs it for each distinct set of outer values (cached), and
//! returns its single value, or NULL when it returns no row (more than one row is 21000, as in
//! PostgreSQL). Only statements DataFusion cannot plan otherwise take this path.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, Query, Statement, TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut,
};
use parking_lot::Mutex;

use super::rewrite::normalize_ident;
use super::session::Session;
use super::{Result, SqlError};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// Whether a planning or execution error is DataFusion refusing a correlated subquery.
pub fn is_decorrelation_failure(error: &SqlError) -> bool {
    let text = error.to_string();
    text.contains("does not support logical expression ScalarSubquery")
        || text.contains("Correlated scalar subquery")
        || text.contains("correlated subquery")
}

/// A correlated subquery found in the statement.
struct Found {
    /// The subquery with outer references replaced by `$1..$n`.
    template: Query,
    /// The outer references, in parameter order.
    outer: Vec<Expr>,
    /// The expression in the statement to replace.
    original: Expr,
}

/// Rewrites the correlated scalar subqueries of a statement into per-row function calls.
///
/// # Errors
/// Planning errors of the subqueries themselves.
pub async fn rewrite(session: &Session, statement: &Statement) -> Result<Statement> {
    let mut found = Vec::new();
    for query in subqueries(statement) {
        let local = qualifiers(&query);
        let columns = local_columns(session, &query).await;
        let mut outer: Vec<Expr> = Vec::new();
        let mut template = query.clone();
        let _ = VisitMut::visit(
            &mut template,
            &mut Parameterize {
                local: &local,
                columns: &columns,
                outer: &mut outer,
            },
        );
        if !outer.is_empty() {
            found.push(Found {
                template,
                outer,
                original: Expr::Subquery(Box::new(query)),
            });
        }
    }
    if found.is_empty() {
        return Ok(statement.clone());
    }
    let mut statement = statement.clone();
    for mut item in found {
        let types = outer_types(session, &statement, &item.outer).await;
        if !types.is_empty() {
            let _ = VisitMut::visit(&mut item.template, &mut TypePlaceholders(&types));
        }
        let mut template = Statement::Query(Box::new(item.template.clone()));
        session.qualify(&mut template);
        let plan = session.shared.plan_in_view(&session.ctx, template).await?;
        let output = plan
            .schema()
            .fields()
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        let name = format!("__subplan_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let param_types = parameter_types(&plan);
        session.ctx.register_udf(ScalarUDF::new_from_impl(SubPlan {
            name: name.clone(),
            signature: Signature::variadic_any(Volatility::Volatile),
            output,
            plan,
            param_types,
            ctx: session.ctx.clone(),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }));
        let call = Expr::Function(Function {
            name: ObjectName::from(vec![Ident::new(name)]),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: if item.outer.is_empty() {
                    // A constant argument keeps the call per-row (one row's worth of work).
                    vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(
                        Value::Null.into(),
                    )))]
                } else {
                    item.outer
                        .iter()
                        .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e.clone())))
                        .collect()
                },
                clauses: vec![],
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: vec![],
        });
        replace(&mut statement, &item.original, &call);
    }
    Ok(statement)
}

/// The SQL types of the outer references, found by planning them against the statement's
/// own FROM clause; empty when that is not possible.
async fn outer_types(
    session: &Session,
    statement: &Statement,
    outer: &[Expr],
) -> Vec<Option<String>> {
    let Statement::Query(query) = statement else {
        return Vec::new();
    };
    let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = query.body.as_ref() else {
        return Vec::new();
    };
    if select.from.is_empty() {
        return Vec::new();
    }
    let from: Vec<String> = select.from.iter().map(ToString::to_string).collect();
    let items: Vec<String> = outer.iter().map(ToString::to_string).collect();
    let sql = format!(
        "SELECT {} FROM {} LIMIT 0",
        items.join(", "),
        from.join(", ")
    );
    let Ok(mut statements) = session.parse(&sql) else {
        return Vec::new();
    };
    let Some(probe) = statements.pop() else {
        return Vec::new();
    };
    let Ok(plan) = session.plan(probe).await else {
        return Vec::new();
    };
    plan.schema()
        .fields()
        .iter()
        .map(|f| sql_type(f.data_type()))
        .collect()
}

/// A SQL spelling of an Arrow type, for the casts that type subquery parameters.
fn sql_type(data_type: &DataType) -> Option<String> {
    Some(match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE PRECISION".into(),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "TEXT".into(),
        DataType::List(field) => format!("{}[]", sql_type(field.data_type())?),
        _ => return None,
    })
}

/// Casts each `$n` to its known type so the subquery plans as it will run.
struct TypePlaceholders<'a>(&'a [Option<String>]);

impl VisitorMut for TypePlaceholders<'_> {
    type Break = ();
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &v.value
            && let Some(Some(ty)) = p
                .trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .and_then(|i| self.0.get(i - 1))
            && let Ok(cast) = datafusion::sql::sqlparser::parser::Parser::new(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            )
            .try_with_sql(&format!("CAST({p} AS {ty})"))
            .and_then(|mut parser| parser.parse_expr())
        {
            *expr = cast;
        }
        ControlFlow::Continue(())
    }
}

fn parameter_types(plan: &LogicalPlan) -> Vec<Option<DataType>> {
    let types = plan.get_parameter_types().unwrap_or_default();
    let count = types
        .keys()
        .filter_map(|k| k.trim_start_matches('$').parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    (1..=count)
        .map(|i| types.get(&format!("${i}")).cloned().flatten())
        .collect()
}

/// Every scalar subquery of the statement, outermost first (nested ones are handled as part
/// of the subquery that contains them).
fn subqueries(statement: &Statement) -> Vec<Query> {
    struct Finder {
        found: Vec<Query>,
        depth: usize,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Subquery(query) = expr {
                if self.depth == 0 {
                    self.found.push((**query).clone());
                }
                self.depth += 1;
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Subquery(_) = expr {
                self.depth -= 1;
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder {
        found: Vec::new(),
        depth: 0,
    };
    let _ = statement.visit(&mut finder);
    finder.found
}

/// Column names the subquery's own relations provide, so bare names not among them are
/// references to the outer query (as psql writes `prattrs[s]`).
async fn local_columns(session: &Session, query: &Query) -> HashSet<String> {
    struct Tables(Vec<Vec<String>>, HashSet<String>);
    impl Visitor for Tables {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            match factor {
                TableFactor::Table {
                    name, args: None, ..
                } => {
                    self.0.push(
                        name.0
                            .iter()
                            .filter_map(|p| p.as_ident())
                            .map(normalize_ident)
                            .collect(),
                    );
                }
                TableFactor::Derived {
                    alias: Some(alias), ..
                } => {
                    self.1.insert(normalize_ident(&alias.name));
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    struct Aliases(HashSet<String>);
    impl Visitor for Aliases {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = query.body.as_ref() {
                for item in &select.projection {
                    if let datafusion::sql::sqlparser::ast::SelectItem::ExprWithAlias {
                        alias,
                        ..
                    } = item
                    {
                        self.0.insert(normalize_ident(alias));
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut tables = Tables(Vec::new(), HashSet::new());
    let _ = query.visit(&mut tables);
    let mut aliases = Aliases(HashSet::new());
    let _ = query.visit(&mut aliases);
    let mut columns = tables.1;
    columns.extend(aliases.0);
    let mut path = vec![super::shared::PG_CATALOG.to_string()];
    path.extend(session.shared.existing_search_path());
    for parts in tables.0 {
        let candidates: Vec<datafusion::common::TableReference> = match parts.as_slice() {
            [name] => path
                .iter()
                .map(|schema| {
                    datafusion::common::TableReference::partial(schema.as_str(), name.as_str())
                })
                .collect(),
            [schema, name] => vec![datafusion::common::TableReference::partial(
                schema.as_str(),
                name.as_str(),
            )],
            _ => continue,
        };
        for reference in candidates {
            if let Ok(provider) = session.ctx.table_provider(reference).await {
                columns.extend(provider.schema().fields().iter().map(|f| f.name().clone()));
                break;
            }
        }
    }
    columns
}

/// Every name a FROM clause inside the query defines, at any depth.
fn qualifiers(query: &Query) -> HashSet<String> {
    struct Names(HashSet<String>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            match factor {
                TableFactor::Table { name, alias, .. } => {
                    if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                        self.0.insert(normalize_ident(last));
                    }
                    if let Some(alias) = alias {
                        self.0.insert(normalize_ident(&alias.name));
                    }
                }
                TableFactor::Derived {
                    alias: Some(alias), ..
                } => {
                    self.0.insert(normalize_ident(&alias.name));
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(HashSet::new());
    let _ = query.visit(&mut names);
    names.0
}

/// Replaces outer column references by `$n`, recording them.
struct Parameterize<'a> {
    local: &'a HashSet<String>,
    columns: &'a HashSet<String>,
    outer: &'a mut Vec<Expr>,
}

impl VisitorMut for Parameterize<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let outer = match expr {
            Expr::CompoundIdentifier(parts) => {
                parts.len() >= 2
                    && !self
                        .local
                        .contains(&normalize_ident(&parts[parts.len() - 2]))
            }
            Expr::Identifier(ident) => !self.columns.contains(&normalize_ident(ident)),
            _ => false,
        };
        if outer {
            let position = match self.outer.iter().position(|e| e == expr) {
                Some(p) => p,
                None => {
                    self.outer.push(expr.clone());
                    self.outer.len() - 1
                }
            };
            *expr = Expr::Value(Value::Placeholder(format!("${}", position + 1)).into());
        }
        ControlFlow::Continue(())
    }
}

/// Replaces every occurrence of `from` in the statement by `to`.
fn replace(statement: &mut Statement, from: &Expr, to: &Expr) {
    struct Replace<'a>(&'a Expr, &'a Expr);
    impl VisitorMut for Replace<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if expr == self.0 {
                *expr = self.1.clone();
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(statement, &mut Replace(from, to));
}

/// The per-statement function running one subquery.
struct SubPlan {
    name: String,
    signature: Signature,
    output: DataType,
    plan: LogicalPlan,
    param_types: Vec<Option<DataType>>,
    ctx: SessionContext,
    cache: Arc<Mutex<HashMap<Vec<ScalarValue>, ScalarValue>>>,
}

impl std::fmt::Debug for SubPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubPlan({})", self.name)
    }
}

impl PartialEq for SubPlan {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for SubPlan {}

impl Hash for SubPlan {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl SubPlan {
    fn evaluate(&self, args: Vec<ScalarValue>) -> DfResult<ScalarValue> {
        if let Some(hit) = self.cache.lock().get(&args) {
            return Ok(hit.clone());
        }
        let params = args
            .iter()
            .enumerate()
            .map(
                |(i, value)| match self.param_types.get(i).cloned().flatten() {
                    Some(t) if !value.is_null() && value.data_type() != t => value.cast_to(&t),
                    Some(t) if value.is_null() => ScalarValue::try_from(&t),
                    _ => Ok(value.clone()),
                },
            )
            .collect::<DfResult<Vec<_>>>()?;
        let plan = if self.param_types.is_empty() {
            self.plan.clone()
        } else {
            self.plan
                .clone()
                .with_param_values(ParamValues::from(params))?
        };
        let state = self.ctx.state();
        let batches = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(DataFrame::new(state, plan).collect())
        })?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows > 1 {
            return Err(DataFusionError::Execution(
                "more than one row returned by a subquery used as an expression".into(),
            ));
        }
        let value = match batches.iter().find(|b| b.num_rows() > 0) {
            Some(batch) => ScalarValue::try_from_array(batch.column(0), 0)?,
            None => ScalarValue::try_from(&self.output)?,
        };
        let value = if value.data_type() != self.output && !self.output.is_null() {
            value.cast_to(&self.output)?
        } else {
            value
        };
        self.cache.lock().insert(args, value.clone());
        Ok(value)
    }
}

impl ScalarUDFImpl for SubPlan {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.output.clone())
    }

    fn return_field_from_args(
        &self,
        _args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<Arc<Field>> {
        Ok(Arc::new(Field::new(&self.name, self.output.clone(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        let mut values = Vec::with_capacity(rows);
        for row in 0..rows {
            let key = arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row))
                .collect::<DfResult<Vec<_>>>()?;
            // The placeholder argument of an uncorrelated call carries no parameter.
            let key = if self.param_types.is_empty() {
                Vec::new()
            } else {
                key
            };
            values.push(self.evaluate(key)?);
        }
        if values.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&self.output),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?))
    }
}
