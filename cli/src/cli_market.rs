//! `metalcast market ...` and `metalcast credits ...`: the CLI over the
//! marketplace (`/v1/market`) and the credits ledger (`/v1/ledger`).
//!
//! Every mutating command sends an `Idempotency-Key`: a fresh random one,
//! or `--idempotency-key K` so that a script can retry a command safely (a
//! repeat returns the first answer and does nothing again). Times are unix
//! seconds, `now`, or `+30s`/`+30m`/`+2h`/`+1d` from now; amounts and
//! prices are credits with up to three decimals (`1.5`), or milli-credits
//! with an `m` suffix (`1500m`). With `-o json` a command prints the
//! server's JSON (milli-credits, unix seconds); tables show credits with
//! three decimals and UTC times.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use metalcast_operator_api::Client;
use metalcast_operator_api::market::{
    AccountView, Autobuy, AutobuyCreate, Bid, BidCreate, BuyRequest, Extend, Keyed, Lease, Mint, Offer, OfferCreate,
    OfferState, Settlement, Stats, Transfer, TransferCreate, valid_key,
};
use metalcast_operator_api::v1::WipeSpec;
use serde::Serialize;
use serde_json::Value;

use crate::cli_error::{CliError, out};
use crate::table::{finish, plain, rfc3339};
use metalcast_operator_api::display::{credits, parse_credits, span};

const TIME_HELP: &str = "unix seconds, `now`, or `+30s`/`+30m`/`+2h`/`+1d` from now";

/// The `Idempotency-Key` option of every mutating command.
#[derive(Debug, Clone, Args)]
pub struct KeyArg {
    /// Idempotency-Key to send (1-255 printable ASCII characters, no spaces).
    /// Default: a fresh random key per run. Give the same key to retry a
    /// command safely: a repeat returns the first answer and is not applied
    /// (or charged) twice; the same key with other arguments is refused (409).
    #[arg(long, value_name = "KEY", value_parser = parse_key)]
    pub idempotency_key: Option<String>,
}

impl KeyArg {
    /// The key given, or a fresh random one.
    fn key(&self) -> Result<String, CliError> {
        match &self.idempotency_key {
            Some(k) => Ok(k.clone()),
            None => random_key(),
        }
    }
}

/// `metalcast market ...`
#[derive(Debug, Subcommand)]
#[command(after_help = "Times: unix seconds, `now`, or +30s/+30m/+2h/+1d from now. Prices: credits per \
                        node-hour with up to 3 decimals (1.5), or milli-credits with an m suffix (1500m). \
                        Mutating commands send a fresh random Idempotency-Key unless --idempotency-key is given.")]
pub enum MarketCmd {
    /// Offers: put your project's nodes on the market for a time window.
    #[command(subcommand)]
    Offer(OfferCmd),
    /// Buy nodes of an offer now at its buy-now price (one lease per node; the cost is held in escrow).
    Buy {
        /// Offer id.
        offer: i64,
        /// The buying project.
        #[arg(long)]
        project: String,
        /// Nodes to buy.
        #[arg(long, default_value_t = 1)]
        quantity: i64,
        /// Lease start (default: now, or the offer's start); unix seconds, `now`, or +30m/+2h/+1d.
        #[arg(long, value_parser = parse_time)]
        start: Option<i64>,
        /// Lease end, exclusive (default: the offer's end); unix seconds or +30m/+2h/+1d.
        #[arg(long, value_parser = parse_time)]
        end: Option<i64>,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Sealed bids on auctions.
    #[command(subcommand)]
    Bid(BidCmd),
    /// Settle an auction whose close has passed, now (its owner; the market does it by itself soon after).
    Settle {
        /// Offer id.
        offer: i64,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Leases you own or hold.
    #[command(subcommand)]
    Lease(LeaseCmd),
    /// Autobuy rules: keep N nodes leased within a price and a daily budget.
    #[command(subcommand)]
    Autobuy(AutobuyCmd),
    /// Market analytics: prices by resource class and hour (with a bar chart), utilization, fill rate, revenue.
    Stats,
}

/// `metalcast market offer ...`
#[derive(Debug, Subcommand)]
pub enum OfferCmd {
    /// Offer one node, or a pool of identical nodes, of a project for a window.
    Create {
        /// The owning project (it must hold every node).
        #[arg(long)]
        project: String,
        /// Nodes to offer (identical resources; each must have checked in with the runtime).
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Window start (default now); unix seconds, `now`, or +30m/+2h/+1d.
        #[arg(long, value_parser = parse_time)]
        start: Option<i64>,
        /// Window end, exclusive; unix seconds or +30m/+2h/+1d.
        #[arg(long, value_parser = parse_time)]
        end: i64,
        /// Reserve price, credits per node-hour (no sale below it).
        #[arg(long, value_parser = parse_credits)]
        reserve: i64,
        /// Buy-now price, credits per node-hour (at least the reserve).
        #[arg(long, value_parser = parse_credits)]
        buy_now: Option<i64>,
        /// Run a sealed-bid auction that closes then (no later than the start).
        #[arg(long, value_parser = parse_time)]
        closes: Option<i64>,
        /// Only these projects may buy (repeat or comma-separate; default everyone).
        #[arg(long, value_delimiter = ',')]
        audience: Vec<String>,
        /// You may recall leases early (after --notice, with a pro-rata refund).
        #[arg(long)]
        interruptible: bool,
        /// Notice before a lease ends or a recall takes effect, seconds.
        #[arg(long, default_value_t = 0)]
        notice: i64,
        /// Erase the disks between leases.
        #[arg(long, value_enum, default_value_t = WipeSpec::None)]
        wipe: WipeSpec,
        #[command(flatten)]
        key: KeyArg,
    },
    /// List the offers you may see, newest first.
    List {
        /// Only offers in this state.
        #[arg(long, value_enum)]
        state: Option<OfferState>,
        /// Resource filter `field op value[,...]` over cpus, memory_gib, disks, disk_gib, nics
        /// (e.g. `cpus>=16,memory_gib>=64`).
        #[arg(long)]
        filter: Option<String>,
    },
    /// Show an offer.
    Show {
        /// Offer id.
        offer: i64,
    },
    /// Withdraw an open offer: open bids lose (their holds are released); leases sold stay.
    Withdraw {
        /// Offer id.
        offer: i64,
        #[command(flatten)]
        key: KeyArg,
    },
}

/// `metalcast market bid ...`
#[derive(Debug, Subcommand)]
pub enum BidCmd {
    /// Place a sealed bid on an auction; quantity x max price x hours is held in escrow until it settles.
    Place {
        /// Offer id.
        offer: i64,
        /// The bidding project.
        #[arg(long)]
        project: String,
        /// Highest price, credits per node-hour.
        #[arg(long = "max", value_parser = parse_credits)]
        max: i64,
        /// Nodes wanted.
        #[arg(long, default_value_t = 1)]
        quantity: i64,
        /// All of --quantity or none.
        #[arg(long)]
        all_or_nothing: bool,
        #[command(flatten)]
        key: KeyArg,
    },
    /// List your bids.
    List {
        /// Only bids on this offer.
        #[arg(long)]
        offer: Option<i64>,
    },
    /// Withdraw an open bid before its auction closes; its hold is released.
    Withdraw {
        /// Bid id.
        bid: i64,
        #[command(flatten)]
        key: KeyArg,
    },
}

/// `metalcast market lease ...`
#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// List the leases you are a party to, with the time left.
    List {
        /// Only leases where this project is owner or lessee.
        #[arg(long)]
        project: Option<String>,
    },
    /// Show a lease.
    Show {
        /// Lease id.
        lease: i64,
    },
    /// Cancel a scheduled lease (owner or lessee): full refund.
    Cancel {
        /// Lease id.
        lease: i64,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Recall an interruptible lease (its owner): it ends after its notice, pro-rata refund.
    Recall {
        /// Lease id.
        lease: i64,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Extend an active lease into free time of its offer (the lessee).
    Extend {
        /// Lease id.
        lease: i64,
        /// The new end, exclusive; unix seconds or +30m/+2h/+1d.
        #[arg(long, value_parser = parse_time)]
        end: i64,
        #[command(flatten)]
        key: KeyArg,
    },
}

/// `metalcast market autobuy ...`
#[derive(Debug, Subcommand)]
pub enum AutobuyCmd {
    /// Create a rule that keeps --target nodes leased at buy-now prices up to --max.
    Create {
        /// The buying project.
        #[arg(long)]
        project: String,
        /// Resource filter, e.g. `cpus>=16,memory_gib>=64` (default: any node).
        #[arg(long, default_value = "")]
        filter: String,
        /// Nodes to keep leased.
        #[arg(long)]
        target: i64,
        /// Highest buy-now price, credits per node-hour.
        #[arg(long = "max", value_parser = parse_credits)]
        max: i64,
        /// Most spent per UTC day, credits.
        #[arg(long, value_parser = parse_credits)]
        daily_budget: i64,
        /// Length of each lease bought, hours.
        #[arg(long)]
        hours: i64,
        #[command(flatten)]
        key: KeyArg,
    },
    /// List the rules of your projects.
    List {
        /// Only this project's rules.
        #[arg(long)]
        project: Option<String>,
    },
    /// Delete a rule; its budget hold is released.
    Delete {
        /// Rule id.
        rule: i64,
        #[command(flatten)]
        key: KeyArg,
    },
}

/// `metalcast credits ...`
#[derive(Debug, Subcommand)]
#[command(after_help = "Amounts: credits with up to 3 decimals (12.5), or milli-credits with an m suffix \
                        (12500m). Mutating commands send a fresh random Idempotency-Key unless \
                        --idempotency-key is given.")]
pub enum CreditsCmd {
    /// A project's accounts (available, escrow, revenue); without a project, every account (admins).
    Balance {
        /// Project (or `@system`).
        project: Option<String>,
    },
    /// Transfers touching a project, newest first; without a project, all (admins).
    History {
        /// Project.
        project: Option<String>,
        /// At most this many (server default 100, at most 10000).
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Mint credits into a project's available account (admins).
    Mint {
        /// Project credited.
        project: String,
        /// Amount, credits (`12.5`) or milli-credits (`12500m`).
        #[arg(value_parser = parse_credits)]
        amount: i64,
        /// Why (kept in the audit trail).
        #[arg(long)]
        memo: String,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Move credits from one of your projects to another project.
    Transfer {
        /// Paying project.
        #[arg(long)]
        from: String,
        /// Receiving project.
        #[arg(long)]
        to: String,
        /// Amount, credits (`12.5`) or milli-credits (`12500m`).
        #[arg(value_parser = parse_credits)]
        amount: i64,
        /// The paying account: `available` or `revenue`.
        #[arg(long, default_value = "available")]
        from_account: String,
        /// Why.
        #[arg(long, default_value = "")]
        memo: String,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Reverse a mint or a transfer, once (admins).
    Reverse {
        /// Transfer id.
        transfer: i64,
        #[command(flatten)]
        key: KeyArg,
    },
    /// The ledger's self-check (admins): all four numbers are zero in a sound ledger.
    Audit,
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A time argument: unix seconds, `now`, or `+N` with unit `s`, `m`, `h` or `d` from `now`.
fn parse_time_at(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('+') {
        let (num, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num.parse().map_err(|_| format!("{s:?} is not +N followed by s, m, h or d"))?;
        let mult = match unit {
            "s" | "" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("unknown unit {unit:?} in {s:?}: use s, m, h or d")),
        };
        return n.checked_mul(mult).and_then(|d| now.checked_add(d)).ok_or_else(|| format!("{s:?} is too far"));
    }
    s.parse::<i64>().map_err(|_| format!("{s:?} is not a time: use {TIME_HELP}"))
}

fn parse_time(s: &str) -> Result<i64, String> {
    parse_time_at(s, now_secs())
}

fn parse_key(s: &str) -> Result<String, String> {
    if valid_key(s) {
        Ok(s.to_string())
    } else {
        Err("an idempotency key is 1-255 printable ASCII characters without spaces".into())
    }
}

/// A fresh random key: `mc-` and 32 hex digits.
fn random_key() -> Result<String, CliError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| CliError::Input(format!("no randomness for an idempotency key: {e}")))?;
    Ok(format!("mc-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()))
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

/// The half-open window `[start, end)` in UTC.
fn window(start: i64, end: i64) -> String {
    format!("[{}, {})", rfc3339(start), rfc3339(end))
}

fn opt_credits(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), credits)
}

fn opt_time(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), rfc3339)
}

/// Key/value rows.
fn rows(pairs: &[(&str, String)]) -> String {
    let mut t = plain();
    for (k, v) in pairs {
        t.add_row([k.to_string(), v.clone()]);
    }
    finish(t, &[])
}

/// What to print: the server's JSON (`-o json`) or `text`, pre-rendered for
/// humans (a JSON string, which the table renderer prints as it is).
fn reply<T: Serialize>(json: bool, answer: &T, text: impl FnOnce(&T) -> String) -> Result<Value, CliError> {
    if json {
        return out(answer);
    }
    let t = text(answer);
    Ok(if t.is_empty() { Value::Null } else { Value::String(t.trim_end_matches('\n').to_string()) })
}

/// A keyed answer: says on stderr when it was a replay.
fn keyed<T: Serialize>(json: bool, k: Keyed<T>, key: &str, text: impl FnOnce(&T) -> String) -> Result<Value, CliError> {
    if k.replayed {
        eprintln!("note: replayed: the first answer to idempotency key {key}; nothing was done again");
    }
    reply(json, &k.answer, text)
}

fn offer_table(offers: &[Offer]) -> String {
    let mut t = plain();
    t.set_header(["ID", "OWNER", "NODES", "AVAIL", "CLASS", "START", "END", "RESERVE", "BUY-NOW", "CLOSES", "STATE"]);
    for o in offers {
        t.add_row([
            o.id.to_string(),
            o.owner.clone(),
            o.nodes.len().to_string(),
            o.available.to_string(),
            o.resources.class(),
            rfc3339(o.start),
            rfc3339(o.end),
            credits(o.reserve_mph),
            opt_credits(o.buy_now_mph),
            opt_time(o.closes_at),
            o.state.clone(),
        ]);
    }
    finish(t, &[0, 2, 3, 7, 8])
}

fn offer_rows(o: &Offer) -> String {
    let r = &o.resources;
    rows(&[
        ("id", o.id.to_string()),
        ("owner", o.owner.clone()),
        ("state", o.state.clone()),
        ("nodes", o.nodes.join(",")),
        ("available", o.available.to_string()),
        (
            "resources",
            format!(
                "{} ({} cpus, {} GiB memory, {} disks / {} GiB, {} nics)",
                r.class(),
                r.cpus,
                r.memory_gib,
                r.disks,
                r.disk_gib,
                r.nics
            ),
        ),
        ("window", window(o.start, o.end)),
        ("reserve", format!("{} credits/node-hour", credits(o.reserve_mph))),
        ("buy-now", o.buy_now_mph.map_or("-".into(), |p| format!("{} credits/node-hour", credits(p)))),
        ("auction closes", opt_time(o.closes_at)),
        ("audience", if o.audience.is_empty() { "everyone".into() } else { o.audience.join(",") }),
        ("interruptible", o.interruptible.to_string()),
        ("notice", span(o.notice_secs)),
        ("wipe", serde_json::to_value(o.wipe).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()),
        ("created", rfc3339(o.created_at)),
    ])
}

fn bid_table(bids: &[Bid]) -> String {
    let mut t = plain();
    t.set_header(["ID", "OFFER", "PROJECT", "QTY", "MAX", "AON", "STATE", "WON", "PRICE", "HELD", "CREATED"]);
    for b in bids {
        t.add_row([
            b.id.to_string(),
            b.offer.to_string(),
            b.project.clone(),
            b.quantity.to_string(),
            credits(b.max_mph),
            if b.all_or_nothing { "yes" } else { "no" }.into(),
            b.state.clone(),
            b.won.to_string(),
            opt_credits(b.price_mph),
            credits(b.held),
            rfc3339(b.created_at),
        ]);
    }
    finish(t, &[0, 1, 3, 4, 7, 8, 9])
}

fn lease_table(leases: &[Lease]) -> String {
    let mut t = plain();
    t.set_header(["ID", "OFFER", "NODE", "OWNER", "LESSEE", "STATE", "START", "END", "LEFT", "PRICE", "COST"]);
    for l in leases {
        let left = if l.state.is_live() && l.secs_left > 0 { span(l.secs_left) } else { "-".into() };
        t.add_row([
            l.id.to_string(),
            l.offer.to_string(),
            l.node.clone(),
            l.owner.clone(),
            l.lessee.clone(),
            l.state.to_string(),
            rfc3339(l.start),
            rfc3339(l.end),
            left,
            credits(l.price_mph),
            credits(l.cost),
        ]);
    }
    finish(t, &[0, 1, 8, 9, 10])
}

fn lease_rows(l: &Lease) -> String {
    rows(&[
        ("id", l.id.to_string()),
        ("offer", l.offer.to_string()),
        ("node", l.node.clone()),
        ("owner", l.owner.clone()),
        ("lessee", l.lessee.clone()),
        ("state", l.state.to_string()),
        ("window", window(l.start, l.end)),
        ("left", if l.secs_left > 0 { span(l.secs_left) } else { "-".into() }),
        ("price", format!("{} credits/node-hour", credits(l.price_mph))),
        ("cost", format!("{} credits", credits(l.cost))),
        ("interruptible", l.interruptible.to_string()),
        ("notice", span(l.notice_secs)),
        ("recalled", l.recalled.to_string()),
        ("bid", l.bid.map_or("-".into(), |b| b.to_string())),
        ("autobuy", l.autobuy.map_or("-".into(), |a| a.to_string())),
        ("reason", if l.reason.is_empty() { "-".into() } else { l.reason.clone() }),
        ("created", rfc3339(l.created_at)),
        ("updated", rfc3339(l.updated_at)),
    ])
}

fn autobuy_table(rules: &[Autobuy]) -> String {
    let mut t = plain();
    t.set_header([
        "ID",
        "PROJECT",
        "FILTER",
        "TARGET",
        "LEASED",
        "MAX",
        "BUDGET/DAY",
        "LEFT",
        "HOURS",
        "ENABLED",
        "STATUS",
    ]);
    for r in rules {
        t.add_row([
            r.id.to_string(),
            r.project.clone(),
            if r.filter.is_empty() { "-".into() } else { r.filter.clone() },
            r.target.to_string(),
            r.leased.to_string(),
            credits(r.max_mph),
            credits(r.daily_budget),
            credits(r.budget_left),
            r.hours.to_string(),
            r.enabled.to_string(),
            r.status.clone(),
        ]);
    }
    finish(t, &[0, 3, 4, 5, 6, 7, 8])
}

fn account_table(accounts: &[AccountView]) -> String {
    let mut t = plain();
    t.set_header(["PROJECT", "ACCOUNT", "BALANCE"]);
    for a in accounts {
        t.add_row([a.project.clone(), a.kind.clone(), credits(a.balance)]);
    }
    finish(t, &[2])
}

fn transfer_table(transfers: &[Transfer]) -> String {
    let mut t = plain();
    t.set_header(["ID", "TIME", "KIND", "FROM", "TO", "AMOUNT", "REFERENCE", "ACTOR", "MEMO"]);
    for x in transfers {
        t.add_row([
            x.id.to_string(),
            rfc3339(x.created_at),
            x.kind.clone(),
            format!("{}/{}", x.from_project, x.from_account),
            format!("{}/{}", x.to_project, x.to_account),
            credits(x.amount),
            x.reference.clone(),
            x.actor.clone(),
            x.memo.clone(),
        ]);
    }
    finish(t, &[0, 5])
}

fn transfer_line(verb: &str, x: &Transfer) -> String {
    format!(
        "transfer {} ({verb}): {} credits from {}/{} to {}/{}",
        x.id,
        credits(x.amount),
        x.from_project,
        x.from_account,
        x.to_project,
        x.to_account
    )
}

/// Width of the longest bar of `market stats`.
const BAR: usize = 40;

fn stats_text(s: &Stats) -> String {
    let mut text = String::new();
    if s.prices.is_empty() {
        text.push_str("no leases sold yet\n");
    } else {
        let mut t = plain();
        t.set_header(["CLASS", "HOUR", "LEASES", "MIN", "MEAN", "MAX"]);
        for p in &s.prices {
            t.add_row([
                p.class.clone(),
                rfc3339(p.hour),
                p.leases.to_string(),
                credits(p.min_mph),
                credits(p.mean_mph),
                credits(p.max_mph),
            ]);
        }
        text.push_str(&finish(t, &[2, 3, 4, 5]));
    }
    text.push('\n');
    text.push_str(&rows(&[
        ("utilization", format!("{:.1}%", s.utilization * 100.0)),
        ("fill rate", format!("{:.1}%", s.fill_rate * 100.0)),
        ("mean time to fill", span(s.mean_time_to_fill_secs.round() as i64)),
        ("open offers", s.open_offers.to_string()),
        ("live leases", s.live_leases.to_string()),
    ]));
    if !s.revenue.is_empty() {
        let mut t = plain();
        t.set_header(["OWNER", "REVENUE"]);
        for r in &s.revenue {
            t.add_row([r.project.clone(), credits(r.revenue)]);
        }
        text.push('\n');
        text.push_str(&finish(t, &[1]));
    }
    let chart = mean_price_chart(s);
    if !chart.is_empty() {
        text.push_str("\nmean price per class, credits/node-hour:\n");
        text.push_str(&chart);
    }
    text
}

/// One bar per resource class: its mean price over every lease sold
/// (weighted by the leases of each hour), scaled to the highest.
fn mean_price_chart(s: &Stats) -> String {
    let mut by_class: BTreeMap<&str, (i128, i128)> = BTreeMap::new();
    for p in &s.prices {
        let e = by_class.entry(&p.class).or_default();
        e.0 += i128::from(p.mean_mph) * i128::from(p.leases);
        e.1 += i128::from(p.leases);
    }
    let means: Vec<(&str, i64)> = by_class
        .into_iter()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(c, (sum, n))| (c, i64::try_from(sum / n).unwrap_or(i64::MAX)))
        .collect();
    let top = means.iter().map(|(_, m)| *m).max().unwrap_or(0).max(1);
    let width = means.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    means
        .iter()
        .map(|(c, m)| {
            let n = usize::try_from(i128::from(*m) * BAR as i128 / i128::from(top)).unwrap_or(0);
            let n = if *m > 0 { n.max(1) } else { 0 };
            format!("{c:<width$}  {} {}\n", "#".repeat(n), credits(*m))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

/// Run `metalcast market ...`; `json`: print the server's JSON.
pub async fn run_market(c: &Client, cmd: &MarketCmd, json: bool) -> Result<Value, CliError> {
    match cmd {
        MarketCmd::Offer(o) => offer(c, o, json).await,
        MarketCmd::Buy { offer, project, quantity, start, end, key } => {
            let req = BuyRequest { project: project.clone(), quantity: *quantity, start: *start, end: *end };
            let k = key.key()?;
            let r = c.offer_buy(*offer, &req, &k).await?;
            keyed(json, r, &k, |leases: &Vec<Lease>| {
                let total: i64 = leases.iter().map(|l| l.cost).sum();
                let ids: Vec<String> = leases.iter().map(|l| format!("{} ({})", l.id, l.node)).collect();
                let w = leases.first().map(|l| format!(" for {}", window(l.start, l.end))).unwrap_or_default();
                format!(
                    "bought {} node(s) of offer {offer} for {project}{w}: lease {}; {} credits held in escrow; \
                     see `metalcast market lease list --project {project}`",
                    leases.len(),
                    ids.join(", "),
                    credits(total)
                )
            })
        }
        MarketCmd::Bid(b) => bid(c, b, json).await,
        MarketCmd::Settle { offer, key } => {
            let k = key.key()?;
            let r = c.offer_settle(*offer, &k).await?;
            keyed(json, r, &k, |s: &Settlement| {
                let head = match s.price_mph {
                    Some(p) => format!(
                        "offer {} settled at {} credits/node-hour: {} lease(s)\n",
                        s.offer,
                        credits(p),
                        s.leases.len()
                    ),
                    None => format!("offer {} settled: nothing sold\n", s.offer),
                };
                let mut text = head;
                if !s.bids.is_empty() {
                    text.push('\n');
                    text.push_str(&bid_table(&s.bids));
                }
                if !s.leases.is_empty() {
                    text.push('\n');
                    text.push_str(&lease_table(&s.leases));
                }
                text
            })
        }
        MarketCmd::Lease(l) => lease(c, l, json).await,
        MarketCmd::Autobuy(a) => autobuy(c, a, json).await,
        MarketCmd::Stats => reply(json, &c.market_stats().await?, stats_text),
    }
}

async fn offer(c: &Client, cmd: &OfferCmd, json: bool) -> Result<Value, CliError> {
    match cmd {
        OfferCmd::Create {
            project,
            nodes,
            start,
            end,
            reserve,
            buy_now,
            closes,
            audience,
            interruptible,
            notice,
            wipe,
            key,
        } => {
            let req = OfferCreate {
                project: project.clone(),
                nodes: nodes.clone(),
                start: start.unwrap_or_else(now_secs),
                end: *end,
                reserve_mph: *reserve,
                buy_now_mph: *buy_now,
                closes_at: *closes,
                audience: audience.clone(),
                interruptible: *interruptible,
                notice_secs: *notice,
                wipe: *wipe,
            };
            let k = key.key()?;
            let r = c.offer_create(&req, &k).await?;
            keyed(json, r, &k, |o: &Offer| {
                let mut how = Vec::new();
                if let Some(p) = o.buy_now_mph {
                    how.push(format!("buy-now {} credits/node-hour", credits(p)));
                }
                if let Some(t) = o.closes_at {
                    how.push(format!("auction closes {} (reserve {})", rfc3339(t), credits(o.reserve_mph)));
                }
                let next = if o.buy_now_mph.is_some() {
                    format!("buy it with `metalcast market buy {} --project P`", o.id)
                } else {
                    format!("bid with `metalcast market bid place {} --project P --max PRICE`", o.id)
                };
                format!(
                    "offer {} created: {} node(s) of {}, {}, {}; {next}",
                    o.id,
                    o.nodes.len(),
                    o.resources.class(),
                    window(o.start, o.end),
                    how.join(", ")
                )
            })
        }
        OfferCmd::List { state, filter } => {
            reply(json, &c.offers(*state, filter.as_deref()).await?, |o| offer_table(o))
        }
        OfferCmd::Show { offer } => reply(json, &c.offer(*offer).await?, offer_rows),
        OfferCmd::Withdraw { offer, key } => {
            let k = key.key()?;
            let r = c.offer_withdraw(*offer, &k).await?;
            keyed(json, r, &k, |o: &Offer| format!("offer {} withdrawn", o.id))
        }
    }
}

async fn bid(c: &Client, cmd: &BidCmd, json: bool) -> Result<Value, CliError> {
    match cmd {
        BidCmd::Place { offer, project, max, quantity, all_or_nothing, key } => {
            let req = BidCreate {
                project: project.clone(),
                quantity: *quantity,
                max_mph: *max,
                all_or_nothing: *all_or_nothing,
            };
            let k = key.key()?;
            let r = c.bid_create(*offer, &req, &k).await?;
            keyed(json, r, &k, |b: &Bid| {
                format!(
                    "bid {} placed on offer {}: {} node(s) at up to {} credits/node-hour; {} credits held in escrow",
                    b.id,
                    b.offer,
                    b.quantity,
                    credits(b.max_mph),
                    credits(b.held)
                )
            })
        }
        BidCmd::List { offer } => {
            let bids = match offer {
                Some(o) => c.offer_bids(*o).await?,
                None => c.bids().await?,
            };
            reply(json, &bids, |b| bid_table(b))
        }
        BidCmd::Withdraw { bid, key } => {
            let k = key.key()?;
            let r = c.bid_withdraw(*bid, &k).await?;
            keyed(json, r, &k, |b: &Bid| format!("bid {} withdrawn; its hold is released", b.id))
        }
    }
}

async fn lease(c: &Client, cmd: &LeaseCmd, json: bool) -> Result<Value, CliError> {
    let line = |verb: &'static str| {
        move |l: &Lease| format!("lease {} {verb}: {} ({}), {}", l.id, l.state, l.node, window(l.start, l.end))
    };
    match cmd {
        LeaseCmd::List { project } => reply(json, &c.leases(project.as_deref()).await?, |l| lease_table(l)),
        LeaseCmd::Show { lease } => reply(json, &c.lease(*lease).await?, lease_rows),
        LeaseCmd::Cancel { lease, key } => {
            let k = key.key()?;
            keyed(json, c.lease_cancel(*lease, &k).await?, &k, line("cancelled"))
        }
        LeaseCmd::Recall { lease, key } => {
            let k = key.key()?;
            keyed(json, c.lease_recall(*lease, &k).await?, &k, line("recalled"))
        }
        LeaseCmd::Extend { lease, end, key } => {
            let k = key.key()?;
            keyed(json, c.lease_extend(*lease, &Extend { end: *end }, &k).await?, &k, line("extended"))
        }
    }
}

async fn autobuy(c: &Client, cmd: &AutobuyCmd, json: bool) -> Result<Value, CliError> {
    match cmd {
        AutobuyCmd::Create { project, filter, target, max, daily_budget, hours, key } => {
            let req = AutobuyCreate {
                project: project.clone(),
                filter: filter.clone(),
                target: *target,
                max_mph: *max,
                daily_budget: *daily_budget,
                hours: *hours,
            };
            let k = key.key()?;
            let r = c.autobuy_create(&req, &k).await?;
            keyed(json, r, &k, |a: &Autobuy| {
                format!(
                    "autobuy rule {} created: keep {} node(s) leased for {} at up to {} credits/node-hour, \
                     {} credits a day; see `metalcast market autobuy list --project {}`",
                    a.id,
                    a.target,
                    a.project,
                    credits(a.max_mph),
                    credits(a.daily_budget),
                    a.project
                )
            })
        }
        AutobuyCmd::List { project } => reply(json, &c.autobuys(project.as_deref()).await?, |a| autobuy_table(a)),
        AutobuyCmd::Delete { rule, key } => {
            let k = key.key()?;
            let r = c.autobuy_delete(*rule, &k).await?;
            keyed(json, r, &k, |d| format!("autobuy rule {} deleted", d.deleted))
        }
    }
}

/// Run `metalcast credits ...`; `json`: print the server's JSON.
pub async fn run_credits(c: &Client, cmd: &CreditsCmd, json: bool) -> Result<Value, CliError> {
    match cmd {
        CreditsCmd::Balance { project } => reply(json, &c.accounts(project.as_deref()).await?, |a| account_table(a)),
        CreditsCmd::History { project, limit } => {
            reply(json, &c.transfers(project.as_deref(), *limit).await?, |t| transfer_table(t))
        }
        CreditsCmd::Mint { project, amount, memo, key } => {
            let k = key.key()?;
            let req = Mint { project: project.clone(), amount: *amount, memo: memo.clone() };
            keyed(json, c.mint(&req, &k).await?, &k, |t| transfer_line("mint", t))
        }
        CreditsCmd::Transfer { from, to, amount, from_account, memo, key } => {
            let k = key.key()?;
            let req = TransferCreate {
                from_project: from.clone(),
                from_account: from_account.clone(),
                to_project: to.clone(),
                amount: *amount,
                memo: memo.clone(),
            };
            keyed(json, c.transfer_create(&req, &k).await?, &k, |t| transfer_line("transfer", t))
        }
        CreditsCmd::Reverse { transfer, key } => {
            let k = key.key()?;
            keyed(json, c.transfer_reverse(*transfer, &k).await?, &k, |t| transfer_line("reversal", t))
        }
        CreditsCmd::Audit => reply(json, &c.ledger_audit().await?, |a| {
            let sound = a.sum == 0 && a.drifted_accounts == 0 && a.escrow_mismatches == 0 && a.negative_balances == 0;
            let mut text = rows(&[
                ("sum", credits(a.sum)),
                ("drifted accounts", a.drifted_accounts.to_string()),
                ("escrow mismatches", a.escrow_mismatches.to_string()),
                ("negative balances", a.negative_balances.to_string()),
            ]);
            text.push_str(if sound { "the ledger is sound\n" } else { "THE LEDGER IS NOT SOUND\n" });
            text
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metalcast_operator_api::market::PricePoint;

    #[test]
    fn times() {
        assert_eq!(parse_time_at("1700000000", 5), Ok(1_700_000_000));
        assert_eq!(parse_time_at("now", 5), Ok(5));
        assert_eq!(parse_time_at("+30m", 100), Ok(1900));
        assert_eq!(parse_time_at("+2h", 0), Ok(7200));
        assert_eq!(parse_time_at("+1d", 0), Ok(86_400));
        assert_eq!(parse_time_at("+45s", 0), Ok(45));
        assert!(parse_time_at("+2w", 0).is_err());
        assert!(parse_time_at("tomorrow", 0).is_err());
        assert!(parse_time_at("+h", 0).is_err());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_599_997), "2026-12-30T03:06:37Z");
    }

    #[test]
    fn keys() {
        let (a, b) = (random_key().unwrap(), random_key().unwrap());
        assert_ne!(a, b);
        assert!(valid_key(&a) && a.len() == 35, "{a}");
        assert!(parse_key("retry-1").is_ok());
        assert!(parse_key("has space").is_err());
    }

    #[test]
    fn chart_scales_to_the_top_class() {
        let p = |class: &str, leases, mean| PricePoint {
            class: class.into(),
            hour: 0,
            leases,
            min_mph: mean,
            mean_mph: mean,
            max_mph: mean,
        };
        let s = Stats {
            prices: vec![p("16c-64g-1d", 1, 2000), p("16c-64g-1d", 3, 4000), p("8c-32g-1d", 2, 1750)],
            utilization: 0.5,
            fill_rate: 1.0,
            mean_time_to_fill_secs: 60.0,
            open_offers: 1,
            live_leases: 2,
            hourly: vec![],
            revenue: vec![],
        };
        // 16c: (2000 + 3 * 4000) / 4 = 3500, the full bar; 8c: 1750, half of it.
        let chart = mean_price_chart(&s);
        assert_eq!(chart, format!("16c-64g-1d  {} 3.500\n8c-32g-1d   {} 1.750\n", "#".repeat(40), "#".repeat(20)));
        assert!(stats_text(&s).contains("utilization        50.0%"), "{}", stats_text(&s));
    }
}
