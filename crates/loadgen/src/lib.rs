//! `loadgen`: measures a chat server from outside, the way its users load it.
//!
//! It speaks our protocol and, for side-by-side runs, the design article's plain JSON relay and
//! Socket.IO ([`protocol`]); opens connections from several loopback source addresses ([`conn`]); runs
//! one [`scenario`] (fan-out, idle, churn, reconnect storm, acked chats) and prints a one-line JSON
//! summary, with the server's CPU and memory read from `/proc` ([`measure`]); or runs a scenario against
//! two servers in turns and prints their ratios ([`compare`]). BENCHMARKS.md has the commands and the
//! figures.

pub mod compare;
pub mod conn;
pub mod measure;
pub mod protocol;
pub mod scenario;
