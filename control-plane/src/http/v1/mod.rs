//! metalcast's own API under `/v1`: one file per resource, and the OpenAPI
//! document.

pub mod deployments;
pub mod enrollments;
pub mod events;
pub mod images;
pub mod keypairs;
pub mod ledger;
pub mod market;
pub mod metadata;
pub mod netboot;
pub mod nodes;
pub mod openapi;
pub mod quotas;
pub mod reclaim;
pub mod tokens;
