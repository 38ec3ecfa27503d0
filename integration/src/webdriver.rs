//! A W3C WebDriver client for browser tests: starts Debian's `chromedriver`
//! on a free loopback port, opens a headless `chromium` session with a
//! fresh profile, and drives it over [`crate::http_client`]. chromedriver runs in
//! its own process group, and on drop the session is closed and that group
//! (chromedriver and the chromium it started) is killed, so nothing
//! outlives a test, also on failure. Chromium is started with the flags
//! that keep it off the network (no background services, updates, sync).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{free_port, http_client, wait_for, wait_until};

/// Where Debian installs them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a browser-side condition may take.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
    log: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless chromium session with a
    /// `width`×`height` window.
    pub fn start(width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().expect("tempdir");
        let log = profile.path().join("chromedriver.log");
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let ready = wait_until(WAIT, || {
            http_client::request(&addr, "GET", "/status", &[], b"")
                .is_ok_and(|r| r.json()["value"]["ready"] == true)
        });
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
            log,
        };
        assert!(ready, "chromedriver never became ready: {}", b.driver_log());
        let data_dir = b._profile.path().join("chromium");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-default-apps", "--disable-extensions",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", data_dir.display()),
                ],
            },
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}\n{}", b.driver_log()))
            .to_string();
        b
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A WebDriver command; the `value` of its answer. Panics on errors.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("Content-Type", "application/json")];
        let r = http_client::request(&self.addr, method, path, &headers, body.as_bytes())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let v = r.json();
        assert_eq!(r.status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn session_call(&self, method: &str, rel: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{rel}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `js` (a function body; `arguments` holds `args`) in the page.
    pub fn script(&self, js: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": js, "args": args })),
        )
    }

    /// The WebDriver element id of the first match of `css`.
    fn element(&self, css: &str) -> String {
        let v = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Clicks the first match of `css` (as a user would: it must be shown).
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the first match of `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The text of the first match of `css` (`None` if nothing matches).
    pub fn text(&self, css: &str) -> Option<String> {
        let v = self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([css]),
        );
        v.as_str().map(str::to_string)
    }

    /// Waits until `js` (a function body) returns something other than
    /// null/false; returns it. Panics with `what` and the page after `WAIT`.
    pub fn wait_js(&self, what: &str, js: &str, args: Value) -> Value {
        let found = wait_for(WAIT, || {
            let v = self.script(js, args.clone());
            (!v.is_null() && v != Value::Bool(false)).then_some(v)
        });
        found.unwrap_or_else(|| {
            let page = self.script("return document.body.innerText;", json!([]));
            panic!(
                "timed out waiting for {what}; page text:\n{}",
                page.as_str().unwrap_or("")
            )
        })
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.session_call("GET", "/screenshot", None);
        let png =
            decode_base64(v.as_str().expect("screenshot is base64")).expect("screenshot decodes");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir for screenshot");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// The browser console since the last call (level, message).
    pub fn console(&self) -> Vec<(String, String)> {
        let v = self.session_call("POST", "/se/log", Some(json!({"type": "browser"})));
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = http_client::request(&self.addr, "DELETE", &path, &[], b"");
        }
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
        if std::thread::panicking() {
            eprintln!("---- chromedriver log (tail) ----");
            let log = self.driver_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Standard base64 (with padding or without) to bytes.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        assert_eq!(
            decode_base64("iVBO\nRw0K").as_deref(),
            Some(&b"\x89PNG\r\n"[..])
        );
        assert!(decode_base64("a$b").is_none());
    }
}
