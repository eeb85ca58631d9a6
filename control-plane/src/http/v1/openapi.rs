//! The OpenAPI document of `/v1`, served at `/v1/openapi.json`: this
//! module's [`ApiDoc`] with every resource's fragment merged in.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

// The handlers by their plain names (and utoipa's `__path_*` items): a
// path given as `module::handler` would become the operation's tag.
use super::tokens::{
    __path_health, __path_token_create, __path_token_delete, __path_token_list, __path_whoami, Health, TokenCreate,
    WhoAmI,
};
use crate::app::AppState;
use crate::app::tokens::{TokenCreated, TokenInfo};
use crate::http::error::ErrorBody;

/// OpenAPI description of `/v1`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "metalcast control plane /v1",
        description = "metalcast additions to the HIL-compatible /v0 API. \
            Authenticate with `Authorization: Bearer mct_<id>_<secret>` or HTTP Basic."
    ),
    paths(health, whoami, token_create, token_list, token_delete),
    components(schemas(Health, WhoAmI, TokenCreate, TokenCreated, TokenInfo, ErrorBody))
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(openapi))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// The whole `/v1` document: every resource's fragment, the security
/// schemes, and the error body on every operation.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::images::ImagesDoc::openapi());
    doc.merge(super::deployments::DeploymentsDoc::openapi());
    doc.merge(super::reclaim::ReclaimDoc::openapi());
    doc.merge(super::nodes::NodesDoc::openapi());
    doc.merge(super::keypairs::KeypairsDoc::openapi());
    doc.merge(super::quotas::QuotasDoc::openapi());
    doc.merge(super::events::EventsDoc::openapi());
    doc.merge(super::market::MarketDoc::openapi());
    doc.merge(super::ledger::LedgerDoc::openapi());
    doc.merge(super::netboot::NetbootDoc::openapi());
    doc.merge(super::enrollments::EnrollmentsDoc::openapi());
    crate::http::openapi::finish(&mut doc);
    doc
}
