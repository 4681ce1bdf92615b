//! deltagate: a PostgreSQL-wire server whose tables are Delta Lake tables.
//!
//! ```text
//!  psql, PgJDBC, psycopg ──► server (pgwire: auth, TLS, protocols, SQLSTATE)
//!                               │
//!                               ▼
//!                            sql (sessions, transactions, DDL/DML, pg_catalog,
//!                               │  information_schema, DataFusion planning)
//!                               ▼
//!                            storage (warehouse catalog, Delta tables, metadata,
//!                                     sequences, commits)  ◄── Spark, DuckDB read the same files
//! ```
//!
//! Dependencies run one way: `server → sql → storage`; `pgtypes` is shared by all, and
//! `pgbinary` (PostgreSQL's binary values decoded into Arrow) by `server` and `sql`.
//! `config` turns flags and environment into the plain configuration each layer takes.

pub mod config;
pub mod pgbinary;
pub mod pgtypes;
pub mod server;
pub mod sql;
pub mod storage;
pub mod wal;
