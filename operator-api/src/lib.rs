//! The operator REST API of the metalcast control plane (`docs/rest-api.md`):
//! the contract shared by every client of it, as `metalcast-runtime-api` is
//! for the node side.
//!
//! * [`v0`]: the HIL-compatible `/v0` calls: request bodies and the views
//!   the server sends (projects, nodes, NICs, networks, switches, users,
//!   networking actions).
//! * [`v1`]: metalcast's `/v1` additions: [`v1::Health`], [`v1::WhoAmI`],
//!   tokens, node events, quotas, keypairs, the image registry
//!   ([`v1::Visibility`], [`v1::ImageInfo`]), deployments
//!   ([`v1::Deployment`], [`v1::HandoverSpec`], [`v1::TERMINAL`]), a node's
//!   runtime report and reclaim ([`v1::WipeSpec`], [`v1::Reclaimed`]).
//! * [`Client`]: one typed async client (reqwest, rustls) with bearer or
//!   basic [`Auth`], a method per call, the deployment progress stream
//!   ([`DeploymentEvent`]) and typed failures ([`Error`], with the server's
//!   [`ErrorBody`]).
//! * [`market`]: the marketplace and credits ledger (`/v1/market`,
//!   `/v1/ledger`): offers, bids, leases, autobuy, stats, accounts,
//!   transfers; mutating calls take an `Idempotency-Key` and answer
//!   [`market::Keyed`].
//! * [`netboot`]: built-in netboot: a node's boot choice, full mode's
//!   address leases, enrollments of unknown machines.
//! * [`display`]: sizes, times and ages as people read them (CLI, web console).
//! * [`path`]: the percent-encoder for path segments and query values.
//! * [`carrier`]: the names a nested control plane's networks and images
//!   carry at its parent, which the parent reserves for it.
//!
//! The types are copies of the server's (same serde attributes, field
//! order as the server serialises them), so a value decoded here and
//! encoded again is the JSON the server sent, byte for byte
//! (`tests/contract.rs` checks that against the server's golden files).
//! Feature `clap` derives `clap::ValueEnum` on the enums the CLI takes as
//! flag values.

pub mod carrier;
mod client;
mod client_market;
mod client_netboot;
pub mod display;
mod error;
pub mod market;
pub mod netboot;
pub mod path;
pub mod v0;
pub mod v1;

pub use client::{Auth, Client, DeploymentEvent, EnsureImage};
pub use error::{Error, ErrorBody};
/// The HTTP client library, for building a [`Client`] with custom settings
/// ([`Client::with_builder`]).
pub use reqwest;
