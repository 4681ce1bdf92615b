//! Integration tests: the real server over TCP with real clients.

mod auth;
mod clients;
mod copy;
mod delta;
mod durability;
mod harness;
mod ignition;
mod ingest;
mod limits;
mod mutations;
mod names;
mod objectstore;
mod protocol;
mod seek;
mod slt;
