//! `/v1/market/...`: offers, buy-now, sealed bids, leases, autobuy and
//! analytics. Every mutating call takes an `Idempotency-Key` header
//! (`app::market::execute`): a repeat with the same key returns the first
//! answer (with `Idempotent-Replayed: true`), with another body a 409.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::app::market::autobuy::{Autobuy, AutobuyCreate};
use crate::app::market::leases::{Extend, Lease};
use crate::app::market::offers::{Offer, OfferCreate};
use crate::app::market::stats::{PricePoint, Revenue, Stats, UsePoint};
use crate::app::market::trade::{Bid, BidCreate, BuyRequest, Settlement};
use crate::app::market::{self, Op};
use crate::authz::Caller;
use crate::db::market::leases::LeaseState;
use crate::http::{ApiError, Body, Empty};

/// OpenAPI description of these routes (merged into `/v1/openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(
    paths(
        offer_list,
        offer_create,
        offer_show,
        offer_withdraw,
        offer_buy,
        offer_bids,
        bid_create,
        offer_settle,
        bid_list,
        bid_withdraw,
        lease_list,
        lease_show,
        lease_cancel,
        lease_recall,
        lease_extend,
        autobuy_list,
        autobuy_create,
        autobuy_delete,
        market_stats
    ),
    components(schemas(
        Offer,
        OfferCreate,
        BuyRequest,
        Bid,
        BidCreate,
        Settlement,
        Lease,
        LeaseState,
        Extend,
        Autobuy,
        AutobuyCreate,
        Stats,
        PricePoint,
        UsePoint,
        Revenue,
        crate::app::market::filter::Resources
    ))
)]
pub struct MarketDoc;

/// Routes under `/v1/market`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/market/offers", get(offer_list).post(offer_create))
        .route("/v1/market/offers/{id}", get(offer_show).delete(offer_withdraw))
        .route("/v1/market/offers/{id}/buy", post(offer_buy))
        .route("/v1/market/offers/{id}/bids", get(offer_bids).post(bid_create))
        .route("/v1/market/offers/{id}/settle", post(offer_settle))
        .route("/v1/market/bids", get(bid_list))
        .route("/v1/market/bids/{id}", axum::routing::delete(bid_withdraw))
        .route("/v1/market/leases", get(lease_list))
        .route("/v1/market/leases/{id}", get(lease_show).delete(lease_cancel))
        .route("/v1/market/leases/{id}/recall", post(lease_recall))
        .route("/v1/market/leases/{id}/extend", post(lease_extend))
        .route("/v1/market/autobuy", get(autobuy_list).post(autobuy_create))
        .route("/v1/market/autobuy/{id}", axum::routing::delete(autobuy_delete))
        .route("/v1/market/stats", get(market_stats))
}

/// Runs a mutating operation under the request's `Idempotency-Key`.
pub(super) async fn run(st: &AppState, c: &Caller, headers: &HeaderMap, op: Op) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| ApiError::BadRequest("Idempotency-Key is not ASCII".into()))?),
        None => None,
    };
    let a = market::execute(st, c, key, op).await?;
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, Json(a.body)).into_response();
    if a.replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    filter: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectQuery {
    #[serde(default)]
    project: String,
}

/// List the offers the caller may see.
#[utoipa::path(get, path = "/v1/market/offers", operation_id = "market_offer_list",
    params(
        ("state" = Option<String>, Query, description = "open | settled | withdrawn"),
        ("filter" = Option<String>, Query, description = "resource filter: field op value[,...], e.g. cpus>=16,memory_gib>=64")
    ),
    responses((status = 200, body = [Offer])))]
async fn offer_list(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<OfferQuery>,
) -> Result<Json<Vec<Offer>>, ApiError> {
    Ok(Json(market::offers::list(&st, &c, &q.state, &q.filter).await?))
}

/// Offer nodes of one of the caller's projects.
#[utoipa::path(post, path = "/v1/market/offers", operation_id = "market_offer_create", request_body = OfferCreate,
    params(("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 201, body = Offer)))]
async fn offer_create(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Body(req): Body<OfferCreate>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::CreateOffer(req)).await
}

/// Show an offer.
#[utoipa::path(get, path = "/v1/market/offers/{id}", operation_id = "market_offer_show",
    params(("id" = i64, Path, description = "offer id")), responses((status = 200, body = Offer)))]
async fn offer_show(State(st): State<AppState>, c: Caller, Path(id): Path<i64>) -> Result<Json<Offer>, ApiError> {
    Ok(Json(market::offers::show(&st, &c, id).await?))
}

/// Withdraw an open offer (its owner); open bids lose and are released.
#[utoipa::path(delete, path = "/v1/market/offers/{id}", operation_id = "market_offer_withdraw",
    params(("id" = i64, Path, description = "offer id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 200, body = Offer)))]
async fn offer_withdraw(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::WithdrawOffer { offer: id }).await
}

/// Buy nodes of an offer now, at its buy-now price.
#[utoipa::path(post, path = "/v1/market/offers/{id}/buy", operation_id = "market_offer_buy", request_body = BuyRequest,
    params(("id" = i64, Path, description = "offer id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 201, body = [Lease])))]
async fn offer_buy(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(req): Body<BuyRequest>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::Buy { offer: id, req }).await
}

/// The caller's bids on an offer (the owner sees all of them once settled).
#[utoipa::path(get, path = "/v1/market/offers/{id}/bids", operation_id = "market_offer_bids",
    params(("id" = i64, Path, description = "offer id")), responses((status = 200, body = [Bid])))]
async fn offer_bids(State(st): State<AppState>, c: Caller, Path(id): Path<i64>) -> Result<Json<Vec<Bid>>, ApiError> {
    Ok(Json(market::trade::list_bids(&st, &c, id.max(1)).await?))
}

/// Place a sealed bid; its maximum is held in escrow until the auction settles.
#[utoipa::path(post, path = "/v1/market/offers/{id}/bids", operation_id = "market_bid_create", request_body = BidCreate,
    params(("id" = i64, Path, description = "offer id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 201, body = Bid)))]
async fn bid_create(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(req): Body<BidCreate>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::Bid { offer: id, req }).await
}

/// Settle an auction whose close has passed, now (its owner; the market does it by itself at the next tick).
#[utoipa::path(post, path = "/v1/market/offers/{id}/settle", operation_id = "market_offer_settle",
    params(("id" = i64, Path, description = "offer id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 200, body = Settlement)))]
async fn offer_settle(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(_): Body<Empty>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::Settle { offer: id }).await
}

/// The caller's bids.
#[utoipa::path(get, path = "/v1/market/bids", operation_id = "market_bid_list", responses((status = 200, body = [Bid])))]
async fn bid_list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<Bid>>, ApiError> {
    Ok(Json(market::trade::list_bids(&st, &c, 0).await?))
}

/// Withdraw an open bid before its auction closes; its hold is released.
#[utoipa::path(delete, path = "/v1/market/bids/{id}", operation_id = "market_bid_withdraw",
    params(("id" = i64, Path, description = "bid id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 200, body = Bid)))]
async fn bid_withdraw(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::WithdrawBid { bid: id }).await
}

/// Leases the caller is a party to.
#[utoipa::path(get, path = "/v1/market/leases", operation_id = "market_lease_list",
    params(("project" = Option<String>, Query, description = "only leases where this project is owner or lessee")),
    responses((status = 200, body = [Lease])))]
async fn lease_list(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<ProjectQuery>,
) -> Result<Json<Vec<Lease>>, ApiError> {
    Ok(Json(market::leases::list(&st, &c, &q.project).await?))
}

/// Show a lease.
#[utoipa::path(get, path = "/v1/market/leases/{id}", operation_id = "market_lease_show",
    params(("id" = i64, Path, description = "lease id")), responses((status = 200, body = Lease)))]
async fn lease_show(State(st): State<AppState>, c: Caller, Path(id): Path<i64>) -> Result<Json<Lease>, ApiError> {
    Ok(Json(market::leases::show(&st, &c, id).await?))
}

/// Cancel a scheduled lease (owner or lessee): full refund.
#[utoipa::path(delete, path = "/v1/market/leases/{id}", operation_id = "market_lease_cancel",
    params(("id" = i64, Path, description = "lease id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 200, body = Lease)))]
async fn lease_cancel(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::CancelLease { lease: id }).await
}

/// Recall an interruptible lease (its owner): it ends after its notice, pro-rata refund.
#[utoipa::path(post, path = "/v1/market/leases/{id}/recall", operation_id = "market_lease_recall",
    params(("id" = i64, Path, description = "lease id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 200, body = Lease)))]
async fn lease_recall(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(_): Body<Empty>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::RecallLease { lease: id }).await
}

/// Extend an active lease into free time of its offer (the lessee).
#[utoipa::path(post, path = "/v1/market/leases/{id}/extend", operation_id = "market_lease_extend", request_body = Extend,
    params(("id" = i64, Path, description = "lease id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 200, body = Lease)))]
async fn lease_extend(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(req): Body<Extend>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::ExtendLease { lease: id, req }).await
}

/// Autobuy rules of the caller's projects.
#[utoipa::path(get, path = "/v1/market/autobuy", operation_id = "market_autobuy_list",
    params(("project" = Option<String>, Query, description = "only this project's rules")),
    responses((status = 200, body = [Autobuy])))]
async fn autobuy_list(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<ProjectQuery>,
) -> Result<Json<Vec<Autobuy>>, ApiError> {
    Ok(Json(market::autobuy::list(&st, &c, &q.project).await?))
}

/// Create an autobuy rule.
#[utoipa::path(post, path = "/v1/market/autobuy", operation_id = "market_autobuy_create", request_body = AutobuyCreate,
    params(("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 201, body = Autobuy)))]
async fn autobuy_create(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Body(req): Body<AutobuyCreate>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::CreateAutobuy(req)).await
}

/// Delete an autobuy rule; its budget hold is released.
#[utoipa::path(delete, path = "/v1/market/autobuy/{id}", operation_id = "market_autobuy_delete",
    params(("id" = i64, Path, description = "rule id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 200)))]
async fn autobuy_delete(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    run(&st, &c, &headers, Op::DeleteAutobuy { rule: id }).await
}

/// Market analytics: prices by resource class and hour, utilization, fill rate, time to fill, revenue.
#[utoipa::path(get, path = "/v1/market/stats", operation_id = "market_stats", responses((status = 200, body = Stats)))]
async fn market_stats(State(st): State<AppState>, c: Caller) -> Result<Json<Stats>, ApiError> {
    Ok(Json(market::stats::stats(&st, &c).await?))
}
