//! Integration tests: the real server over TCP with real clients.

mod auth;
mod clients;
mod delta;
mod harness;
mod protocol;
mod slt;
