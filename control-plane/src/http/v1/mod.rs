//! metalcast's own API under `/v1`: one file per resource, and the OpenAPI
//! document. (Images, keypairs, deployments, reclaim, events and metadata
//! still live in their top-level modules with their use cases, to move here
//! next.)

pub mod openapi;
pub mod quotas;
pub mod tokens;
