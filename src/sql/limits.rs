//! How deeply a statement may nest, so that no statement a client sends can overflow a thread's
//! stack: an overflow cannot be caught, it aborts the process and every session with it.
//!
//! Parsing, rewriting, planning, optimizing, executing and finally dropping a statement all
//! recurse over its trees, in sqlparser, DataFusion, delta-rs and here, and much of that
//! recursion (the derived `Drop`, `Clone`, `PartialEq`, `Hash` and `Display`, DataFusion's type
//! inference and physical evaluation) has no stack check. So the nesting of a statement is
//! bounded before it is parsed, and every thread that handles statements gets a stack on which
//! that bound fits ([`THREAD_STACK_SIZE`], which the binary gives its runtime's threads).
//!
//! The bound is measured on tokens by [`nesting`], in one pass without recursion: every token
//! counts one level and an opening parenthesis or bracket starts a level of its own; a comma
//! ends a list element, so its level counts from zero again. No tree the parser builds from
//! the tokens is deeper than that (each level of a node has a token of its own), whatever the
//! construct: operators, `CASE`, `NOT`, function calls, subqueries, set operations, array
//! types. Beyond [`MAX_NESTING`] levels, or [`MAX_QUERY_NESTING`] queries one inside the other,
//! the client gets 54001 and the statement is never parsed.
//!
//! Long `OR` chains are the exception: PostgreSQL handles them (its grammar makes them one
//! n-ary node) and generated SQL sends them (`WHERE id = 1 OR id = 2 OR ...`). A statement over
//! the limit is therefore parsed anyway, on a thread of its own whose stack fits its token
//! count: its `OR` chains are rebuilt as balanced trees (depth log2 n), and the rebuilt
//! statement is printed and measured again; if that fits, it runs. `AND` chains are not
//! rebuilt: DataFusion takes conjunctions apart and joins them again leaning left
//! (`conjunction`), so a long one would come back as deep as it was.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Statement, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::{Result, SqlError};

/// Deepest nesting, as [`nesting`] measures it, that a statement may have.
///
/// Measured on the debug build, whose frames are the larger: every shape of
/// `tests/it/limits.rs` (sums, parentheses, `NOT`, `AND`, `||`, casts, `UNION`, updates) runs
/// at 3,990 levels on [`THREAD_STACK_SIZE`] with [`configure_stack_growth`]. Without the
/// growth settings a `NOT` chain 2,000 deep overflowed; on 8 MiB threads, parentheses 3,990
/// deep did.
pub const MAX_NESTING: usize = 4000;

/// Most queries a statement may nest one inside the other. DataFusion checks a plan's
/// invariants once through each subquery expression and once more through the plan holding
/// it, so its planning time doubles with every level of `(SELECT ...)`, `EXISTS (...)` or
/// `IN (SELECT ...)`: measured on the debug build, 10, 12 and 14 levels of `(SELECT` took
/// 0.15, 0.5 and 2 s.
pub const MAX_QUERY_NESTING: usize = 16;

/// Most argument lists a statement may nest one inside the other. sqlparser tries each
/// function argument as a named one (`name => value`) before parsing it again as a value, so
/// its parsing time doubles with every level of `f(g(h(...)))`: measured on the debug build,
/// 12, 14 and 16 levels of `abs(` took 37, 125 and 478 ms.
pub const MAX_CALL_NESTING: usize = 16;

/// Stack of every thread that parses, plans, runs or drops statements: the worker and blocking
/// threads of the binary's runtime, and each stack segment DataFusion and sqlparser grow (see
/// [`configure_stack_growth`]).
pub const THREAD_STACK_SIZE: usize = 64 << 20;

/// Stack left for the recursions no one guards: DataFusion and sqlparser guard their main
/// recursions with the `recursive` crate, which moves to a fresh segment when less than this
/// remains; what they call from there (`Display`, `Clone`, `Drop` of a deep expression) must
/// fit in it.
const UNGUARDED_STACK: usize = THREAD_STACK_SIZE / 2;

/// Makes the guarded recursions of DataFusion and sqlparser keep [`UNGUARDED_STACK`] free and
/// grow by [`THREAD_STACK_SIZE`] segments. Their defaults (keep 128 KiB, grow by 2 MiB) let an
/// unguarded recursion below a guarded one overflow a small segment: a `NOT` chain 2,000 deep
/// did, and a segment's overflow is a segmentation fault of the whole process. Call once at
/// start, before any statement.
pub fn configure_stack_growth() {
    recursive::set_minimum_stack_size(UNGUARDED_STACK);
    recursive::set_stack_allocation_size(THREAD_STACK_SIZE);
}

/// Stack a statement over the limit is parsed on, per level of its raw nesting: the parser
/// may drop a partly built chain that deep on a syntax error, and the rebuilt statement is
/// printed; both recurse once or twice per level. Enough on the debug build for the `OR`
/// chains of 100,000 terms in `tests/it/limits.rs`, and for a syntax error after one.
const PARSE_STACK_PER_LEVEL: usize = 256;

/// Raw nesting beyond which a statement is refused without parsing (a 1 GiB parse stack).
const MAX_RAW_NESTING: usize = (1 << 30) / PARSE_STACK_PER_LEVEL;

/// `OR` chains longer than this are rebuilt balanced; balanced ones never are (a balanced
/// chain of 2^32 terms is 32 deep).
const BALANCED_CHAIN: usize = 32;

/// Parses a query string into statements that nest no deeper than [`MAX_NESTING`].
///
/// # Errors
/// [`SqlError::Parse`] for syntax errors, [`SqlError::TooComplex`] over the limit.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(ParserError::from)?;
    let raw = nesting(&tokens);
    if raw.fits() {
        return parse_tokens(tokens);
    }
    // Rebuilding `OR` chains changes no query or argument list: no need to parse (at a cost
    // doubling with each level) what nests too many of them.
    if raw.depth > MAX_RAW_NESTING
        || raw.queries > MAX_QUERY_NESTING
        || raw.calls > MAX_CALL_NESTING
    {
        return Err(too_complex());
    }
    let raw = raw.depth;
    let stack = (1 << 20) + raw * PARSE_STACK_PER_LEVEL;
    std::thread::scope(|scope| {
        let parsed = std::thread::Builder::new()
            .name("deltagate-parse".into())
            .stack_size(stack)
            .spawn_scoped(scope, move || parse_balanced(tokens));
        match parsed {
            Ok(handle) => handle.join().unwrap_or_else(|_| Err(too_complex())),
            // No memory for that stack: the statement is too big for this server.
            Err(_) => Err(too_complex()),
        }
    })
}

/// Parses tokens whose nesting is within the limit.
fn parse_tokens(tokens: Vec<TokenWithSpan>) -> Result<Vec<Statement>> {
    Parser::new(&PostgreSqlDialect {})
        // The parser's own count of its recursion; the token bound is the stricter one, and the
        // count can only be reached on the careful path, where the result would be refused.
        .with_recursion_limit(MAX_NESTING)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| match e {
            ParserError::RecursionLimitExceeded => too_complex(),
            e => SqlError::Parse(e),
        })
}

/// The careful path (on a stack that fits the raw nesting): parses, balances the chains and
/// measures the result again. What is refused is dropped here, where its depth fits.
fn parse_balanced(tokens: Vec<TokenWithSpan>) -> Result<Vec<Statement>> {
    let mut statements = match parse_tokens(tokens.clone()) {
        Ok(statements) => statements,
        // sqlparser turns its recursion limit into a syntax error in places; when the statement
        // nests too deeply even with its `OR` chains balanced, that is the likelier cause (a
        // guess that only picks the error to report).
        Err(SqlError::Parse(_)) if !nesting_between(&tokens, Some(Keyword::OR)).fits() => {
            return Err(too_complex());
        }
        Err(e) => return Err(e),
    };
    for statement in &mut statements {
        let _ = statement.visit(&mut Balance);
        // Printing is the one way to see every construct; balanced chains print with their
        // parentheses, so the text nests as the tree does.
        let text = statement.to_string();
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, &text)
            .tokenize_with_location()
            .map_err(|_| too_complex())?;
        if !nesting(&tokens).fits() {
            return Err(too_complex());
        }
    }
    Ok(statements)
}

fn too_complex() -> SqlError {
    SqlError::TooComplex(format!(
        "it nests more than {MAX_NESTING} levels, {MAX_QUERY_NESTING} queries or \
         {MAX_CALL_NESTING} function calls deep"
    ))
}

/// How deeply the statements of some tokens nest, as far as the tokens tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nesting {
    /// An upper bound of the depth of any tree parsed from them (see the module comment).
    pub depth: usize,
    /// The most parenthesized queries (subqueries, derived tables, CTEs) open at one point,
    /// the statement's own counted.
    pub queries: usize,
    /// The most argument lists (a parenthesis or bracket right after a word: `f(`, `x IN (`,
    /// `ARRAY[`) open at one point.
    pub calls: usize,
}

impl Nesting {
    fn fits(self) -> bool {
        self.depth <= MAX_NESTING
            && self.queries <= MAX_QUERY_NESTING
            && self.calls <= MAX_CALL_NESTING
    }
}

/// Measures the nesting of tokens in one pass.
pub fn nesting(tokens: &[TokenWithSpan]) -> Nesting {
    nesting_between(tokens, None)
}

/// One open parenthesis (or the statement outside them).
#[derive(Default)]
struct Level {
    /// Levels counted in it since its list element began.
    depth: usize,
    /// Whether a query begins in it.
    query: bool,
    /// Whether it is an argument list.
    call: bool,
}

/// [`nesting`], with the keyword `separator` ending a list element as a comma does.
fn nesting_between(tokens: &[TokenWithSpan], separator: Option<Keyword>) -> Nesting {
    let mut levels = vec![Level::default()];
    // The sums over `levels`, kept as they change.
    let mut now = Nesting {
        depth: 0,
        queries: 0,
        calls: 0,
    };
    let mut most = now;
    let mut after_word = false;
    for token in tokens {
        let level = levels.len() - 1;
        let word = matches!(token.token, Token::Word(_));
        match &token.token {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::LParen | Token::LBracket => {
                levels[level].depth += 1;
                now.depth += 1;
                now.calls += usize::from(after_word);
                levels.push(Level {
                    call: after_word,
                    ..Level::default()
                });
            }
            Token::RParen | Token::RBracket => {
                if level > 0
                    && let Some(closed) = levels.pop()
                {
                    now.depth -= closed.depth;
                    now.queries -= usize::from(closed.query);
                    now.calls -= usize::from(closed.call);
                }
            }
            Token::Comma | Token::SemiColon => {
                now.depth -= std::mem::take(&mut levels[level].depth);
            }
            Token::Word(word) if word.quote_style.is_none() && Some(word.keyword) == separator => {
                now.depth -= std::mem::take(&mut levels[level].depth);
            }
            Token::Word(word) if word.quote_style.is_none() && word.keyword == Keyword::SELECT => {
                levels[level].depth += 1;
                now.depth += 1;
                if !levels[level].query {
                    levels[level].query = true;
                    now.queries += 1;
                }
            }
            _ => {
                levels[level].depth += 1;
                now.depth += 1;
            }
        }
        after_word = word;
        most.depth = most.depth.max(now.depth);
        most.queries = most.queries.max(now.queries);
        most.calls = most.calls.max(now.calls);
    }
    most
}

/// Rebuilds long `OR` chains as balanced trees, each inner node in parentheses.
///
/// `OR` is associative in SQL's three-valued logic, so the grouping does not change a result;
/// the terms keep their order, and evaluation still goes left to right.
struct Balance;

impl VisitorMut for Balance {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let op = BinaryOperator::Or;
        if chain_length(expr, &op) > BALANCED_CHAIN {
            let chain = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            *expr = balanced(terms(chain, &op), &op);
        }
        ControlFlow::Continue(())
    }
}

/// How many `op` nodes lead down the left of `expr` (the parser builds chains leaning left),
/// counted up to one more than [`BALANCED_CHAIN`].
fn chain_length(expr: &Expr, op: &BinaryOperator) -> usize {
    let mut length = 0;
    let mut node = expr;
    while let Expr::BinaryOp { left, op: o, .. } = node
        && o == op
        && length <= BALANCED_CHAIN
    {
        length += 1;
        node = left;
    }
    length
}

/// The terms an `op` chain combines, in order, taken apart without recursion.
fn terms(chain: Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut terms = Vec::new();
    let mut pending = vec![chain];
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::BinaryOp { left, op: o, right } if o == *op => {
                pending.push(*right);
                pending.push(*left);
            }
            term => terms.push(term),
        }
    }
    terms
}

/// Joins terms with `op` pairwise, level by level: a tree ceil(log2 n) deep.
fn balanced(mut terms: Vec<Expr>, op: &BinaryOperator) -> Expr {
    while terms.len() > 1 {
        let mut next = Vec::with_capacity(terms.len().div_ceil(2));
        let mut pairs = terms.into_iter();
        while let Some(left) = pairs.next() {
            next.push(match pairs.next() {
                Some(right) => Expr::Nested(Box::new(Expr::BinaryOp {
                    left: Box::new(left),
                    op: op.clone(),
                    right: Box::new(right),
                })),
                None => left,
            });
        }
        terms = next;
    }
    terms.pop().unwrap_or(Expr::Value(Value::Null.into()))
}

/// Joins terms with `op`: for rewrites that rebuild a chain they took apart, so that a long one
/// does not come back deep. Short chains lean left, as the parser builds them.
pub fn join_terms(terms: Vec<Expr>, op: &BinaryOperator) -> Option<Expr> {
    if terms.len() > BALANCED_CHAIN {
        return Some(balanced(terms, op));
    }
    terms.into_iter().reduce(|left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: op.clone(),
        right: Box::new(right),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nesting_of(sql: &str) -> usize {
        nesting_in(sql).depth
    }

    fn nesting_in(sql: &str) -> Nesting {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .expect("tokens");
        nesting(&tokens)
    }

    #[test]
    fn nesting_counts_tokens_per_level_and_restarts_at_commas() {
        assert_eq!(nesting_of("SELECT 1"), 2);
        assert_eq!(nesting_of("SELECT 1+1+1"), 6);
        assert_eq!(nesting_of("SELECT ((1))"), 4);
        // A list element starts over; a long list is flat.
        let list = (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(
            nesting_of(&format!("SELECT a IN ({}) FROM t", list.join(","))),
            6
        );
        // Unbalanced parentheses do not underflow.
        assert_eq!(nesting_of(")) SELECT 1"), 2);
        // Queries count where they open, however many share a level.
        assert_eq!(
            nesting_in("SELECT 1 UNION SELECT (SELECT 2) WHERE EXISTS (SELECT 3 UNION SELECT 4)"),
            Nesting {
                depth: 13,
                queries: 2,
                calls: 1
            }
        );
        assert_eq!(
            nesting_in("SELECT a FROM (SELECT (SELECT 1) a) s").queries,
            3
        );
        assert_eq!(nesting_in("SELECT f(g(1), h(2, k(3)))").calls, 3);
        assert_eq!(
            nesting_in("SELECT ARRAY[a[1]] FROM t WHERE a IN (1)").calls,
            2
        );
    }

    #[test]
    fn deep_statements_are_too_complex() {
        for sql in [
            format!("SELECT {}", vec!["1"; 10_000].join("+")),
            format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
            format!("SELECT {}true", "NOT ".repeat(10_000)),
            format!("SELECT 1 WHERE {}", vec!["true"; 10_000].join(" AND ")),
            format!("SELECT {}1{}", "(SELECT ".repeat(17), ")".repeat(17)),
            format!("SELECT {}1{}", "abs(".repeat(17), ")".repeat(17)),
            // A syntax error after a long chain: refused before the parser builds it.
            format!("SELECT {} FROM", vec!["1"; 100_000].join("+")),
        ] {
            match parse(&sql) {
                Err(SqlError::TooComplex(_)) => {}
                other => panic!("{}...: {other:?}", &sql[..40]),
            }
        }
    }

    #[test]
    fn long_or_chains_are_balanced_in_order() {
        let terms: Vec<String> = (0..20_000).map(|i| format!("a = {i}")).collect();
        let sql = format!("SELECT 1 FROM t WHERE {}", terms.join(" OR "));
        let statements = parse(&sql).expect("balanced");
        let text = statements[0].to_string();
        let order: Vec<usize> = (0..20_000)
            .map(|i| {
                let term = format!("a = {i}");
                text.match_indices(&term)
                    .find(|(at, _)| {
                        !text[at + term.len()..].starts_with(|c: char| c.is_ascii_digit())
                    })
                    .map(|(at, _)| at)
                    .expect("term")
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "terms keep their order"
        );
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, &text)
            .tokenize_with_location()
            .expect("tokens");
        assert!(nesting(&tokens).depth < 100, "{:?}", nesting(&tokens));
        // A syntax error after the chain is a syntax error.
        assert!(matches!(
            parse(&format!("{sql} FROM")),
            Err(SqlError::Parse(_))
        ));
    }

    #[test]
    fn join_terms_leans_left_when_short_and_balances_when_long() {
        let term = |i: usize| Expr::Identifier(format!("c{i}").as_str().into());
        let short = join_terms((0..3).map(term).collect(), &BinaryOperator::And);
        assert_eq!(
            short.map(|e| e.to_string()).as_deref(),
            Some("c0 AND c1 AND c2")
        );
        let long = join_terms((0..1000).map(term).collect(), &BinaryOperator::And)
            .expect("terms")
            .to_string();
        assert!(long.starts_with("((((((((((c0 AND c1)"), "{}", &long[..40]);
        assert_eq!(join_terms(Vec::new(), &BinaryOperator::And), None);
    }
}
