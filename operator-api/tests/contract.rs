//! The types against what the server pins about itself: the golden HIL
//! session (`/v0`, byte for byte) and the OpenAPI document of `/v1`, both
//! kept by the control plane's own tests (`control-plane/src/tests/golden/`).
//! A server change that alters a shape fails here until the copy follows.

use std::collections::BTreeMap;

use metalcast_operator_api::market::*;
use metalcast_operator_api::netboot::*;
use metalcast_operator_api::v0::*;
use metalcast_operator_api::v1::*;
use metalcast_operator_api::{ErrorBody, v1};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const HIL_V0: &str = include_str!("../../control-plane/src/tests/golden/hil_v0.txt");
const OPENAPI: &str = include_str!("../../control-plane/src/tests/golden/openapi.json");

/// One request/answer of the golden session.
#[derive(Debug)]
struct Exchange<'a> {
    method: &'a str,
    path: &'a str,
    request: Option<&'a str>,
    status: u16,
    answer: Option<&'a str>,
}

fn exchanges() -> Vec<Exchange<'static>> {
    let mut out = Vec::new();
    let mut lines = HIL_V0.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(call) = line.strip_prefix(">>> ") else { continue };
        let mut words = call.split_whitespace();
        let (method, path) = (words.next().expect("method"), words.next().expect("path"));
        if method == "WAIT" {
            continue;
        }
        let mut request = None;
        let status_line = match lines.next().expect("a line after the call") {
            l if l.starts_with("<<< ") => l,
            body => {
                request = Some(body);
                lines.next().expect("status line")
            }
        };
        let status: u16 = status_line.trim_start_matches("<<< ").parse().expect("status");
        let answer = lines.next().filter(|l| !l.is_empty());
        out.push(Exchange { method, path, request, status, answer });
    }
    out
}

/// `text` decodes as `T` and encodes to the same bytes.
fn same_bytes<T: DeserializeOwned + Serialize>(text: &str, what: &str) {
    let t: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    assert_eq!(serde_json::to_string(&t).unwrap(), text, "{what}");
}

/// `text` decodes as `T`, and its encoding has every field of `text` with
/// the same value (request bodies: the key order is free, and a field the
/// client leaves at the server's default may be sent explicitly).
fn same_value<T: DeserializeOwned + Serialize>(text: &str, what: &str) {
    let t: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    let sent = serde_json::to_value(&t).unwrap();
    let Value::Object(fields) = serde_json::from_str(text).unwrap() else { panic!("{what}: not an object") };
    for (k, v) in fields {
        assert_eq!(sent.get(&k), Some(&v), "{what}: field {k}");
    }
}

#[test]
fn v0_answers_round_trip_byte_for_byte() {
    let mut checked = 0;
    for x in exchanges() {
        let Some(answer) = x.answer else { continue };
        let what = format!("{} {} -> {}", x.method, x.path, x.status);
        if x.status >= 400 {
            same_bytes::<ErrorBody>(answer, &what);
            checked += 1;
            continue;
        }
        let p: Vec<&str> = x.path.split('?').next().unwrap_or_default().trim_start_matches('/').split('/').collect();
        match (x.method, p.as_slice()) {
            ("GET", ["v0", "auth", "basic", "users"]) => same_bytes::<BTreeMap<String, UserInfo>>(answer, &what),
            ("GET", ["v0", "projects" | "switches" | "active_extensions"])
            | ("GET", ["v0", "nodes", _])
            | ("GET", ["v0", "project", _, "nodes" | "networks"]) => same_bytes::<Vec<String>>(answer, &what),
            ("GET", ["v0", "node", _]) => same_bytes::<NodeView>(answer, &what),
            ("GET", ["v0", "node", _, "power_status"]) => same_bytes::<PowerStatus>(answer, &what),
            ("GET", ["v0", "networks"]) => same_bytes::<BTreeMap<String, NetworkSummary>>(answer, &what),
            ("GET", ["v0", "network", _]) => same_bytes::<NetworkView>(answer, &what),
            ("GET", ["v0", "network", _, "attachments"]) => same_bytes::<BTreeMap<String, Attachment>>(answer, &what),
            ("GET", ["v0", "networking_action", _]) => same_bytes::<NetworkingAction>(answer, &what),
            ("GET", ["v0", "switch", _]) => same_bytes::<SwitchView>(answer, &what),
            ("GET", ["v0", "switch", _, "port", _]) => same_bytes::<PortView>(answer, &what),
            ("POST", ["v0", "node", _, "nic", _, "connect_network" | "detach_network"])
            | ("POST", ["v0", "switch", _, "port", _, "revert"]) => same_bytes::<StatusId>(answer, &what),
            _ => panic!("no type for the answer of {what}: {answer}"),
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} answers in the golden session");
}

#[test]
fn v0_accepted_requests_have_types() {
    let mut checked = 0;
    for x in exchanges() {
        let (Some(body), true) = (x.request, x.status < 300) else { continue };
        let what = format!("{} {} {body}", x.method, x.path);
        let p: Vec<&str> = x.path.split('?').next().unwrap_or_default().trim_start_matches('/').split('/').collect();
        match (x.method, p.as_slice()) {
            ("POST", ["v0", "project", _, "connect_node" | "detach_node"]) => same_value::<NodeArg>(body, &what),
            ("PUT", ["v0", "node", _]) => same_value::<NodeRegister>(body, &what),
            ("POST", ["v0", "node", _, "power_cycle"]) => same_value::<PowerCycle>(body, &what),
            ("PUT", ["v0", "node", _, "boot_device"]) => same_value::<BootDev>(body, &what),
            ("PUT", ["v0", "node", _, "nic", _]) => same_value::<NicRegister>(body, &what),
            ("PUT", ["v0", "node", _, "metadata", _]) => same_value::<MetadataValue>(body, &what),
            ("POST", ["v0", "node", _, "nic", _, "connect_network"]) => same_value::<ConnectNetwork>(body, &what),
            ("POST", ["v0", "node", _, "nic", _, "detach_network"]) => same_value::<DetachNetwork>(body, &what),
            ("PUT", ["v0", "network", _]) => same_value::<NetworkCreate>(body, &what),
            ("POST", ["v0", "switch", _, "port", _, "connect_nic"]) => same_value::<NodeNic>(body, &what),
            ("PUT", ["v0", "auth", "basic", "user", _]) => same_value::<UserCreate>(body, &what),
            ("PATCH", ["v0", "auth", "basic", "user", _]) => same_value::<UserPatch>(body, &what),
            ("POST", ["v0", "auth", "basic", "user", _, "add_project" | "remove_project"]) => {
                same_value::<ProjectArg>(body, &what)
            }
            // The golden session registers test-only `mock` switches.
            ("PUT", ["v0", "switch", _]) => continue,
            _ => panic!("no type for the request {what}"),
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} request bodies in the golden session");
}

#[test]
fn switch_bodies_are_the_drivers_shapes() {
    let b = SwitchRegister::LinuxBridge { bridge: "br0".into(), netns: None };
    assert_eq!(serde_json::to_value(&b).unwrap(), json!({"type": "linux-bridge", "bridge": "br0"}));
    let b: SwitchRegister = serde_json::from_value(json!({"type": "linux-vlan-bridges", "netns": "sw"})).unwrap();
    assert_eq!(b, SwitchRegister::VlanBridges { netns: "sw".into() });
    let up = json!({"type": "upstream", "url": "http://parent:7000", "project": "pa", "node": "n1"});
    let b: SwitchRegister = serde_json::from_value(up.clone()).unwrap();
    assert_eq!(serde_json::to_value(&b).unwrap(), up);
}

#[test]
fn nic_port_absent_and_null_stay_apart() {
    let admin = r#"{"label":"eth0","macaddr":"52:54:00:00:00:01","networks":{},"port":null,"switch":null}"#;
    let nic: NicView = serde_json::from_str(admin).unwrap();
    assert_eq!((nic.port.clone(), nic.switch.clone()), (Some(None), Some(None)));
    let member = r#"{"label":"eth0","macaddr":"52:54:00:00:00:01","networks":{}}"#;
    let nic: NicView = serde_json::from_str(member).unwrap();
    assert_eq!((nic.port, nic.switch), (None, None));
}

// ---------------------------------------------------------------------------
// /v1 against the OpenAPI document
// ---------------------------------------------------------------------------

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().expect("ref name");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// A value of `schema` with every property present and non-null.
fn sample(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        return e[0].clone();
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        return sample(doc, &one[0]);
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").expect("a non-null type"),
        _ => "object",
    };
    match ty {
        "string" => json!("x"),
        "integer" => json!(7),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "array" => json!([sample(doc, &schema["items"])]),
        _ => {
            let props = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
            Value::Object(props.iter().map(|(k, s)| (k.clone(), sample(doc, s))).collect())
        }
    }
}

/// The schema's sample (and every enum value / `oneOf` variant) decodes as
/// `T` and encodes to the same value: same field names, same types.
fn matches_schema<T: DeserializeOwned + Serialize>(doc: &Value, name: &str) {
    let schema = &doc["components"]["schemas"][name];
    let mut samples = vec![sample(doc, schema)];
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        samples = e.clone();
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        samples = one.iter().map(|s| sample(doc, s)).collect();
    }
    for s in samples {
        let t: T = serde_json::from_value(s.clone()).unwrap_or_else(|e| panic!("{name}: {e}: {s}"));
        assert_eq!(serde_json::to_value(&t).unwrap(), s, "{name}");
    }
}

#[test]
fn v1_types_match_the_openapi_document() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let names: Vec<String> = doc["components"]["schemas"].as_object().unwrap().keys().cloned().collect();
    for name in &names {
        match name.as_str() {
            "AccountView" => matches_schema::<AccountView>(&doc, name),
            "Audit" => matches_schema::<Audit>(&doc, name),
            "Autobuy" => matches_schema::<Autobuy>(&doc, name),
            "AutobuyCreate" => matches_schema::<AutobuyCreate>(&doc, name),
            "Bid" => matches_schema::<Bid>(&doc, name),
            "BidCreate" => matches_schema::<BidCreate>(&doc, name),
            "BuyRequest" => matches_schema::<BuyRequest>(&doc, name),
            "Change" => matches_schema::<DeploymentChange>(&doc, name),
            "Extend" => matches_schema::<Extend>(&doc, name),
            "Lease" => matches_schema::<Lease>(&doc, name),
            "LeaseState" => matches_schema::<LeaseState>(&doc, name),
            "Mint" => matches_schema::<Mint>(&doc, name),
            "Offer" => matches_schema::<Offer>(&doc, name),
            "OfferCreate" => matches_schema::<OfferCreate>(&doc, name),
            "PricePoint" => matches_schema::<PricePoint>(&doc, name),
            "UsePoint" => matches_schema::<UsePoint>(&doc, name),
            "Resources" => matches_schema::<Resources>(&doc, name),
            "Revenue" => matches_schema::<Revenue>(&doc, name),
            "Settlement" => matches_schema::<Settlement>(&doc, name),
            "Stats" => matches_schema::<Stats>(&doc, name),
            "Transfer" => matches_schema::<Transfer>(&doc, name),
            "TransferCreate" => matches_schema::<TransferCreate>(&doc, name),
            "DeployRequest" => matches_schema::<DeployRequest>(&doc, name),
            "Deployment" => matches_schema::<Deployment>(&doc, name),
            "DeploymentState" => matches_schema::<v1::DeploymentState>(&doc, name),
            "ErrorBody" => matches_schema::<ErrorBody>(&doc, name),
            "HandoverSpec" => matches_schema::<HandoverSpec>(&doc, name),
            "Health" => matches_schema::<Health>(&doc, name),
            "ImageInfo" => matches_schema::<ImageInfo>(&doc, name),
            "Keypair" => matches_schema::<Keypair>(&doc, name),
            "KeypairCreate" => matches_schema::<KeypairCreate>(&doc, name),
            "NodeEvent" => matches_schema::<NodeEvent>(&doc, name),
            "NodeProgress" => matches_schema::<NodeProgress>(&doc, name),
            "NodeRuntime" => matches_schema::<NodeRuntime>(&doc, name),
            "NodeState" => matches_schema::<v1::NodeState>(&doc, name),
            "NodeStatus" => matches_schema::<v1::NodeStatus>(&doc, name),
            "NodeSummary" => matches_schema::<v1::NodeSummary>(&doc, name),
            "Quota" => matches_schema::<Quota>(&doc, name),
            "QuotaUsage" => matches_schema::<QuotaUsage>(&doc, name),
            "ReclaimPhase" => matches_schema::<ReclaimPhase>(&doc, name),
            "ReclaimRequest" => matches_schema::<ReclaimRequest>(&doc, name),
            "Reclaimed" => matches_schema::<Reclaimed>(&doc, name),
            "SetVisibility" => matches_schema::<SetVisibility>(&doc, name),
            "TargetSpec" => matches_schema::<TargetSpec>(&doc, name),
            "TokenCreate" => matches_schema::<TokenCreate>(&doc, name),
            "TokenCreated" => matches_schema::<TokenCreated>(&doc, name),
            "TokenInfo" => matches_schema::<TokenInfo>(&doc, name),
            "Visibility" => matches_schema::<v1::Visibility>(&doc, name),
            "WhoAmI" => matches_schema::<WhoAmI>(&doc, name),
            "WipeSpec" => matches_schema::<WipeSpec>(&doc, name),
            "BootChoice" => matches_schema::<BootChoice>(&doc, name),
            "DhcpLease" => matches_schema::<DhcpLease>(&doc, name),
            "Enrollment" => matches_schema::<Enrollment>(&doc, name),
            "EnrollmentAccept" => matches_schema::<EnrollmentAccept>(&doc, name),
            "NodeBoot" => matches_schema::<NodeBoot>(&doc, name),
            other => panic!("the server's schema {other} has no type here"),
        }
    }
    assert_eq!(names.len(), 55, "{names:?}");
}

#[test]
fn deploy_request_leaves_out_unset_options() {
    let mut r = DeployRequest::new("img");
    r.project = Some("p".into());
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        json!({"image": "img", "nodes": [], "project": "p", "target": {"kind": "memory"},
               "handover": "kexec", "cmdline_append": "", "keypairs": []})
    );
    assert!(TERMINAL.contains(&v1::NodeState::Verified) && !TERMINAL.contains(&v1::NodeState::Receiving));
}
