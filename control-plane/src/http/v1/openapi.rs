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
    doc.merge(super::keypairs::KeypairsDoc::openapi());
    doc.merge(super::quotas::QuotasDoc::openapi());
    doc.merge(super::events::EventsDoc::openapi());
    finish(&mut doc);
    doc
}

/// Names of the security schemes: `Authorization: Bearer mct_...` and HTTP Basic.
const SCHEMES: [&str; 2] = ["bearer", "basic"];

/// Declares the two ways to authenticate (either one; `health` needs
/// none), and gives every error status an [`ErrorBody`]: each declared
/// 4xx/5xx without a body gets it, and `default` stands for the error
/// statuses an operation does not list (400 for a bad body, 401, 403,
/// 413, 500, 503 while shutting down...).
fn finish(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(SCHEMES[0], SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    components.add_security_scheme(SCHEMES[1], SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    doc.security = Some(SCHEMES.iter().map(|s| SecurityRequirement::new(*s, Vec::<String>::new())).collect());

    let error = || ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    for item in doc.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            // Raw uploads are bytes, not a JSON string.
            if let Some(c) = op.request_body.as_mut().and_then(|b| b.content.get_mut("application/octet-stream")) {
                c.schema = Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                        .into(),
                );
            }
            if op.operation_id.as_deref() == Some("health") {
                op.security = Some(vec![SecurityRequirement::default()]);
            }
            for (status, resp) in &mut op.responses.responses {
                let utoipa::openapi::RefOr::T(resp) = resp else { continue };
                if status.starts_with(['4', '5']) && resp.content.is_empty() {
                    resp.content.insert("application/json".into(), error());
                }
            }
            op.responses.responses.insert(
                "default".into(),
                ResponseBuilder::new()
                    .description("error (see `type` and `msg`)")
                    .content("application/json", error())
                    .build()
                    .into(),
            );
        }
    }
}
