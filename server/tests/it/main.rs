//! Server integration tests: real servers on port 0, real WebSocket clients, real SQLite files.
//! One test binary (faster to link); one module per concern.

mod cluster;
mod common;
mod delivery;
mod durability;
mod handshake;
mod hardening;
mod heartbeat;
mod hostile;
mod relay;
mod security;
