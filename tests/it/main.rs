//! Integration tests: the real server over TCP with real clients.

mod auth;
mod auth_limits;
mod auth_scram;
mod clients;
mod concurrency;
mod copy;
mod delta;
mod durability;
mod harness;
mod ignition;
mod ingest;
mod keys;
mod limits;
mod mutations;
mod names;
mod objectstore;
mod protocol;
mod protocol_violations;
mod raw;
mod seek;
mod slt;
mod transactions;
