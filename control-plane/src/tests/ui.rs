//! The web console over HTTP, as a browser would drive it (cookies, forms),
//! without a browser: sign-in, the session cookie's flags, security
//! headers, the same authorization as the API, anti-forgery tokens, hostile
//! text escaped, sign-out. The browser test (`cli/tests/web_console.rs`)
//! drives the same pages in Chromium.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{Harness, Who};
use crate::both_backends;

/// One browser: its cookie jar (name -> value).
#[derive(Default)]
struct Browser {
    cookies: std::collections::BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: String,
    set_cookies: Vec<String>,
    csp: String,
    body: String,
}

impl Browser {
    async fn send(
        &mut self,
        h: &Harness,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Page {
        let mut rb = Request::builder().method(method).uri(path).header(header::HOST, "console.test");
        if !self.cookies.is_empty() {
            let c: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            rb = rb.header(header::COOKIE, c.join("; "));
        }
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        let body = if method == "POST" {
            rb = rb.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish()
        } else {
            String::new()
        };
        let resp = h.app.clone().oneshot(rb.body(Body::from(body)).unwrap()).await.unwrap();
        let hv =
            |n: header::HeaderName| resp.headers().get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let (location, csp) = (hv(header::LOCATION), hv(header::CONTENT_SECURITY_POLICY));
        let set_cookies: Vec<String> =
            resp.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
        for c in &set_cookies {
            let (kv, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") || v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap();
        Page { status, location, set_cookies, csp, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn get(&mut self, h: &Harness, path: &str) -> Page {
        self.send(h, "GET", path, &[], &[]).await
    }

    /// Signs in through the form; returns the page's anti-forgery token.
    async fn sign_in(&mut self, h: &Harness, fields: &[(&str, &str)]) -> Page {
        let form = self.get(h, "/ui/login").await;
        let csrf = hidden(&form.body, "csrf");
        let mut all = vec![("csrf", csrf.as_str()), ("next", "/ui/nodes")];
        all.extend_from_slice(fields);
        self.send(h, "POST", "/ui/login", &all, &[]).await
    }
}

/// The value of the first hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} field in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn web_console(h: &Harness) {
    let key = format!("ui-{}", crate::auth::random_hex(4));
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    h.user("alice", &["pa"]).await;
    h.user("bob", &["pb"]).await;
    let obm = json!({"obm": crate::drivers::mock::obm(&key)});
    for n in ["na", "nb", "nf"] {
        h.ok("PUT", &format!("/v0/node/{n}"), Some(obm.clone())).await;
    }
    h.ok("PUT", "/v0/node/na/nic/eth0", Some(json!({"macaddr": "52:54:00:00:00:01"}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "na"}))).await;
    h.ok("POST", "/v0/project/pb/connect_node", Some(json!({"node": "nb"}))).await;
    // Text from outside, full of markup, quotes and Unicode.
    let hostile = "<script>alert(\"x\")</script>' onmouseover='x' é€😀";
    h.ok("PUT", "/v0/node/na/metadata/note", Some(json!({"value": hostile}))).await;

    // Not signed in: pages go to the sign-in form, which comes back afterwards.
    let mut b = Browser::default();
    let p = b.get(h, "/ui/nodes?state=free").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location, "/ui/login?next=%2Fui%2Fnodes");
    let p = b.get(h, "/ui/login").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.csp.contains("default-src 'none'") && p.csp.contains("script-src 'self'"), "{}", p.csp);
    assert!(!p.csp.contains("unsafe"), "{}", p.csp);

    // A wrong password: back to the form, no session.
    let p = b.sign_in(h, &[("user", "alice"), ("password", "nope")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p.location.starts_with("/ui/login?failed=1"), "{}", p.location);
    assert!(!b.cookies.contains_key("metalcast_session"));
    // A sign-in form posted without its own token (forged from elsewhere) is refused.
    let p = b.send(h, "POST", "/ui/login", &[("csrf", "x"), ("user", "alice"), ("password", "alice-pw")], &[]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(!b.cookies.contains_key("metalcast_session"));

    // Alice signs in: a session cookie, HttpOnly, SameSite=Strict, for /ui, not Secure on plain HTTP.
    let p = b.sign_in(h, &[("user", "alice"), ("password", "alice-pw")]).await;
    assert_eq!((p.status, p.location.as_str()), (StatusCode::SEE_OTHER, "/ui/nodes"));
    let session = p.set_cookies.iter().find(|c| c.starts_with("metalcast_session=")).expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(flag), "{session} lacks {flag}");
    }
    assert!(!session.contains("Secure"), "{session}");
    assert!(!p.location.contains("alice-pw"));

    // The fleet as the API shows it to her: her project's node and the free one, not B's.
    let p = b.get(h, "/ui/nodes").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("data-node=\"na\"") && p.body.contains("data-node=\"nf\""), "{}", p.body);
    assert!(!p.body.contains("data-node=\"nb\""), "alice sees bob's node: {}", p.body);
    assert_eq!(b.get(h, "/ui/nodes?project=pb").await.body.matches("data-node=").count(), 0);
    let free = b.get(h, "/ui/nodes?state=free").await.body;
    assert!(free.contains("data-node=\"nf\"") && !free.contains("data-node=\"na\""), "{free}");
    assert!(free.contains("<option value=\"free\" selected>"), "{free}");
    assert_eq!(b.get(h, "/ui/nodes?state=bogus").await.status, StatusCode::BAD_REQUEST);
    let p = b.get(h, "/ui/nodes/nb").await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    let p = b.get(h, "/ui/projects").await;
    assert!(p.body.contains(">pa<") && !p.body.contains(">pb<"), "{}", p.body);

    // Hostile text renders as text.
    let p = b.get(h, "/ui/nodes/na").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(!p.body.contains("<script>alert"), "unescaped: {}", p.body);
    assert!(p.body.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' onmouseover='x' é€😀"), "{}", p.body);

    // Forms need the session's anti-forgery token, checked before anything runs.
    let csrf = hidden(&p.body, "csrf");
    let before = h.snapshot().await;
    let p = b.send(h, "POST", "/ui/nodes/na/power", &[("op", "off")], &[]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("anti-forgery token"), "{}", p.body);
    let p = b.send(h, "POST", "/ui/nodes/na/power", &[("op", "off"), ("csrf", "0123")], &[]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // With the token, but posted from another site.
    let p = b
        .send(h, "POST", "/ui/nodes/na/power", &[("op", "off"), ("csrf", &csrf)], &[("origin", "https://evil.test")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = b
        .send(h, "POST", "/ui/nodes/na/power", &[("op", "off"), ("csrf", &csrf)], &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(h.snapshot().await, before);
    let calls = crate::drivers::mock::with(&key, |m| m.log.clone());
    assert!(!calls.iter().any(|c| c.starts_with("power")), "a refused form reached the BMC: {calls:?}");
    // The real thing: same origin, right token.
    let p = b
        .send(h, "POST", "/ui/nodes/na/power", &[("op", "off"), ("csrf", &csrf)], &[("origin", "http://console.test")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(p.location.starts_with("/ui/nodes/na?done="), "{}", p.location);
    let calls = crate::drivers::mock::with(&key, |m| m.log.clone());
    assert!(calls.iter().any(|c| c == "power Off"), "no BMC call: {calls:?}");
    // Alice cannot power bob's node through the console either.
    let p = b.send(h, "POST", "/ui/nodes/nb/power", &[("op", "off"), ("csrf", &csrf)], &[]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);

    // A forged session cookie is no session.
    let mut forged = Browser::default();
    let real = b.cookies["metalcast_session"].clone();
    forged.cookies.insert("metalcast_session".into(), format!("{}.{}", &real[..32], "00".repeat(24)));
    assert_eq!(forged.get(h, "/ui/nodes").await.status, StatusCode::SEE_OTHER);

    // Signing in with an API token works too; signing out ends the session on the server.
    let mut admin = Browser::default();
    let Who::Bearer(token) = &h.admin else { panic!("the harness's admin uses a token") };
    let p = admin.sign_in(h, &[("token", token)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = admin.get(h, "/ui/nodes").await;
    assert!(p.body.contains("data-node=\"nb\""), "the admin sees every node: {}", p.body);
    // Quotas: only the admin gets the form; lowering under use needs force.
    assert!(!b.get(h, "/ui/projects").await.body.contains("id=\"quota\""));
    let projects = admin.get(h, "/ui/projects").await.body;
    assert!(projects.contains("id=\"quota\""), "{projects}");
    let csrf = hidden(&projects, "csrf");
    let form = [("csrf", csrf.as_str()), ("project", "pa"), ("max_nodes", "0"), ("max_image_mib", "64")];
    let p = admin.send(h, "POST", "/ui/projects/quota", &form, &[]).await;
    assert_eq!(p.status, StatusCode::CONFLICT, "pa holds a node: {}", p.body);
    assert!(p.body.contains("force"), "{}", p.body);
    let forced = [&form[..], &[("force", "true")]].concat();
    let p = admin.send(h, "POST", "/ui/projects/quota", &forced, &[]).await;
    assert_eq!((p.status, p.location.as_str()), (StatusCode::SEE_OTHER, "/ui/projects?done=quota+of+pa+set"));
    let q = h.ok("GET", "/v1/projects/pa/quota", None).await;
    assert_eq!((q["quota"]["max_nodes"].as_i64(), q["quota"]["max_image_bytes"].as_i64()), (Some(0), Some(64 << 20)));
    assert!(q["quota"]["max_images"].is_null(), "{q}");
    let alice_csrf = hidden(&b.get(h, "/ui/nodes").await.body, "csrf");
    let p = b.send(h, "POST", "/ui/projects/quota", &[("csrf", &alice_csrf), ("project", "pa")], &[]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "alice sets quotas: {}", p.body);
    let old = admin.cookies.clone();
    let p = admin.send(h, "POST", "/ui/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!((p.status, p.location.as_str()), (StatusCode::SEE_OTHER, "/ui/login"));
    admin.cookies = old;
    assert_eq!(admin.get(h, "/ui/nodes").await.status, StatusCode::SEE_OTHER, "the old cookie still works");

    // Static files: the vendored scripts, cached, typed.
    let p = b.get(h, "/ui/assets/htmx-2.0.11.min.js").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("htmx"));
    assert_eq!(b.get(h, "/ui/assets/..%2Fsecret").await.status, StatusCode::NOT_FOUND);
    // The stylesheet a page links to, named by its content's hash.
    let page = b.get(h, "/ui/nodes").await.body;
    let at = page.find("href=\"/ui/assets/console-").expect("a stylesheet link") + 6;
    let css = &page[at..at + page[at..].find('"').unwrap()];
    let p = b.get(h, css).await;
    assert_eq!(p.status, StatusCode::OK, "{css}");
    assert!(p.body.contains("nav.tabs"), "{css}");
}

both_backends!(web_console);

/// The value of hidden input `name` in the part of `html` after `marker`
/// (a form's `id="..."`).
fn hidden_after(html: &str, marker: &str, name: &str) -> String {
    let at = html.find(marker).unwrap_or_else(|| panic!("no {marker} in {html}"));
    hidden(&html[at..], name)
}

/// The `data-balance` of account `kind` on a credits page.
fn shown_balance(html: &str, kind: &str) -> i64 {
    let marker = format!("data-account=\"{kind}\" data-balance=\"");
    let at = html.find(&marker).unwrap_or_else(|| panic!("no {kind}: {html}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

async fn signed_in(h: &Harness, user: &str) -> Browser {
    let mut b = Browser::default();
    let p = b.sign_in(h, &[("user", user), ("password", &format!("{user}-pw"))]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    b
}

/// The marketplace through the console's forms: a bid placed from the offer
/// page (its form sent twice does one bid), sealed from the owner, won at
/// the close at the second price; the lease and the credits move on the
/// leases and credits pages; a transfer, an autobuy rule, a cancel; the
/// analytics charts. Checked against the API and the ledger's audit.
async fn web_console_market(h: &Harness) {
    use super::market::{audit_clean, balance, mint, node_in, now};
    for p in ["pa", "pb", "pc"] {
        h.ok("PUT", &format!("/v0/project/{p}"), None).await;
    }
    h.user("alice", &["pa"]).await;
    h.user("bob", &["pb"]).await;
    let carol = h.user("carol", &["pc"]).await;
    node_in(h, "n1", "pa", "52:54:00:00:07:01").await;
    mint(h, "pc", 10_000).await;
    let t = now(h).await;
    // One node for an hour starting in ten minutes; sealed bids close in 12 s
    // (three password checks come before it, on a loaded two-core CI machine).
    let offer = json!({"project": "pa", "nodes": ["n1"], "start": t + 600, "end": t + 4200,
                       "reserve_mph": 1000, "closes_at": t + 12});
    let (s, o, _) = h.keyed("POST", "/v1/market/offers", &h.admin.clone(), "ui-o", offer).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["id"].as_i64().unwrap();

    // The admin mints credits for pb through the console.
    let mut admin = Browser::default();
    let Who::Bearer(token) = &h.admin else { panic!("the harness's admin uses a token") };
    admin.sign_in(h, &[("token", token)]).await;
    let p = admin.get(h, "/ui/market/credits?project=pb").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let (csrf, key) = (hidden(&p.body, "csrf"), hidden_after(&p.body, "id=\"mint\"", "key"));
    let form = [("csrf", csrf.as_str()), ("key", &key), ("project", "pb"), ("amount", "10"), ("memo", "welcome")];
    let p = admin.send(h, "POST", "/ui/market/credits/mint", &form, &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(p.location.starts_with("/ui/market/credits?project=pb&done="), "{}", p.location);
    assert_eq!(balance(h, "pb", "available").await, 10_000);

    // Bob finds the offer by its resources; a filter it does not meet hides it.
    let mut bob = signed_in(h, "bob").await;
    let listed = bob.get(h, "/ui/market?cpus=16&memory_gib=64").await;
    assert!(listed.body.contains(&format!("data-offer=\"{id}\"")), "{}", listed.body);
    assert!(!bob.get(h, "/ui/market?cpus=32").await.body.contains("data-offer="));
    assert!(!bob.get(h, "/ui/market?filter=cpus%3E%3D32").await.body.contains("data-offer="));
    assert_eq!(bob.get(h, "/ui/market?filter=gpus%3E1").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(bob.get(h, "/ui/market/credits").await.status, StatusCode::OK);
    assert_eq!(bob.get(h, "/ui/market/credits?project=pa").await.status, StatusCode::FORBIDDEN);

    // Bob bids 2.5 credits per node-hour; the same form sent twice is one bid.
    let page = bob.get(h, &format!("/ui/market/offers/{id}")).await;
    assert!(page.body.contains("id=\"bid\""), "no bid form: {}", page.body);
    assert!(!page.body.contains("id=\"buy\""), "a buy-now form on an auction-only offer");
    let (csrf, key) = (hidden(&page.body, "csrf"), hidden_after(&page.body, "id=\"bid\"", "key"));
    let bid = [("csrf", csrf.as_str()), ("key", &key), ("project", "pb"), ("quantity", "1"), ("max", "2.5")];
    let path = format!("/ui/market/offers/{id}/bid");
    let p = bob.send(h, "POST", &path, &bid[1..], &[]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "a bid without the anti-forgery token: {}", p.body);
    let p = bob.send(h, "POST", &path, &bid, &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(p.location.starts_with(&format!("/ui/market/offers/{id}?done=bid")), "{}", p.location);
    let again = bob.send(h, "POST", &path, &bid, &[]).await;
    assert!(again.location.contains("nothing+done+twice"), "{}", again.location);
    let bids = h.ok("GET", &format!("/v1/market/offers/{id}/bids"), None).await;
    assert_eq!(bids.as_array().unwrap().len(), 1, "{bids}");
    let credits = bob.get(h, "/ui/market/credits?project=pb").await.body;
    assert_eq!((shown_balance(&credits, "available"), shown_balance(&credits, "escrow")), (7500, 2500));
    // Over his means, bob is told why, and nothing is held.
    let page = bob.get(h, &format!("/ui/market/offers/{id}")).await;
    let key = hidden_after(&page.body, "id=\"bid\"", "key");
    let p = bob.send(h, "POST", &path, &[("csrf", &csrf), ("key", &key), ("project", "pb"), ("max", "100")], &[]).await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    assert!(p.body.contains("not enough available credits"), "{}", p.body);
    // Carol bids 1.5 through the API; alice, the owner, sees no bid while they are sealed.
    let (s, v, _) = h
        .keyed("POST", &format!("/v1/market/offers/{id}/bids"), &carol, "c1", json!({"project": "pc", "max_mph": 1500}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut alice = signed_in(h, "alice").await;
    let sealed = alice.get(h, &format!("/ui/market/offers/{id}")).await.body;
    assert!(!sealed.contains("data-bid="), "{sealed}");
    assert!(!sealed.contains("id=\"bid\""), "the owner is offered a bid form: {sealed}");

    // The close: bob wins at carol's price (the highest losing bid).
    let settled = crate::app::market::driver::run_until(&h.st, std::time::Duration::from_secs(60), async || {
        h.ok("GET", &format!("/v1/market/offers/{id}"), None).await["state"] == "settled"
    })
    .await;
    assert!(settled, "the auction did not settle");
    let page = bob.get(h, &format!("/ui/market/offers/{id}")).await.body;
    assert!(page.contains("data-state=\"won\""), "{page}");
    let leases = bob.get(h, "/ui/market/leases").await.body;
    assert!(leases.contains("data-state=\"scheduled\""), "{leases}");
    assert!(leases.contains("1.500/node-h") && leases.contains(">n1</a>"), "{leases}");
    let credits = bob.get(h, "/ui/market/credits?project=pb").await.body;
    assert_eq!((shown_balance(&credits, "available"), shown_balance(&credits, "escrow")), (8500, 1500));
    assert_eq!(balance(h, "pb", "available").await, 8500);
    assert!(credits.contains("data-kind=\"release\""), "{credits}");
    // The owner sees the settled bids and the lease.
    assert!(alice.get(h, &format!("/ui/market/offers/{id}")).await.body.contains("data-bid="));
    assert!(alice.get(h, "/ui/market/leases").await.body.contains("data-lease="));
    // Carol's losing bid came back whole.
    assert_eq!(balance(h, "pc", "available").await, 10_000);

    // Analytics: the clearing price on its chart and in its table.
    let page = bob.get(h, "/ui/market/analytics").await.body;
    assert!(page.contains("<svg id=\"price-chart\""), "{page}");
    assert!(page.contains("16c-64g-1d"), "{page}");
    // Hourly utilization starts at the first offer's start (ten minutes ahead): a chart or "no data yet".
    assert!(page.contains("id=\"use-chart\""), "{page}");

    // A transfer, an autobuy rule made and deleted, a cancelled lease.
    let key = hidden_after(&credits, "id=\"transfer\"", "key");
    let form = [
        ("csrf", csrf.as_str()),
        ("key", &key),
        ("from_project", "pb"),
        ("from_account", "available"),
        ("to_project", "pa"),
        ("amount", "0.5"),
        ("memo", "<thanks>"),
    ];
    let p = bob.send(h, "POST", "/ui/market/credits/transfer", &form, &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(balance(h, "pb", "available").await, 8000);
    assert!(bob.get(h, "/ui/market/credits?project=pb").await.body.contains("&lt;thanks&gt;"));
    let page = bob.get(h, "/ui/market/autobuy").await.body;
    let key = hidden_after(&page, "id=\"new-autobuy\"", "key");
    let form = [
        ("csrf", csrf.as_str()),
        ("key", &key),
        ("project", "pb"),
        ("filter", "cpus>=8"),
        ("target", "1"),
        ("max", "1"),
        ("budget", "2"),
        ("hours", "1"),
    ];
    let p = bob.send(h, "POST", "/ui/market/autobuy", &form, &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let page = bob.get(h, "/ui/market/autobuy").await.body;
    let rule = h.ok("GET", "/v1/market/autobuy", None).await[0]["id"].as_i64().unwrap();
    assert!(page.contains(&format!("data-rule=\"{rule}\"")), "{page}");
    let key = hidden_after(&page, &format!("/ui/market/autobuy/{rule}/delete"), "key");
    let p =
        bob.send(h, "POST", &format!("/ui/market/autobuy/{rule}/delete"), &[("csrf", &csrf), ("key", &key)], &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(h.ok("GET", "/v1/market/autobuy", None).await.as_array().unwrap().is_empty());
    let lease = h.ok("GET", "/v1/market/leases", None).await[0]["id"].as_i64().unwrap();
    let page = bob.get(h, "/ui/market/leases").await.body;
    let key = hidden_after(&page, &format!("/ui/market/leases/{lease}/cancel"), "key");
    let p =
        bob.send(h, "POST", &format!("/ui/market/leases/{lease}/cancel"), &[("csrf", &csrf), ("key", &key)], &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(bob.get(h, "/ui/market/leases").await.body.contains("data-state=\"cancelled\""));

    // Buy-now: one node of a second offer for one hour at 2 credits per node-hour; the form sent twice buys once.
    node_in(h, "n2", "pa", "52:54:00:00:07:02").await;
    let t = now(h).await;
    let offer = json!({"project": "pa", "nodes": ["n2"], "start": t + 60, "end": t + 7260,
                       "reserve_mph": 1000, "buy_now_mph": 2000});
    let (s, o, _) = h.keyed("POST", "/v1/market/offers", &h.admin.clone(), "ui-o2", offer).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id2 = o["id"].as_i64().unwrap();
    let page = bob.get(h, &format!("/ui/market/offers/{id2}")).await.body;
    assert!(!page.contains("id=\"bid\""), "a bid form on a buy-now-only offer: {page}");
    let key = hidden_after(&page, "id=\"buy\"", "key");
    let before = balance(h, "pb", "available").await;
    let form = [("csrf", csrf.as_str()), ("key", &key), ("project", "pb"), ("quantity", "1"), ("hours", "1")];
    for _ in 0..2 {
        let p = bob.send(h, "POST", &format!("/ui/market/offers/{id2}/buy"), &form, &[]).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        assert!(p.location.starts_with("/ui/market/leases?done=bought+1+lease"), "{}", p.location);
    }
    assert_eq!(balance(h, "pb", "available").await, before - 2000, "one hour at 2 credits, paid once");
    let leases = h.ok("GET", "/v1/market/leases?project=pb", None).await;
    let bought: Vec<&Value> = leases.as_array().unwrap().iter().filter(|l| l["offer"] == id2).collect();
    assert_eq!(bought.len(), 1, "{leases}");
    assert_eq!(bought[0]["end"].as_i64().unwrap() - bought[0]["start"].as_i64().unwrap(), 3600);
    assert!(bob.get(h, "/ui/market/leases").await.body.contains("2.000/node-h"));
    // Alice cannot buy her own project's offer: the form offers her no project.
    let page = alice.get(h, &format!("/ui/market/offers/{id2}")).await.body;
    assert!(!page.contains("id=\"buy\""), "{page}");
    audit_clean(h).await;
}

both_backends!(web_console_market);
