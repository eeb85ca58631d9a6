//! `/v1/deployments`: create, list, show, follow (server-sent events) and
//! retry deployments; and `/v1/nodes/{node}/runtime`, what a node's runtime
//! last reported (the deployment engine's view of the node).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use tokio::sync::watch;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::app::deployments::changes::Change;
use crate::app::deployments::{
    self, DeployRequest, Deployment, DeploymentState, HandoverSpec, NodeProgress, NodeRuntime, NodeState, TargetSpec,
};
use crate::authz::Caller;
use crate::http::{ApiError, Body};

/// OpenAPI description of the deployment endpoints.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(create, list, show, events, changes, retry, node_runtime),
    components(schemas(
        Change,
        DeployRequest,
        Deployment,
        DeploymentState,
        NodeProgress,
        NodeState,
        TargetSpec,
        HandoverSpec,
        NodeRuntime
    ))
)]
pub struct DeploymentsDoc;

/// Routes under `/v1/deployments`, and a node's runtime report.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/deployments", post(create).get(list))
        .route("/v1/deployments/{id}", get(show))
        .route("/v1/deployments/{id}/events", get(events))
        .route("/v1/deployments/{id}/changes", get(changes))
        .route("/v1/deployments/{id}/retry", post(retry))
        .route("/v1/nodes/{node}/runtime", get(node_runtime))
}

/// Show what the node's runtime last reported (project members and admins).
#[utoipa::path(get, path = "/v1/nodes/{node}/runtime", operation_id = "node_runtime_show", params(("node" = String, Path, description = "node name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = NodeRuntime), (status = 404)))]
async fn node_runtime(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
) -> Result<Json<NodeRuntime>, ApiError> {
    Ok(Json(deployments::node_runtime(&st, &c, node).await?))
}

/// Deploy an image to nodes of a project.
#[utoipa::path(post, path = "/v1/deployments", operation_id = "deployment_create", request_body = DeployRequest,
    responses((status = 202, body = Deployment), (status = 404), (status = 409), (status = 503)))]
async fn create(
    State(st): State<AppState>,
    c: Caller,
    Body(req): Body<DeployRequest>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(deployments::create(&st, &c, req).await?)))
}

/// List the deployments of the caller's projects (all for an admin), newest first.
#[utoipa::path(get, path = "/v1/deployments", operation_id = "deployment_list", responses((status = 200, body = [Deployment])))]
async fn list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<Deployment>>, ApiError> {
    Ok(Json(deployments::list(&st, &c).await?))
}

/// Show a deployment and every node's phase.
#[utoipa::path(get, path = "/v1/deployments/{id}", operation_id = "deployment_show", params(("id" = i64, Path, description = "deployment id")), responses((status = 200, body = Deployment), (status = 404)))]
async fn show(State(st): State<AppState>, c: Caller, Path(id): Path<i64>) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(deployments::show(&st, &c, id).await?))
}

/// Live progress as a server-sent event stream: one `progress` event with the
/// whole deployment on every change (coalesced), ending with an `end` event.
#[utoipa::path(get, path = "/v1/deployments/{id}/events", operation_id = "deployment_events", params(("id" = i64, Path, description = "deployment id")), responses((status = 200, description = "text/event-stream of Deployment snapshots")))]
async fn events(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let (first, rx) = deployments::watch(&st, &c, id).await?;
    Ok(Sse::new(progress_stream(first, rx)).keep_alive(KeepAlive::default()))
}

/// Query of `GET /v1/deployments/{id}/changes`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesQuery {
    /// Start after this change number (as `Last-Event-ID`, which wins when both are given).
    after: Option<i64>,
}

/// Every change of the deployment, in order, as server-sent events, on any
/// replica: `id:` is the change number (1, 2, 3 ...), `event:` its kind
/// (`created`, `session`, `node`, `takeover`, `retry`, `end`), `data:` the
/// [`Change`]. A client that reconnects with `Last-Event-ID` (or
/// `?after=N`) gets every change after that one, so nothing is missed.
/// Ends after `end`.
#[utoipa::path(get, path = "/v1/deployments/{id}/changes", operation_id = "deployment_changes",
    params(("id" = i64, Path, description = "deployment id"), ChangesQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "the last change number seen")),
    responses((status = 200, description = "text/event-stream of Change", body = Change), (status = 400), (status = 404)))]
async fn changes(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
    axum::extract::Query(q): axum::extract::Query<ChangesQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be a change number".into()))?,
        None => q.after.unwrap_or(0),
    };
    let stream = deployments::changes::stream(&st, &c, id, after).await?;
    Ok(Sse::new(futures_util::StreamExt::map(stream, |ch| {
        Ok(Event::default().id(ch.seq.to_string()).event(ch.kind.clone()).json_data(&ch).unwrap_or_default())
    }))
    .keep_alive(KeepAlive::default()))
}

/// `progress` events from `first` on, then `end` once the deployment is
/// finished or its engine is gone (its last snapshot was sent then).
fn progress_stream(
    first: Deployment,
    rx: Option<watch::Receiver<Deployment>>,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    enum S {
        First(Box<Deployment>, Option<watch::Receiver<Deployment>>),
        Live(watch::Receiver<Deployment>),
        End,
        Done,
    }
    let ev = |d: &Deployment| Event::default().event("progress").json_data(d).unwrap_or_default();
    futures_util::stream::unfold(S::First(Box::new(first), rx), move |s| async move {
        match s {
            S::First(d, rx) => {
                let next = match rx {
                    Some(rx) if !d.is_finished() => S::Live(rx),
                    _ => S::End,
                };
                Some((Ok(ev(&d)), next))
            }
            S::Live(mut rx) => {
                if rx.changed().await.is_err() {
                    // The engine is gone and every snapshot it sent was seen.
                    return Some((Ok(Event::default().event("end").data("{}")), S::Done));
                }
                let d = rx.borrow_and_update().clone();
                let next = if d.is_finished() { S::End } else { S::Live(rx) };
                Some((Ok(ev(&d)), next))
            }
            S::End => Some((Ok(Event::default().event("end").data("{}")), S::Done)),
            S::Done => None,
        }
    })
}

/// Deploy the failed nodes of a finished deployment again, with a new session.
#[utoipa::path(post, path = "/v1/deployments/{id}/retry", operation_id = "deployment_retry", params(("id" = i64, Path, description = "deployment id")), responses((status = 202, body = Deployment), (status = 409)))]
async fn retry(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(deployments::retry(&st, &c, id).await?)))
}
