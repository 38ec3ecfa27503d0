//! The web view in a real browser: Debian's headless chromium, driven
//! through chromedriver (WebDriver), against a running anypop peering with
//! a second anypop over BGP. The PoP and peer rows appear; a maintenance
//! file takes a PoP down and its row changes without a page load; a drain
//! through the button asks for the token and shows each choreography step
//! as it happens; explain and the map follow the state; with
//! `protect_reads` nothing shows until the token is given; the console
//! stays free of errors (a Content-Security-Policy violation would be one).
//! A screenshot is saved as `target/web-ui/anypop-web-view.png`.

use anypop_integration::demo::{Demo, Options};
use anypop_integration::lab::repo_root;
use anypop_integration::tools_available;
use anypop_integration::webdriver::{Browser, CHROMEDRIVER, CHROMIUM};
use serde_json::{json, Value};

const TOKEN: &str = "web-ui-token-3b9e";
const HINT: &str = "apt-get install chromium chromium-driver";

fn browser_available(test: &str) -> bool {
    tools_available(test, &[CHROMIUM, CHROMEDRIVER], HINT)
}

/// A settled demo node and a browser showing its web view.
fn open_view(opts: Options, width: u32, height: u32) -> (Demo, Browser) {
    let demo = Demo::start(opts);
    demo.wait_settled();
    let b = Browser::start(width, height);
    b.goto(&format!("http://{}/ui/", demo.api));
    (demo, b)
}

/// Waits until the PoP row of `pop` shows `state`.
fn wait_pop_state(b: &Browser, pop: &str, state: &str) {
    b.wait_js(
        &format!("pop {pop} shown {state}"),
        "const r = document.querySelector(`#pops tr[data-pop=\"${arguments[0]}\"]`);
         return r && r.dataset.state === arguments[1] && r.querySelector('td.state').textContent === arguments[1];",
        json!([pop, state]),
    );
}

/// Console messages at error level, minus the 401s the page provokes on
/// purpose before it has the token.
fn console_errors(b: &Browser) -> Vec<String> {
    b.console()
        .into_iter()
        .filter(|(level, msg)| level == "SEVERE" && !msg.contains("401"))
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn web_view_follows_state_and_drains_through_the_button() {
    let test = "web_view_follows_state_and_drains_through_the_button";
    if !browser_available(test) {
        return;
    }
    let (demo, b) = open_view(
        Options {
            token: Some(TOKEN.into()),
            ..Options::default()
        },
        1440,
        1500,
    );

    // Rows for every PoP and the BGP peer, from /v1/state.
    b.wait_js(
        "three PoP rows",
        "return document.querySelectorAll('#pops tbody tr[data-pop]').length === 3;",
        json!([]),
    );
    for pop in ["ams", "fra", "lon"] {
        wait_pop_state(&b, pop, "up");
    }
    b.wait_js(
        "peer r1 established",
        "const r = document.querySelector('#peers tr[data-peer=\"r1\"]');
         return r && r.dataset.state === 'established';",
        json!([]),
    );
    b.wait_js(
        "event stream live",
        "return document.querySelector('#conn').dataset.live === 'true';",
        json!([]),
    );
    let announced = b.script(
        "return [...document.querySelectorAll('#announcements tr[data-prefix]')].map(r => r.dataset.prefix);",
        json!([]),
    );
    assert_eq!(announced, json!(["203.0.113.0/24", "2001:db8:100::/48"]));
    let checks = b.script(
        "return document.querySelectorAll('#checks tr[data-check]').length;",
        json!([]),
    );
    assert_eq!(checks, json!(3));

    // A maintenance file takes lon down: the row changes in place (the
    // marker set on this page survives, so the page was not loaded again).
    b.script("window.anypopTestMarker = 42;", json!([]));
    demo.set_maintenance("lon", true);
    wait_pop_state(&b, "lon", "down");
    assert_eq!(
        b.script("return window.anypopTestMarker;", json!([])),
        json!(42)
    );
    b.wait_js(
        "lon red on the map",
        "const c = document.querySelector('#map circle[data-pop=\"lon\"]');
         return c && c.getAttribute('class') === 'state-down';",
        json!([]),
    );
    b.wait_js(
        "the check event in the log",
        "return [...document.querySelectorAll('#events li')].some(li => li.textContent.includes('check lon/maintenance down'));",
        json!([]),
    );

    // Drain fra with the button: the API wants the token, the dialog asks
    // for it, then the steps appear one by one.
    b.click("#pops button[data-action=\"drain\"][data-pop=\"fra\"]");
    b.type_into("#action-reason", "fibre cut");
    b.click("#action-submit");
    b.wait_js(
        "the dialog asking for the token",
        "return !document.querySelector('#action-token-row').hidden;",
        json!([]),
    );
    let err = b.text("#action-error").unwrap_or_default();
    assert!(err.contains("token"), "{err}");
    b.type_into("#action-token", TOKEN);
    b.click("#action-submit");
    b.wait_js(
        "the dialog closed",
        "return !document.querySelector('#action-dialog').open;",
        json!([]),
    );
    let steps = b.wait_js(
        "the drain steps",
        "const op = document.querySelector('#ops li.op[data-pop=\"fra\"][data-action=\"drain\"]');
         if (!op) return null;
         const s = [...op.querySelectorAll('li.step')].map(li => li.textContent);
         return s.some(t => t.includes('shutdown -> drained')) ? s : null;",
        json!([]),
    );
    let steps: Vec<String> = serde_json::from_value(steps).expect("strings");
    let at = |needle: &str| {
        steps
            .iter()
            .position(|s| s.contains(needle))
            .unwrap_or_else(|| panic!("no step {needle:?} in {steps:#?}"))
    };
    assert!(
        at("dns_removed by web view: fibre cut") < at("dns_removed -> shutdown")
            && at("dns_removed -> shutdown") < at("shutdown -> drained"),
        "{steps:#?}"
    );
    wait_pop_state(&b, "fra", "draining");
    b.wait_js(
        "the drain shown at its last step",
        "const n = document.querySelector('#ops li.op[data-pop=\"fra\"] .now');
         return n && n.textContent === ' · now: draining, step drained';",
        json!([]),
    );
    let admin = b
        .text("#pops tr[data-pop=\"fra\"] td.admin")
        .unwrap_or_default();
    assert!(admin.contains("drained by web view"), "{admin}");
    let state = demo.get("/v1/pops/fra");
    assert_eq!(state["admin"]["reason"], "fibre cut");
    assert_eq!(state["admin"]["who"], "web view");

    // Explain: for this client every steered record goes to ams, the only
    // PoP left in service.
    b.type_into("#explain-client", "198.51.100.7");
    b.click("#explain-form button[type=\"submit\"]");
    let rows = b.wait_js(
        "explain rows",
        "const rows = [...document.querySelectorAll('#explain tr[data-record]')];
         return rows.length === 2 ? rows.map(r => [r.dataset.record, r.children[2].textContent]) : null;",
        json!([]),
    );
    assert_eq!(
        rows,
        json!([["www.example.test.", "ams"], ["api.example.test.", "ams"]])
    );

    let shot = repo_root().join("target/web-ui/anypop-web-view.png");
    b.screenshot(&shot);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n"), "not a PNG");
    eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());

    let errors = console_errors(&b);
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}

#[test]
fn web_view_with_protected_reads_asks_for_the_token_first() {
    let test = "web_view_with_protected_reads_asks_for_the_token_first";
    if !browser_available(test) {
        return;
    }
    let (demo, b) = open_view(
        Options {
            token: Some(TOKEN.into()),
            protect_reads: true,
            ..Options::default()
        },
        1200,
        900,
    );
    b.wait_js(
        "the token prompt",
        "return !document.querySelector('#token-panel').hidden;",
        json!([]),
    );
    let rows = b.script(
        "return document.querySelectorAll('#pops tr[data-pop]').length;",
        json!([]),
    );
    assert_eq!(rows, json!(0), "nothing shown without the token");

    b.type_into("#token-input", "wrong-token");
    b.click("#token-form button[type=\"submit\"]");
    b.wait_js(
        "the prompt back after a wrong token",
        "return !document.querySelector('#token-panel').hidden;",
        json!([]),
    );
    b.type_into("#token-input", TOKEN);
    b.click("#token-form button[type=\"submit\"]");
    for pop in ["ams", "fra", "lon"] {
        wait_pop_state(&b, pop, "up");
    }
    b.wait_js(
        "event stream live with the token",
        "return document.querySelector('#conn').dataset.live === 'true';",
        json!([]),
    );
    // Only in memory: a reload forgets it.
    let stored = b.script(
        "return [localStorage.length, sessionStorage.length, document.cookie];",
        json!([]),
    );
    assert_eq!(stored, json!([0, 0, ""]));
    b.goto(&format!("http://{}/ui/", demo.api));
    b.wait_js(
        "the token prompt after a reload",
        "return !document.querySelector('#token-panel').hidden;",
        json!([]),
    );
    let errors = console_errors(&b);
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
    let _: Value = demo.get("/v1/state");
}
