//! WebSocket (RFC 6455): the upgrade, frame parsing and writing, and the hub (rooms, presence,
//! live queries).
//!
//! Must not: own sockets; connections live in the HTTP reactor.
