//! The OpenAPI 3.1 document served at `/v1/openapi.json`.
//!
//! Maintained by hand next to the router (a derive-based generator would
//! need schema derives on the core's snapshot types). Tests keep it honest:
//! every route in [`ENDPOINTS`] must be in the document and answer in the
//! router, every documented path must be routed, every `$ref` must resolve,
//! and real responses must carry the properties the schemas mark required.

use serde_json::{json, Value};

/// Every (method, path) the router serves, in OpenAPI path syntax.
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("get", "/v1/state"),
    ("get", "/v1/pops"),
    ("get", "/v1/pops/{name}"),
    ("get", "/v1/peers"),
    ("get", "/v1/checks"),
    ("post", "/v1/pops/{name}/drain"),
    ("post", "/v1/pops/{name}/undrain"),
    ("post", "/v1/pops/{name}/disable"),
    ("post", "/v1/pops/{name}/enable"),
    ("get", "/v1/explain"),
    ("get", "/v1/events"),
    ("post", "/v1/reload"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/fleet"),
    ("get", "/v1/fleet/report"),
];

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": r("Error")}}})
}

fn ok_json(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn pop_param() -> Value {
    json!({"name": "name", "in": "path", "required": true, "description": "PoP name",
           "schema": {"type": "string"}})
}

fn admin_op(summary: &str, body: &str, extra: &[(&str, Value)]) -> Value {
    let mut responses = json!({
        "200": ok_json("The change is in force; the PoP as of the snapshot that includes it.", r("AdminResult")),
        "400": err("Malformed body, wrong type or unknown field (`field` names it)."),
        "401": err("Missing or invalid bearer token."),
        "404": err("Unknown PoP."),
        "422": err("A value is not acceptable (`field` names it)."),
        "500": err("Admin state could not be persisted; nothing changed."),
        "503": err("The controller is shutting down or did not answer."),
    });
    for (code, v) in extra {
        responses[*code] = v.clone();
    }
    json!({
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": [pop_param()],
        "requestBody": {"required": false, "content": {"application/json": {"schema": r(body)}}},
        "responses": responses,
    })
}

fn read_op(summary: &str, ok: Value) -> Value {
    json!({
        "summary": summary,
        "security": [{}, {"bearer": []}],
        "responses": {"200": ok, "401": err("Reads are protected (api.protect_reads) and the token is missing or invalid.")},
    })
}

/// The document.
pub fn document() -> Value {
    let conflict = err("Refused: last PoP serving traffic (use force), or nothing to undo.");
    let mut pop_get = read_op(
        "One PoP: state, reason, checks, admin override, prefixes.",
        ok_json("The PoP.", r("Pop")),
    );
    pop_get["parameters"] = json!([pop_param()]);
    pop_get["responses"]["404"] = err("Unknown PoP.");
    let mut explain = read_op(
        "Why a DNS query gets the answer it gets.",
        ok_json(
            "The explanation, from the DNS engine.",
            json!({"type": "object"}),
        ),
    );
    explain["parameters"] = json!([
        {"name": "name", "in": "query", "required": true, "schema": {"type": "string"}, "description": "Query name"},
        {"name": "type", "in": "query", "required": false, "schema": {"type": "string", "default": "A"}, "description": "Query type"},
        {"name": "client", "in": "query", "required": false, "schema": {"type": "string"}, "description": "Client address (192.0.2.1) or EDNS Client Subnet (198.51.100.0/24); default: no client information"},
    ]);
    explain["responses"]["400"] = err("Unknown query parameter.");
    explain["responses"]["422"] =
        err("Missing name, unknown type, bad client address, or a name outside the zones.");
    explain["responses"]["500"] = err("The zone data could not be compiled.");
    let mut events = read_op(
        "Server-Sent Events: replay of recent events, then every state change live.",
        json!({"description": "An event stream; each message has id = seq, event = kind, data = Event JSON.",
               "content": {"text/event-stream": {"schema": {"type": "string"}}}}),
    );
    events["parameters"] = json!([
        {"name": "replay", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0},
         "description": "Replay at most this many past events (default: all kept)."},
        {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string"},
         "description": "Replay only events after this sequence number."},
    ]);
    events["responses"]["503"] =
        err("Too many open event streams, or the controller is shutting down.");
    let mut metrics = read_op(
        "Prometheus metrics (text exposition format 0.0.4).",
        json!({"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}),
    );
    metrics["summary"] = json!("Prometheus metrics (text exposition format 0.0.4).");
    let fleet = read_op(
        "The fleet view: peers, and per PoP the owner's verdict, each vantage point's, the admin state and the fleet verdict (docs/fleet.md).",
        ok_json("The fleet view (`enabled: false` without `fleet:`).", r("Fleet")),
    );
    let mut report = read_op(
        "This node's fleet report (format 1), read by its peers; long-poll with wait/after/instance.",
        ok_json("The report.", r("FleetReport")),
    );
    report["parameters"] = json!([
        {"name": "wait", "in": "query", "required": false, "schema": {"type": "string"},
         "description": "Hold the request up to this long (e.g. 1s, 500ms; at most 60s) while the report is still revision `after` of `instance`."},
        {"name": "after", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0},
         "description": "The revision the caller has."},
        {"name": "instance", "in": "query", "required": false, "schema": {"type": "string"},
         "description": "The instance the caller's revision belongs to."},
    ]);
    report["responses"]["400"] = err("Unknown query parameter or a malformed value.");
    report["responses"]["404"] = err("This node has no fleet: section.");
    report["responses"]["422"] = err("wait is not a duration or longer than 60s.");

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "anypop API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operate an anypop PoP routing controller: read state, drain and disable PoPs, stream events, reload config.",
        },
        "paths": {
            "/v1/state": {"get": read_op("Everything: node, PoPs, checks, announcements, BGP peers, DNS zones.", ok_json("The state.", r("State")))},
            "/v1/pops": {"get": read_op("All PoPs.", ok_json("PoPs by name.", r("Pops")))},
            "/v1/pops/{name}": {"get": pop_get},
            "/v1/peers": {"get": read_op("BGP peers: FSM state, uptime, prefixes advertised.", ok_json("Peers.", r("Peers")))},
            "/v1/checks": {"get": read_op("Every check with its last result and rise/fall counters.", ok_json("Checks.", r("Checks")))},
            "/v1/pops/{name}/drain": {"post": admin_op("Drain a PoP (graceful choreography or immediate).", "DrainRequest", &[("409", conflict.clone())])},
            "/v1/pops/{name}/undrain": {"post": admin_op("Undrain a PoP (ramp back, or immediate).", "UndrainRequest", &[("409", conflict.clone())])},
            "/v1/pops/{name}/disable": {"post": admin_op("Disable a PoP: out of DNS, prefixes withdrawn.", "DisableRequest", &[("409", conflict.clone())])},
            "/v1/pops/{name}/enable": {"post": admin_op("Remove a PoP's admin override (disable or drain) at once.", "EnableRequest", &[("409", conflict)])},
            "/v1/explain": {"get": explain},
            "/v1/events": {"get": events},
            "/v1/reload": {"post": {
                "summary": "Reload the config file (same rules as SIGHUP).",
                "security": [{"bearer": []}],
                "responses": {
                    "200": ok_json("Reloaded.", r("ReloadResult")),
                    "401": err("Missing or invalid bearer token."),
                    "422": err("The new config is invalid; `errors` lists every problem. The running config is unchanged."),
                    "501": err("Reload is not available in this process."),
                    "503": err("Reload timed out."),
                }
            }},
            "/healthz": {"get": {"summary": "The process is alive.", "responses": {"200": ok_json("Alive.", r("Health"))}}},
            "/readyz": {"get": {"summary": "Config loaded and listeners up.", "responses": {
                "200": ok_json("Ready.", r("Ready")),
                "503": ok_json("Not ready; `waiting` lists what is not up yet.", r("Ready")),
            }}},
            "/metrics": {"get": metrics},
            "/v1/fleet": {"get": fleet},
            "/v1/fleet/report": {"get": report},
            "/v1/openapi.json": {"get": {"summary": "This document.", "responses": {"200": ok_json("OpenAPI 3.1 document.", json!({"type": "object"}))}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "The token from the file named by api.token_file."}},
            "schemas": schemas(),
        }
    })
}

fn schemas() -> Value {
    let admin_status = json!({"type": ["object", "null"], "required": ["kind", "reason", "who", "step", "next_at"], "properties": {
        "kind": {"type": "string", "enum": ["drain", "disable"]},
        "reason": {"type": "string"}, "who": {"type": "string"},
        "step": {"type": "string", "description": "dns_removed, shutdown, drained, restoring or disabled"},
        "next_at": {"type": ["number", "null"], "description": "Unix time of the next step or of the auto-undrain, whichever comes first"},
        "until": {"type": ["number", "null"], "description": "Unix time of the auto-undrain (the drain's duration), if any"},
    }});
    let mut m = serde_json::Map::new();
    m.insert("Error".into(), json!({"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string"},
            "field": {"type": "string", "description": "The body field or query parameter at fault"},
            "errors": {"type": "array", "items": {"type": "string"}},
        }}));
    m.insert("ProbeOutcome".into(), json!({"type": ["object", "null"], "required": ["ok", "detail", "took", "at"], "properties": {
            "ok": {"type": "boolean"}, "detail": {"type": "string"},
            "took": {"type": "number", "description": "milliseconds"},
            "at": {"type": "number", "description": "Unix time"},
        }}));
    m.insert("CheckStatus".into(), json!({"type": "object", "required": ["verdict", "successes", "failures", "rise", "fall", "last"], "properties": {
            "verdict": {"type": "string", "enum": ["unknown", "up", "down"]},
            "successes": {"type": "integer"}, "failures": {"type": "integer"},
            "rise": {"type": "integer"}, "fall": {"type": "integer"},
            "last": r("ProbeOutcome"),
        }}));
    m.insert("Check".into(), json!({"type": "object", "required": ["pop", "check", "verdict", "successes", "failures", "rise", "fall", "last"], "properties": {
            "pop": {"type": "string"}, "check": {"type": "string"},
            "verdict": {"type": "string", "enum": ["unknown", "up", "down"]},
            "successes": {"type": "integer"}, "failures": {"type": "integer"},
            "rise": {"type": "integer"}, "fall": {"type": "integer"},
            "last": r("ProbeOutcome"),
        }}));
    m.insert(
        "Checks".into(),
        json!({"type": "object", "required": ["version", "checks"], "properties": {
            "version": {"type": "integer"}, "checks": {"type": "array", "items": r("Check")},
        }}),
    );
    m.insert("AdminStatus".into(), json!(admin_status));
    m.insert("RouteAttrs".into(), json!({"type": "object", "required": ["prepend", "med", "local_pref", "communities", "large_communities"], "properties": {
            "prepend": {"type": "integer"}, "med": {"type": ["integer", "null"]}, "local_pref": {"type": ["integer", "null"]},
            "communities": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
            "large_communities": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        }}));
    m.insert(
        "Announcement".into(),
        json!({"type": "object", "required": ["pop", "mode", "attrs"], "properties": {
            "pop": {"type": "string"},
            "mode": {"type": "string", "enum": ["normal", "degraded", "graceful_shutdown"]},
            "attrs": r("RouteAttrs"),
        }}),
    );
    m.insert(
        "Prefix".into(),
        json!({"type": "object", "required": ["prefix", "announced"], "properties": {
            "prefix": {"type": "string"}, "announced": {"type": "boolean"},
            "mode": {"type": "string"}, "attrs": r("RouteAttrs"),
        }}),
    );
    m.insert("Pop".into(), json!({"type": "object", "required": ["name", "local", "location", "state", "healthy", "serves_dns", "reason", "since", "checks", "admin", "prefixes"], "properties": {
            "name": {"type": "string"},
            "local": {"type": "boolean", "description": "This node announces the PoP's prefixes (node.pop)"},
            "location": {"type": ["object", "null"], "description": "pops[].location, for maps", "required": ["lat", "lon"], "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}},
            "state": {"type": "string", "enum": ["up", "down", "draining", "disabled"]},
            "healthy": {"type": ["boolean", "null"]},
            "serves_dns": {"type": "boolean"},
            "reason": {"type": "string"},
            "since": {"type": "number", "description": "Unix time of the last state change"},
            "checks": {"type": "object", "additionalProperties": r("CheckStatus")},
            "admin": r("AdminStatus"),
            "admin_unsaved": {"type": "string", "description": "Present only while the admin state in force for this PoP could not be saved to the state file: the error (saving is retried every 5 s)"},
            "prefixes": {"type": "array", "items": r("Prefix")},
        }}));
    m.insert("Pops".into(), json!({"type": "object", "required": ["version", "pops"], "properties": {
            "version": {"type": "integer"}, "pops": {"type": "object", "additionalProperties": r("Pop")},
        }}));
    m.insert("Peers".into(), json!({"type": "object", "required": ["peers"], "properties": {
            "peers": {"type": "object", "description": "By peer name: FSM state, uptime, prefixes advertised (from the BGP speaker; empty without BGP)."},
        }}));
    m.insert("State".into(), json!({"type": "object", "required": ["version", "published", "node", "pops", "announcements", "peers", "dns"], "properties": {
            "version": {"type": "integer"},
            "published": {"type": "number"},
            "node": {"type": "object", "required": ["name", "pop", "asn", "router_id"], "properties": {
                "name": {"type": "string"}, "pop": {"type": ["string", "null"]},
                "asn": {"type": "integer"}, "router_id": {"type": "string"},
            }},
            "pops": {"type": "object", "additionalProperties": r("Pop")},
            "announcements": {"type": "object", "additionalProperties": r("Announcement")},
            "peers": {"type": "object"},
            "dns": {"type": "object", "required": ["listen", "zones"], "properties": {
                "listen": {"type": "array", "items": {"type": "string"}},
                "zones": {"type": "array", "items": {"type": "object", "required": ["origin", "serial", "records"], "properties": {
                    "origin": {"type": "string"}, "serial": {"type": "integer"},
                    "records": {"type": "array", "items": {"type": "object", "required": ["name", "ttl", "type"], "properties": {
                        "name": {"type": "string"}, "ttl": {"type": "integer"}, "type": {"type": "string"},
                        "policy": {"type": "string"}, "pops": {"type": "array", "items": {"type": "string"}},
                    }}},
                }}},
            }},
        }}));
    m.insert("DrainRequest".into(), json!({"type": "object", "additionalProperties": false, "properties": {
            "reason": {"type": "string", "maxLength": 512},
            "duration": {"type": ["string", "integer"], "description": "Auto-undrain after this long, e.g. 30m, 1h30m, or whole seconds"},
            "mode": {"type": "string", "enum": ["graceful", "immediate"], "default": "graceful"},
            "force": {"type": "boolean", "default": false, "description": "Allow draining the last PoP serving traffic"},
            "who": {"type": "string", "maxLength": 512},
        }}));
    m.insert(
        "UndrainRequest".into(),
        json!({"type": "object", "additionalProperties": false, "properties": {
            "mode": {"type": "string", "enum": ["graceful", "immediate"], "default": "graceful"},
            "who": {"type": "string", "maxLength": 512},
        }}),
    );
    m.insert(
        "DisableRequest".into(),
        json!({"type": "object", "additionalProperties": false, "properties": {
            "reason": {"type": "string", "maxLength": 512},
            "force": {"type": "boolean", "default": false},
            "who": {"type": "string", "maxLength": 512},
        }}),
    );
    m.insert(
        "EnableRequest".into(),
        json!({"type": "object", "additionalProperties": false, "properties": {
            "who": {"type": "string", "maxLength": 512},
        }}),
    );
    m.insert("AdminResult".into(), json!({"type": "object", "required": ["version", "pop", "state", "serves_dns", "admin"], "properties": {
            "version": {"type": "integer"}, "pop": {"type": "string"}, "state": {"type": "string"},
            "serves_dns": {"type": "boolean"}, "admin": r("AdminStatus"),
        }}));
    m.insert(
        "ReloadResult".into(),
        json!({"type": "object", "required": ["version", "reloaded"], "properties": {
            "version": {"type": "integer"}, "reloaded": {"type": "boolean"},
        }}),
    );
    m.insert("Explanation".into(), json!({"type": "object", "required": ["name", "qtype", "rcode", "answers", "steering"], "properties": {
            "name": {"type": "string"}, "qtype": {"type": "string"}, "rcode": {"type": "string"},
            "answers": {"type": "array", "items": {"type": "string"}},
            "steering": {"type": ["object", "null"]},
        }}));
    m.insert("Health".into(), json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}));
    m.insert(
        "Ready".into(),
        json!({"type": "object", "required": ["ready", "waiting"], "properties": {
            "ready": {"type": "boolean"}, "waiting": {"type": "array", "items": {"type": "string"}},
        }}),
    );
    m.insert("Event".into(), json!({"type": "object", "required": ["seq", "at", "kind", "pop", "check", "message"], "properties": {
            "seq": {"type": "integer"}, "at": {"type": "number"}, "kind": {"type": "string"},
            "pop": {"type": ["string", "null"]}, "check": {"type": ["string", "null"]}, "message": {"type": "string"},
        }}));
    fleet_schemas(&mut m);
    Value::Object(m)
}

/// `Fleet` (`GET /v1/fleet`) and `FleetReport` (`GET /v1/fleet/report`).
fn fleet_schemas(m: &mut serde_json::Map<String, Value>) {
    let verdict = json!({"type": "string", "enum": ["up", "down", "unknown"]});
    let admin = json!({"type": ["object", "null"], "required": ["kind", "step", "reason", "who", "since"], "properties": {
        "kind": {"type": "string", "enum": ["drain", "disable"]},
        "step": {"type": "string", "description": "dns_removed, shutdown, drained, restoring or disabled"},
        "reason": {"type": "string"}, "who": {"type": "string"},
        "since": {"type": "number"}, "next_at": {"type": ["number", "null"]}, "until": {"type": ["number", "null"]},
    }});
    m.insert("FleetReport".into(), json!({"type": "object",
        "required": ["format", "node", "pop", "instance", "revision", "admin_revision", "generated_at", "pops", "applied"],
        "properties": {
            "format": {"type": "integer", "description": "1"},
            "node": {"type": "string"}, "pop": {"type": ["string", "null"]},
            "instance": {"type": "string", "description": "Random per process start"},
            "revision": {"type": "integer", "description": "Increases whenever the content changes"},
            "admin_revision": {"type": "integer", "description": "Increases with every admin change of the publisher's own PoPs"},
            "generated_at": {"type": "number"},
            "pops": {"type": "object", "additionalProperties": {"type": "object",
                "required": ["role", "verdict", "decided_at"], "properties": {
                    "role": {"type": "string", "enum": ["owner", "vantage"]},
                    "verdict": verdict,
                    "decided_at": {"type": "number"},
                    "reason": {"type": "string"},
                    "checks": {"type": "object", "additionalProperties": verdict},
                    "admin": admin,
                }}},
            "applied": {"type": "object", "description": "Per owning peer: the report of it this node's DNS answers from",
                "additionalProperties": {"type": "object", "required": ["instance", "admin_revision"], "properties": {
                    "instance": {"type": "string"}, "admin_revision": {"type": "integer"},
                }}},
        }}));
    let age = json!({"type": ["number", "null"], "description": "Seconds"});
    m.insert("Fleet".into(), json!({"type": "object", "required": ["enabled", "node", "pop", "peers", "pops"], "properties": {
        "enabled": {"type": "boolean"},
        "node": {"type": "string"}, "pop": {"type": ["string", "null"]},
        "settings": {"type": "object"},
        "instance": {"type": "string"}, "revision": {"type": "integer"},
        "peers": {"type": "object", "additionalProperties": {"type": "object",
            "required": ["pop", "url", "status", "age", "errors", "last_error", "pulls", "pull_errors"], "properties": {
                "pop": {"type": ["string", "null"]}, "url": {"type": "string"},
                "status": {"type": "string", "enum": ["fresh", "stale", "never"]},
                "age": age, "instance": {"type": ["string", "null"]}, "revision": {"type": ["integer", "null"]},
                "errors": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
                "pulls": {"type": "integer"}, "pull_errors": {"type": "integer"},
            }}},
        "pops": {"type": "object", "additionalProperties": {"type": "object",
            "required": ["owners", "owner", "admin", "vantage", "reachability", "reachable", "unreachable", "fail_static", "verdict", "serves_dns", "why"],
            "properties": {
                "owners": {"type": "array", "items": {"type": "string"}},
                "owner": {"type": "object", "required": ["verdict", "reported", "age", "fresh", "reason"], "properties": {
                    "verdict": verdict, "reported": {"type": ["string", "null"]}, "age": age,
                    "fresh": {"type": "boolean"}, "reason": {"type": "string"},
                }},
                "admin": {"type": ["object", "null"], "required": ["kind", "step", "reason", "who", "from"], "properties": {
                    "kind": {"type": "string", "enum": ["drain", "disable"]}, "step": {"type": "string"},
                    "reason": {"type": "string"}, "who": {"type": "string"},
                    "next_at": {"type": ["number", "null"]}, "until": {"type": ["number", "null"]},
                    "from": {"type": "string"}, "age": age,
                }},
                "vantage": {"type": "object", "additionalProperties": {"type": "object", "required": ["verdict", "age", "fresh"], "properties": {
                    "verdict": {"type": "string", "enum": ["up", "down", "unknown", "not_probed"]}, "age": age, "fresh": {"type": "boolean"},
                }}},
                "reachability": {"type": "string", "enum": ["reachable", "unreachable", "unknown"]},
                "reachable": {"type": "integer"}, "unreachable": {"type": "integer"},
                "fail_static": {"type": ["string", "null"]},
                "verdict": {"type": "string", "enum": ["up", "down", "draining", "disabled", "unknown"]},
                "serves_dns": {"type": "boolean"}, "why": {"type": "string"},
            }}},
    }}));
}
