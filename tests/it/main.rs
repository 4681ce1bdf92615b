//! Integration tests: the real server over TCP with real clients.

mod auth;
mod auth_limits;
mod auth_scram;
mod clients;
mod copy;
mod delta;
mod harness;
mod ignition;
mod ingest;
mod protocol;
mod protocol_violations;
mod raw;
mod seek;
mod slt;
