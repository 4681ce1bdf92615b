//! Integration tests: the real server over TCP with real clients.

mod harness;
mod protocol;
mod slt;
mod clients;
mod auth;
mod delta;
