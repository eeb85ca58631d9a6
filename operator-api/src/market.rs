//! The marketplace and credits ledger: `/v1/market/...` (offers, buy-now,
//! sealed bids, leases, autobuy, stats) and `/v1/ledger/...` (accounts,
//! transfers, mint, reversals, audit).
//!
//! Copies of the server's types (`app::market::*`) with the same serde
//! attributes and field order, so a decoded answer encodes back to the JSON
//! the server sent. Money is integer milli-credits (1 credit = 1000);
//! prices are milli-credits per node-hour (`*_mph`); times are unix
//! seconds; windows are half-open `[start, end)`.
//!
//! Every mutating call takes an `Idempotency-Key` ([`valid_key`]): a repeat
//! with the same key returns the first answer ([`Keyed::replayed`]), the
//! same key with another body is a 409.

use serde::{Deserialize, Serialize};

use crate::v1::WipeSpec;

/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// Whether `key` is a valid `Idempotency-Key`: 1-255 printable ASCII
/// characters, no spaces (the server's rule).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The answer to a mutating (keyed) call.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyed<T> {
    /// The server's answer.
    pub answer: T,
    /// `Idempotent-Replayed: true`: the stored answer of an earlier request
    /// with the same key; nothing was done again.
    pub replayed: bool,
}

/// One unit's resources (from its runtime's inventory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Online CPUs.
    pub cpus: i64,
    /// Memory, GiB (rounded down).
    pub memory_gib: i64,
    /// Whole disks.
    pub disks: i64,
    /// All disks together, GiB (rounded down).
    pub disk_gib: i64,
    /// Network interfaces.
    pub nics: i64,
}

impl Resources {
    /// The resource class prices are grouped by, e.g. `16c-64g-2d` (as the server names it).
    pub fn class(&self) -> String {
        format!("{}c-{}g-{}d", self.cpus, self.memory_gib, self.disks)
    }
}

/// `POST /v1/market/offers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferCreate {
    /// The owning project; it must hold every node now.
    pub project: String,
    /// One node, or a pool of identical nodes (same resources).
    pub nodes: Vec<String>,
    /// Window start, unix seconds (inclusive; a start in the past means now).
    pub start: i64,
    /// Window end, unix seconds (exclusive).
    pub end: i64,
    /// Reserve price, milli-credits per node-hour: no sale below it.
    pub reserve_mph: i64,
    /// Buy-now price, milli-credits per node-hour (at least the reserve).
    #[serde(default)]
    pub buy_now_mph: Option<i64>,
    /// Close of a sealed-bid auction of the whole window, unix seconds (no
    /// later than the start); absent: buy-now only.
    #[serde(default)]
    pub closes_at: Option<i64>,
    /// Projects that may buy; empty: every project.
    #[serde(default)]
    pub audience: Vec<String>,
    /// The owner may recall a lease early (with `notice_secs` of notice and a pro-rata refund).
    #[serde(default)]
    pub interruptible: bool,
    /// Notice, seconds, before a lease ends or a recall takes effect.
    #[serde(default)]
    pub notice_secs: i64,
    /// Erase the disks between two leases.
    #[serde(default)]
    pub wipe: WipeSpec,
}

/// An offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Id.
    pub id: i64,
    /// Owning project.
    pub owner: String,
    /// Its nodes.
    pub nodes: Vec<String>,
    /// Window start (inclusive), unix seconds.
    pub start: i64,
    /// Window end (exclusive), unix seconds.
    pub end: i64,
    /// Reserve price, milli-credits per node-hour.
    pub reserve_mph: i64,
    /// Buy-now price, if any.
    pub buy_now_mph: Option<i64>,
    /// Sealed bids close then (`null`: buy-now only).
    pub closes_at: Option<i64>,
    /// Projects that may buy (empty: all).
    pub audience: Vec<String>,
    /// Leases may be recalled by the owner.
    pub interruptible: bool,
    /// Notice, seconds.
    pub notice_secs: i64,
    /// Wipe between leases.
    pub wipe: WipeSpec,
    /// One unit's resources.
    pub resources: Resources,
    /// open | settled | withdrawn.
    pub state: String,
    /// Nodes free for the rest of the window now.
    pub available: i64,
    /// Unix seconds.
    pub created_at: i64,
}

fn one() -> i64 {
    1
}

/// `POST /v1/market/offers/{id}/buy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuyRequest {
    /// The buying project.
    pub project: String,
    /// Nodes to buy (default 1).
    #[serde(default = "one")]
    pub quantity: i64,
    /// Lease start, unix seconds (default and at the earliest: now, or the offer's start).
    #[serde(default)]
    pub start: Option<i64>,
    /// Lease end, unix seconds, exclusive (default: the offer's end).
    #[serde(default)]
    pub end: Option<i64>,
}

/// `POST /v1/market/offers/{id}/bids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidCreate {
    /// The bidding project.
    pub project: String,
    /// Nodes wanted (default 1).
    #[serde(default = "one")]
    pub quantity: i64,
    /// Highest price, milli-credits per node-hour (at least the reserve).
    pub max_mph: i64,
    /// All of `quantity` or none.
    #[serde(default)]
    pub all_or_nothing: bool,
}

/// A sealed bid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// Id.
    pub id: i64,
    /// The auctioned offer.
    pub offer: i64,
    /// Bidding project.
    pub project: String,
    /// Nodes wanted.
    pub quantity: i64,
    /// Highest price, milli-credits per node-hour.
    pub max_mph: i64,
    /// All or nothing.
    pub all_or_nothing: bool,
    /// open | won | lost | withdrawn.
    pub state: String,
    /// Nodes won.
    pub won: i64,
    /// The clearing price paid, milli-credits per node-hour (winners).
    pub price_mph: Option<i64>,
    /// Milli-credits held in escrow while open.
    pub held: i64,
    /// Unix seconds.
    pub created_at: i64,
}

/// The result of settling an auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The offer.
    pub offer: i64,
    /// Clearing price, milli-credits per node-hour (`null`: nothing sold).
    pub price_mph: Option<i64>,
    /// The bids, with their outcome.
    pub bids: Vec<Bid>,
    /// The leases made.
    pub leases: Vec<Lease>,
}

/// A lease's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Sold; waits for its start.
    Scheduled,
    /// Its start has come: the node is being moved to the lessee.
    Granting,
    /// The lessee holds the node.
    Active,
    /// The end is near (the notice period of an interruptible lease, or a recall).
    Notice,
    /// Its end has come: the node is being reclaimed and given back to the owner.
    Revoking,
    /// Ran its course; the node is back with the owner.
    Ended,
    /// Cancelled before it started; fully refunded.
    Cancelled,
    /// Recalled by the owner (interruptible leases); the unused time refunded.
    Recalled,
    /// Could not be granted or revoked after bounded retries (see `reason`).
    Failed,
}

impl LeaseState {
    /// The state as the server spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Scheduled => "scheduled",
            LeaseState::Granting => "granting",
            LeaseState::Active => "active",
            LeaseState::Notice => "notice",
            LeaseState::Revoking => "revoking",
            LeaseState::Ended => "ended",
            LeaseState::Cancelled => "cancelled",
            LeaseState::Recalled => "recalled",
            LeaseState::Failed => "failed",
        }
    }

    /// Scheduled to revoking: the lease still holds (or will hold) the node.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            LeaseState::Scheduled
                | LeaseState::Granting
                | LeaseState::Active
                | LeaseState::Notice
                | LeaseState::Revoking
        )
    }
}

impl std::fmt::Display for LeaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lease: one node of an offer, for a window, to a lessee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Id.
    pub id: i64,
    /// The offer it came from.
    pub offer: i64,
    /// The node.
    pub node: String,
    /// Owning project (gets the node back).
    pub owner: String,
    /// Lessee project.
    pub lessee: String,
    /// Start (inclusive), unix seconds.
    pub start: i64,
    /// End (exclusive), unix seconds.
    pub end: i64,
    /// Price, milli-credits per node-hour.
    pub price_mph: i64,
    /// What the window costs, milli-credits.
    pub cost: i64,
    /// State.
    pub state: LeaseState,
    /// The owner may recall it.
    pub interruptible: bool,
    /// Notice, seconds.
    pub notice_secs: i64,
    /// Wipe at the end.
    pub wipe: WipeSpec,
    /// Recalled by the owner.
    pub recalled: bool,
    /// Seconds left until the end (0 once past).
    pub secs_left: i64,
    /// Why it failed, or the last retry's cause.
    pub reason: String,
    /// The winning bid (auction).
    pub bid: Option<i64>,
    /// The autobuy rule that bought it.
    pub autobuy: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last state change.
    pub updated_at: i64,
}

/// `POST /v1/market/leases/{id}/extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    /// The new end, unix seconds (exclusive); within the offer's window and free time.
    pub end: i64,
}

/// `POST /v1/market/autobuy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutobuyCreate {
    /// Buying project.
    pub project: String,
    /// Resource filter, e.g. `cpus>=16,memory_gib>=64`.
    #[serde(default)]
    pub filter: String,
    /// Nodes to keep leased.
    pub target: i64,
    /// Highest buy-now price, milli-credits per node-hour.
    pub max_mph: i64,
    /// Most spent per day (UTC), milli-credits.
    pub daily_budget: i64,
    /// Length of each lease bought, hours.
    pub hours: i64,
}

/// An autobuy rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Autobuy {
    /// Id.
    pub id: i64,
    /// Buying project.
    pub project: String,
    /// Resource filter.
    pub filter: String,
    /// Nodes to keep leased.
    pub target: i64,
    /// Highest buy-now price, milli-credits per node-hour.
    pub max_mph: i64,
    /// Most spent per day, milli-credits.
    pub daily_budget: i64,
    /// Length of each lease bought, hours.
    pub hours: i64,
    /// Left of today's budget (held), milli-credits.
    pub budget_left: i64,
    /// Live leases it bought.
    pub leased: i64,
    /// Whether it runs.
    pub enabled: bool,
    /// What it last did, or why it is paused.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// The answer to `DELETE /v1/market/autobuy/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutobuyDeleted {
    /// The deleted rule.
    pub deleted: i64,
}

/// Prices of one resource class in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricePoint {
    /// Resource class, e.g. `16c-64g-2d`.
    pub class: String,
    /// Start of the hour the leases were sold in, unix seconds.
    pub hour: i64,
    /// Leases sold.
    pub leases: i64,
    /// Lowest price, milli-credits per node-hour.
    pub min_mph: i64,
    /// Mean price.
    pub mean_mph: i64,
    /// Highest price.
    pub max_mph: i64,
}

/// An owner's earnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revenue {
    /// Owning project.
    pub project: String,
    /// Milli-credits received for leases.
    pub revenue: i64,
}

/// `GET /v1/market/stats`: market analytics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Prices by class and hour, oldest first.
    pub prices: Vec<PricePoint>,
    /// Node-seconds leased over node-seconds offered (all offers), 0..1.
    pub utilization: f64,
    /// Offers with at least one lease over offers that are over (settled, withdrawn, or past their end), 0..1.
    pub fill_rate: f64,
    /// Mean seconds from an offer's creation to its first lease.
    pub mean_time_to_fill_secs: f64,
    /// Offers open now.
    pub open_offers: i64,
    /// Leases live now (scheduled to revoking).
    pub live_leases: i64,
    /// Earnings of the owners the caller may see (admins: all).
    pub revenue: Vec<Revenue>,
    /// Offered and leased node-seconds per hour, oldest first (at most a week).
    #[serde(default)]
    pub hourly: Vec<UsePoint>,
}

/// How much of the offered time was leased in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsePoint {
    /// Start of the hour, unix seconds.
    pub hour: i64,
    /// Node-seconds offered in it (up to now).
    pub offered_node_secs: i64,
    /// Node-seconds leased in it (up to now).
    pub leased_node_secs: i64,
}

// ---------------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------------

/// `POST /v1/ledger/mint` (admins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mint {
    /// Project credited (its `available` account).
    pub project: String,
    /// Milli-credits.
    pub amount: i64,
    /// Why (kept in the audit trail).
    pub memo: String,
}

fn available() -> String {
    "available".into()
}

/// `POST /v1/ledger/transfers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferCreate {
    /// Paying project (the caller must be a member).
    pub from_project: String,
    /// Its account paying: `available` (default) or `revenue`.
    #[serde(default = "available")]
    pub from_account: String,
    /// Receiving project (its `available` account; the same project moves revenue to available).
    pub to_project: String,
    /// Milli-credits.
    pub amount: i64,
    /// Why.
    #[serde(default)]
    pub memo: String,
}

/// One ledger account's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Project (`@system` for the mint and the fees).
    pub project: String,
    /// available | escrow | revenue | mint | fees.
    pub kind: String,
    /// Milli-credits.
    pub balance: i64,
}

/// A ledger transfer (every movement of credits is one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Id.
    pub id: i64,
    /// Debited project.
    pub from_project: String,
    /// Debited account.
    pub from_account: String,
    /// Credited project.
    pub to_project: String,
    /// Credited account.
    pub to_account: String,
    /// Milli-credits.
    pub amount: i64,
    /// mint | transfer | hold | release | payment | fee | reversal.
    pub kind: String,
    /// What it is for, e.g. `lease 3`.
    pub reference: String,
    /// Who made it (`market` for the market's own work).
    pub actor: String,
    /// Free text.
    pub memo: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// `GET /v1/ledger/audit` (admins): all four numbers are zero in a sound ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Sum of every balance (the mint included): 0.
    pub sum: i64,
    /// Accounts whose balance differs from their transfers: 0.
    pub drifted_accounts: i64,
    /// Projects whose escrow differs from their open holds: 0.
    pub escrow_mismatches: i64,
    /// Negative balances outside the mint: 0.
    pub negative_balances: i64,
}

/// Which offers `GET /v1/market/offers` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OfferState {
    /// Open for buying or bidding.
    Open,
    /// Auction settled.
    Settled,
    /// Withdrawn by the owner.
    Withdrawn,
}

impl OfferState {
    /// The state as the server spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OfferState::Open => "open",
            OfferState::Settled => "settled",
            OfferState::Withdrawn => "withdrawn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_server_rule() {
        assert!(valid_key("a"));
        assert!(valid_key(&"k".repeat(MAX_KEY_LEN)));
        assert!(!valid_key(""));
        assert!(!valid_key("a b"));
        assert!(!valid_key("é"));
        assert!(!valid_key(&"k".repeat(MAX_KEY_LEN + 1)));
    }

    #[test]
    fn lease_states_are_lowercase() {
        let s: LeaseState = serde_json::from_str("\"revoking\"").unwrap();
        assert_eq!(s, LeaseState::Revoking);
        assert_eq!(serde_json::to_string(&LeaseState::Cancelled).unwrap(), "\"cancelled\"");
        assert!(LeaseState::Scheduled.is_live() && !LeaseState::Ended.is_live());
    }

    #[test]
    fn request_defaults_match_the_server() {
        let b: BuyRequest = serde_json::from_str(r#"{"project":"pb"}"#).unwrap();
        assert_eq!((b.quantity, b.start, b.end), (1, None, None));
        let t: TransferCreate = serde_json::from_str(r#"{"from_project":"a","to_project":"b","amount":5}"#).unwrap();
        assert_eq!((t.from_account.as_str(), t.memo.as_str()), ("available", ""));
    }
}
