//! The contract between a Cuttle server and its agents: who talks to whom,
//! how each side knows the other, and how the contract changes. Everything
//! the server and an agent exchange is defined in this crate and nowhere
//! else. See also `docs/agent-protocol.md` for why it is built this way.
//!
//! # Layout
//!
//! - `identity`: a side's key and self-signed certificate on disk, and its
//!   [`Thumbprint`].
//! - `trust`: rustls configurations that pin the peer's thumbprint, in both
//!   directions.
//! - `messages`: the server's requests to an agent and their answers.
//! - `client`: the server's HTTP/2 client side of one agent connection.
//! - `service`: the agent's HTTP/2 server side, whoever dialled.
//! - `listen`: a listening agent accepting the server's connections.
//! - `polling`: polling agents dialling the server, and the server's hub
//!   that keeps their connections.
//! - `agents`: the server reaching any agent, listening or polling.
//!
//! # Architecture
//!
//! The server decides what runs where; an agent (Octopus calls it a Tentacle)
//! runs what it is told on its machine and reports back. An agent holds no
//! deployment state of its own: if it restarts mid-script the server sees the
//! connection drop and fails or retries that step. Work is *leased*: the
//! server never assumes an agent is alive because it was a minute ago.
//!
//! # Direction
//!
//! Two modes, chosen per agent, with the same messages in both:
//!
//! - **Listening**: the agent listens on TCP [`LISTENING_PORT`] (10933) and
//!   the server dials it. For machines the server can reach.
//! - **Polling**: the agent dials the server on [`POLLING_PORT`] (10943) and
//!   keeps that connection open. For machines behind NAT or firewalls that
//!   allow only outbound traffic.
//!
//! Whoever opened the TCP connection, the *server* is the one asking: it
//! sends requests and the agent answers them. The TLS roles follow the TCP
//! connection (the dialer is the TLS client), the request roles do not.
//!
//! # Trust
//!
//! Every connection is TLS 1.3 with a certificate on *both* sides. Each side
//! has a self-signed certificate (`identity`) and accepts the other only if
//! the other's certificate has a thumbprint it was given (`trust`): the agent
//! is told the server's thumbprint when it is installed, and the server
//! learns the agent's when the agent is registered. There are no certificate
//! authorities, no names and no expiry; the handshake's signatures are still
//! verified, so a peer must hold the pinned certificate's private key. A
//! rejected peer is reported by its thumbprint ([`trust::UntrustedPeer`]) so
//! an operator can see exactly which certificate knocked.
//!
//! # Errors
//!
//! Failures to set up a side (identity files missing, corrupt, or readable
//! by others) are typed errors with the path in the message. A handshake
//! refused by pinning surfaces as an I/O error from the TLS stream whose
//! cause [`trust::untrusted_peer`] extracts. Nothing here panics on what a
//! peer sends, and an agent holding a registered certificate is still peer
//! input: the server reads at most a limit of each answer, by kind
//! (`messages::MAX_*_ANSWER`), and gives each request a deadline
//! ([`client::ANSWER_LIMIT`] past its long-poll wait), so an agent that
//! sends without end or drips its answer is cut off with an error that
//! says so.
//!
//! # Concurrency
//!
//! Configurations are built once and shared (`Arc`). The trusted set inside
//! them ([`TrustedThumbprints`]) is shared too and may change while the
//! process runs; each handshake reads it once, so a change applies from the
//! next connection on.
//!
//! # Versioning
//!
//! [`PROTOCOL_VERSION`] is bumped by hand whenever a message or its meaning
//! changes in a way an older peer would misread. Each side sends its version
//! when a connection opens; the server refuses an agent whose version it
//! does not speak, with both versions in the error, rather than guessing.

mod accept;
pub mod agents;
pub mod client;
pub mod identity;
pub mod listen;
pub mod messages;
pub mod polling;
pub mod service;
pub mod trust;

pub use agents::{AgentEndpoint, Agents};
pub use client::{AgentConnection, BoxFuture, ProtocolError, Relay, RelayedRequest};
pub use identity::{Identity, IdentityError, Thumbprint};
pub use messages::Hello;
pub use service::AgentService;
pub use trust::{TrustedThumbprints, UntrustedPeer};

/// The version of this contract. Bump it by hand with any change an older
/// peer would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// Where a listening agent accepts the server's connections (as Octopus
/// Tentacle does).
pub const LISTENING_PORT: u16 = 10933;

/// Where the server accepts polling agents' connections (as Octopus Server
/// does for polling Tentacles).
pub const POLLING_PORT: u16 = 10943;
