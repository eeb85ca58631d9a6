//! Market analytics: clearing prices per resource class and utilization
//! over time as server-side SVG charts, each with its table, and the
//! market's headline numbers.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;

use super::{price, tabs};
use crate::app::AppState;
use crate::app::market::stats;
use crate::app::sessions::Session;
use crate::http::ui::charts::{Series, time_chart};
use crate::http::ui::{UiError, views};
use metalcast_operator_api::display::{credits, span};

pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/market/analytics", get(show))
}

async fn show(State(st): State<AppState>, s: Session) -> Result<Response, UiError> {
    let m = stats::stats(&st, &s.caller).await?;
    let mut by_class: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    for p in &m.prices {
        by_class.entry(&p.class).or_default().push((p.hour, p.mean_mph as f64));
    }
    let prices: Vec<Series> =
        by_class.into_iter().map(|(class, points)| Series { name: class.to_string(), points }).collect();
    let ratio = |a: i64, b: i64| if b > 0 { a as f64 / b as f64 * 100.0 } else { 0.0 };
    let usage = [Series {
        name: "leased / offered".into(),
        points: m.hourly.iter().map(|h| (h.hour, ratio(h.leased_node_secs, h.offered_node_secs))).collect(),
    }];
    let body = html! {
        (tabs("Analytics"))
        h1 { "Market analytics" }
        dl.facts #headline {
            dt { "Open offers" } dd { (m.open_offers) }
            dt { "Live leases" } dd { (m.live_leases) }
            dt { "Utilization" } dd { (format!("{:.1} %", m.utilization * 100.0)) " of all node-time offered was leased" }
            dt { "Fill rate" } dd { (format!("{:.1} %", m.fill_rate * 100.0)) " of finished offers sold at least once" }
            dt { "Time to fill" } dd { (span(m.mean_time_to_fill_secs.round() as i64)) " from an offer to its first lease, on average" }
        }
        h2 { "Clearing prices" }
        (time_chart("price-chart", "Mean price per resource class and hour, credits per node-hour", &prices, None,
                    |v| credits(v.round() as i64)))
        table #prices {
            thead { tr { th { "Hour (UTC)" } th { "Class" } th.num { "Leases" } th.num { "Lowest" } th.num { "Mean" } th.num { "Highest" } } }
            tbody {
                @for p in m.prices.iter().rev() {
                    tr { td { (views::time(p.hour)) } td { (p.class) } td.num { (p.leases) }
                         td.num { (price(p.min_mph)) } td.num { (price(p.mean_mph)) } td.num { (price(p.max_mph)) } }
                }
            }
        }
        h2 { "Utilization" }
        (time_chart("use-chart", "Leased node-time over offered node-time per hour, %", &usage, Some(100.0),
                    |v| format!("{v:.0} %")))
        table #utilization {
            thead { tr { th { "Hour (UTC)" } th.num { "Node-hours offered" } th.num { "Node-hours leased" } th.num { "Utilization" } } }
            tbody {
                @for h in m.hourly.iter().rev() {
                    tr { td { (views::time(h.hour)) } td.num { (format!("{:.2}", h.offered_node_secs as f64 / 3600.0)) }
                         td.num { (format!("{:.2}", h.leased_node_secs as f64 / 3600.0)) }
                         td.num { (format!("{:.1} %", ratio(h.leased_node_secs, h.offered_node_secs))) } }
                }
            }
        }
        @if !m.revenue.is_empty() {
            h2 { "Revenue of your projects" }
            table #revenue {
                thead { tr { th { "Project" } th.num { "Credits earned" } } }
                tbody { @for r in &m.revenue { tr { td { (r.project) } td.num { (credits(r.revenue)) } } } }
            }
        }
    };
    Ok(views::page("Market analytics", Some(&s), body).into_response())
}
