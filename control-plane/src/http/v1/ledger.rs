//! `/v1/ledger/...`: accounts, transfers, the admins' mint, reversals and
//! the ledger's self-check. Mutating calls take an `Idempotency-Key`.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::app::market::Op;
use crate::app::market::ledger::{self, AccountView, Audit, Mint, Transfer, TransferCreate};
use crate::authz::Caller;
use crate::http::{ApiError, Body, Empty};

/// OpenAPI description of these routes (merged into `/v1/openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(
    paths(account_list, transfer_list, transfer_create, mint, reverse, audit),
    components(schemas(AccountView, Transfer, TransferCreate, Mint, Audit))
)]
pub struct LedgerDoc;

/// Routes under `/v1/ledger`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ledger/accounts", get(account_list))
        .route("/v1/ledger/transfers", get(transfer_list).post(transfer_create))
        .route("/v1/ledger/transfers/{id}/reverse", post(reverse))
        .route("/v1/ledger/mint", post(mint))
        .route("/v1/ledger/audit", get(audit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    #[serde(default)]
    project: String,
    #[serde(default)]
    limit: Option<i64>,
}

/// A project's accounts (its members; admins: every account when no project is given).
#[utoipa::path(get, path = "/v1/ledger/accounts", operation_id = "ledger_account_list",
    params(("project" = Option<String>, Query, description = "project (or @system); absent: all (admins)")),
    responses((status = 200, body = [AccountView])))]
async fn account_list(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<LedgerQuery>,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    Ok(Json(ledger::accounts(&st, &c, &q.project).await?))
}

/// Transfers touching a project, newest first.
#[utoipa::path(get, path = "/v1/ledger/transfers", operation_id = "ledger_transfer_list",
    params(
        ("project" = Option<String>, Query, description = "project; absent: all (admins)"),
        ("limit" = Option<i64>, Query, description = "at most this many (default 100, at most 10000)")
    ),
    responses((status = 200, body = [Transfer])))]
async fn transfer_list(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<LedgerQuery>,
) -> Result<Json<Vec<Transfer>>, ApiError> {
    Ok(Json(ledger::transfers(&st, &c, &q.project, q.limit.unwrap_or(100)).await?))
}

/// Move credits from one of the caller's projects to another project.
#[utoipa::path(post, path = "/v1/ledger/transfers", operation_id = "ledger_transfer_create", request_body = TransferCreate,
    params(("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 201, body = Transfer)))]
async fn transfer_create(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Body(req): Body<TransferCreate>,
) -> Result<Response, ApiError> {
    super::market::run(&st, &c, &headers, Op::Transfer(req)).await
}

/// Mint credits into a project (admins), with a memo for the audit trail.
#[utoipa::path(post, path = "/v1/ledger/mint", operation_id = "ledger_mint", request_body = Mint,
    params(("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 201, body = Transfer)))]
async fn mint(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Body(req): Body<Mint>,
) -> Result<Response, ApiError> {
    super::market::run(&st, &c, &headers, Op::Mint(req)).await
}

/// Reverse a mint or a transfer (admins), once.
#[utoipa::path(post, path = "/v1/ledger/transfers/{id}/reverse", operation_id = "ledger_transfer_reverse",
    params(("id" = i64, Path, description = "transfer id"), ("Idempotency-Key" = String, Header, description = "unique per request: 1-255 printable ASCII characters, no spaces", pattern = "^[!-~]{1,255}$")),
    responses((status = 201, body = Transfer)))]
async fn reverse(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(_): Body<Empty>,
) -> Result<Response, ApiError> {
    super::market::run(&st, &c, &headers, Op::Reverse { transfer: id }).await
}

/// The ledger's self-check (admins): all four numbers are zero in a sound ledger.
#[utoipa::path(get, path = "/v1/ledger/audit", operation_id = "ledger_audit", responses((status = 200, body = Audit)))]
async fn audit(State(st): State<AppState>, c: Caller) -> Result<Json<Audit>, ApiError> {
    Ok(Json(ledger::audit(&st, &c).await?))
}
