//! The live web view at `/ui/`: a page, its script and style sheet, an
//! icon and a world outline, embedded in the binary and served with a strict
//! Content-Security-Policy (no inline script or style, nothing loaded from
//! another origin).
//!
//! It owns no data and no endpoint of its own: the page reads `/v1/state`,
//! follows `/v1/events` and posts admin actions through the API like any
//! other client, so the API's auth applies unchanged (with
//! `api.protect_reads` the page asks for the token before it shows
//! anything; the token lives in the page's memory only). The files carry
//! no state, so they are served without a token, like
//! `/v1/openapi.json`. Must not grow server-side rendering or
//! UI-specific endpoints.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;

/// Sent with every file of the web view.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// (file name, content type, content)
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("ui/style.css"),
    ),
    ("world.svg", "image/svg+xml", include_bytes!("ui/world.svg")),
    ("icon.svg", "image/svg+xml", include_bytes!("ui/icon.svg")),
];

/// `/ui` (redirects to `/ui/`), `/ui/` and `/ui/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { file("index.html") }))
        .route(
            "/ui/{file}",
            get(|Path(f): Path<String>| async move { file(&f) }),
        )
}

fn file(name: &str) -> Response {
    let Some((_, ctype, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found(format!("no file {name:?} in the web view")).into_response();
    };
    let mut resp = (StatusCode::OK, *body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> String {
        let (_, _, body) = FILES
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} embedded"));
        String::from_utf8(body.to_vec()).expect("utf8")
    }

    #[test]
    fn page_needs_no_inline_script_or_style_and_nothing_external() {
        let html = text("index.html");
        assert!(html.contains(r#"<script type="module" src="app.js"></script>"#));
        assert_eq!(html.matches("<script").count(), 1, "one script, by URL");
        assert!(!html.contains("<style"), "no inline style element");
        assert!(!html.contains("style="), "no inline style attribute");
        for handler in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " onerror=",
            "javascript:",
        ] {
            assert!(!html.contains(handler), "inline handler {handler}");
        }
        for f in ["index.html", "app.js", "style.css"] {
            // The SVG namespace is a name, not something loaded.
            let t = text(f).replace("http://www.w3.org/2000/svg", "");
            for external in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!t.contains(external), "{f} references {external}");
            }
        }
        let js = text("app.js");
        for unsafe_sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "eval(",
            "new Function",
        ] {
            assert!(!js.contains(unsafe_sink), "app.js uses {unsafe_sink}");
        }
        for storage in [
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "indexedDB",
        ] {
            assert!(
                !js.contains(storage),
                "the token must stay in memory: {storage}"
            );
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[test]
    fn world_outline_is_one_small_path() {
        let svg = text("world.svg");
        assert!(svg.len() < 64 * 1024, "{} bytes", svg.len());
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(svg.contains(r#"id="land""#) && svg.contains("Natural Earth"));
    }
}
