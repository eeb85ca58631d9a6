//! [`Client`] methods of the marketplace (`/v1/market`) and the credits
//! ledger (`/v1/ledger`). Mutating calls send the caller's
//! `Idempotency-Key` and answer [`Keyed`]: the server's answer and whether
//! it was a replay of an earlier request with the same key.
//!
//! A key must be 1-255 printable ASCII characters without spaces
//! ([`crate::market::valid_key`]): the server refuses other keys with 400,
//! and one that cannot be an HTTP header value at all (control characters)
//! fails in the HTTP client before sending ([`Error::Transport`]). Callers
//! that take keys from users check them with `valid_key` first.

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{Client, NO_BODY};
use crate::error::Error;
use crate::market::{
    AccountView, Audit, Autobuy, AutobuyCreate, AutobuyDeleted, Bid, BidCreate, BuyRequest, Extend, Keyed, Lease, Mint,
    Offer, OfferCreate, OfferState, Settlement, Stats, Transfer, TransferCreate,
};
use crate::path::segment;

/// An empty JSON object, for keyed calls that take no arguments.
#[derive(Serialize)]
struct Empty {}

/// `?k=v&...` of the pairs that have a value (values percent-encoded), or
/// nothing.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", segment(v)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

impl Client {
    /// A mutating call under `Idempotency-Key: key`, whose answer is JSON of type `T`.
    async fn keyed<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: &B,
    ) -> Result<Keyed<T>, Error> {
        let rb = self.request(method, path).header("idempotency-key", key).json(body);
        let resp = self.send(rb).await?;
        let replayed = resp
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        let answer =
            serde_json::from_slice(&bytes).map_err(|source| Error::Decode { path: path.to_string(), source })?;
        Ok(Keyed { answer, replayed })
    }

    // -----------------------------------------------------------------------
    // /v1/market offers and trading
    // -----------------------------------------------------------------------

    /// `GET /v1/market/offers[?state=..&filter=..]`: the offers the caller
    /// may see, newest first; `filter` is `field op value[,...]`, e.g.
    /// `cpus>=16,memory_gib>=64`.
    pub async fn offers(&self, state: Option<OfferState>, filter: Option<&str>) -> Result<Vec<Offer>, Error> {
        let q = query(&[("state", state.map(|s| s.as_str().to_string())), ("filter", filter.map(str::to_string))]);
        self.json(Method::GET, &format!("/v1/market/offers{q}"), NO_BODY).await
    }

    /// `POST /v1/market/offers`: offer nodes of one of the caller's projects.
    pub async fn offer_create(&self, req: &OfferCreate, key: &str) -> Result<Keyed<Offer>, Error> {
        self.keyed(Method::POST, "/v1/market/offers", key, req).await
    }

    /// `GET /v1/market/offers/{id}`.
    pub async fn offer(&self, id: i64) -> Result<Offer, Error> {
        self.json(Method::GET, &format!("/v1/market/offers/{id}"), NO_BODY).await
    }

    /// `DELETE /v1/market/offers/{id}`: withdraw an open offer (its owner).
    pub async fn offer_withdraw(&self, id: i64, key: &str) -> Result<Keyed<Offer>, Error> {
        self.keyed(Method::DELETE, &format!("/v1/market/offers/{id}"), key, &Empty {}).await
    }

    /// `POST /v1/market/offers/{id}/buy`: buy nodes now at the buy-now
    /// price; one lease per node.
    pub async fn offer_buy(&self, id: i64, req: &BuyRequest, key: &str) -> Result<Keyed<Vec<Lease>>, Error> {
        self.keyed(Method::POST, &format!("/v1/market/offers/{id}/buy"), key, req).await
    }

    /// `GET /v1/market/offers/{id}/bids`: the caller's bids on an offer.
    pub async fn offer_bids(&self, id: i64) -> Result<Vec<Bid>, Error> {
        self.json(Method::GET, &format!("/v1/market/offers/{id}/bids"), NO_BODY).await
    }

    /// `POST /v1/market/offers/{id}/bids`: a sealed bid (its maximum is held in escrow).
    pub async fn bid_create(&self, offer: i64, req: &BidCreate, key: &str) -> Result<Keyed<Bid>, Error> {
        self.keyed(Method::POST, &format!("/v1/market/offers/{offer}/bids"), key, req).await
    }

    /// `POST /v1/market/offers/{id}/settle`: settle an auction whose close has passed.
    pub async fn offer_settle(&self, id: i64, key: &str) -> Result<Keyed<Settlement>, Error> {
        self.keyed(Method::POST, &format!("/v1/market/offers/{id}/settle"), key, &Empty {}).await
    }

    /// `GET /v1/market/bids`: the caller's bids.
    pub async fn bids(&self) -> Result<Vec<Bid>, Error> {
        self.json(Method::GET, "/v1/market/bids", NO_BODY).await
    }

    /// `DELETE /v1/market/bids/{id}`: withdraw an open bid; its hold is released.
    pub async fn bid_withdraw(&self, id: i64, key: &str) -> Result<Keyed<Bid>, Error> {
        self.keyed(Method::DELETE, &format!("/v1/market/bids/{id}"), key, &Empty {}).await
    }

    // -----------------------------------------------------------------------
    // /v1/market leases
    // -----------------------------------------------------------------------

    /// `GET /v1/market/leases[?project=p]`: leases the caller is a party to
    /// (only those where `project` is owner or lessee).
    pub async fn leases(&self, project: Option<&str>) -> Result<Vec<Lease>, Error> {
        let q = query(&[("project", project.map(str::to_string))]);
        self.json(Method::GET, &format!("/v1/market/leases{q}"), NO_BODY).await
    }

    /// `GET /v1/market/leases/{id}`.
    pub async fn lease(&self, id: i64) -> Result<Lease, Error> {
        self.json(Method::GET, &format!("/v1/market/leases/{id}"), NO_BODY).await
    }

    /// `DELETE /v1/market/leases/{id}`: cancel a scheduled lease (full refund).
    pub async fn lease_cancel(&self, id: i64, key: &str) -> Result<Keyed<Lease>, Error> {
        self.keyed(Method::DELETE, &format!("/v1/market/leases/{id}"), key, &Empty {}).await
    }

    /// `POST /v1/market/leases/{id}/recall`: the owner recalls an
    /// interruptible lease (ends after its notice, pro-rata refund).
    pub async fn lease_recall(&self, id: i64, key: &str) -> Result<Keyed<Lease>, Error> {
        self.keyed(Method::POST, &format!("/v1/market/leases/{id}/recall"), key, &Empty {}).await
    }

    /// `POST /v1/market/leases/{id}/extend`: the lessee moves the end of an active lease.
    pub async fn lease_extend(&self, id: i64, req: &Extend, key: &str) -> Result<Keyed<Lease>, Error> {
        self.keyed(Method::POST, &format!("/v1/market/leases/{id}/extend"), key, req).await
    }

    // -----------------------------------------------------------------------
    // /v1/market autobuy and stats
    // -----------------------------------------------------------------------

    /// `GET /v1/market/autobuy[?project=p]`: autobuy rules of the caller's projects.
    pub async fn autobuys(&self, project: Option<&str>) -> Result<Vec<Autobuy>, Error> {
        let q = query(&[("project", project.map(str::to_string))]);
        self.json(Method::GET, &format!("/v1/market/autobuy{q}"), NO_BODY).await
    }

    /// `POST /v1/market/autobuy`.
    pub async fn autobuy_create(&self, req: &AutobuyCreate, key: &str) -> Result<Keyed<Autobuy>, Error> {
        self.keyed(Method::POST, "/v1/market/autobuy", key, req).await
    }

    /// `DELETE /v1/market/autobuy/{id}`: its budget hold is released.
    pub async fn autobuy_delete(&self, id: i64, key: &str) -> Result<Keyed<AutobuyDeleted>, Error> {
        self.keyed(Method::DELETE, &format!("/v1/market/autobuy/{id}"), key, &Empty {}).await
    }

    /// `GET /v1/market/stats`.
    pub async fn market_stats(&self) -> Result<Stats, Error> {
        self.json(Method::GET, "/v1/market/stats", NO_BODY).await
    }

    // -----------------------------------------------------------------------
    // /v1/ledger
    // -----------------------------------------------------------------------

    /// `GET /v1/ledger/accounts[?project=p]`: a project's accounts (or
    /// `@system`'s); without a project, every account (admins).
    pub async fn accounts(&self, project: Option<&str>) -> Result<Vec<AccountView>, Error> {
        let q = query(&[("project", project.map(str::to_string))]);
        self.json(Method::GET, &format!("/v1/ledger/accounts{q}"), NO_BODY).await
    }

    /// `GET /v1/ledger/transfers[?project=p&limit=n]`: newest first (the
    /// server's default limit is 100).
    pub async fn transfers(&self, project: Option<&str>, limit: Option<i64>) -> Result<Vec<Transfer>, Error> {
        let q = query(&[("project", project.map(str::to_string)), ("limit", limit.map(|l| l.to_string()))]);
        self.json(Method::GET, &format!("/v1/ledger/transfers{q}"), NO_BODY).await
    }

    /// `POST /v1/ledger/transfers`: move credits from one of the caller's projects.
    pub async fn transfer_create(&self, req: &TransferCreate, key: &str) -> Result<Keyed<Transfer>, Error> {
        self.keyed(Method::POST, "/v1/ledger/transfers", key, req).await
    }

    /// `POST /v1/ledger/mint` (admins).
    pub async fn mint(&self, req: &Mint, key: &str) -> Result<Keyed<Transfer>, Error> {
        self.keyed(Method::POST, "/v1/ledger/mint", key, req).await
    }

    /// `POST /v1/ledger/transfers/{id}/reverse` (admins): reverse a mint or a transfer, once.
    pub async fn transfer_reverse(&self, id: i64, key: &str) -> Result<Keyed<Transfer>, Error> {
        self.keyed(Method::POST, &format!("/v1/ledger/transfers/{id}/reverse"), key, &Empty {}).await
    }

    /// `GET /v1/ledger/audit` (admins).
    pub async fn ledger_audit(&self) -> Result<Audit, Error> {
        self.json(Method::GET, "/v1/ledger/audit", NO_BODY).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded() {
        assert_eq!(query(&[("a", None)]), "");
        let q = query(&[("state", Some("open".into())), ("filter", Some("cpus>=16,memory_gib>=64".into()))]);
        assert_eq!(q, "?state=open&filter=cpus%3E%3D16%2Cmemory_gib%3E%3D64");
        assert_eq!(query(&[("project", None), ("limit", Some("5".into()))]), "?limit=5");
    }
}
