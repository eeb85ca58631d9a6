//! metalcast's own API under `/v1`: one file per resource, and the OpenAPI
//! document. (Images, deployments, reclaim and events
//! still live in their top-level modules with their use cases, to move here
//! next.)

pub mod keypairs;
pub mod metadata;
pub mod openapi;
pub mod quotas;
pub mod tokens;
