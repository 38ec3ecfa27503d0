//! The OpenAPI 3.1 document served at `/v1/openapi.json`, generated from
//! the routes and the DTOs: every handler carries its `#[utoipa::path]`
//! description and is routed through [`routes`], which registers it with
//! axum and with the document at once, so a route cannot be served without
//! being documented (or documented without being served). Request and
//! response schemas come from [`super::dto`]'s `ToSchema` derives.
//!
//! This module owns the document's frame (title, version, security
//! scheme) and the grouping of routes by the authorization they need; the
//! middleware itself is applied by [`super::router`].

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{dto, fleet, handlers, sse, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "anypop API",
        description = "Operate an anypop PoP routing controller: read state, drain and disable PoPs, stream events, reload config."
    ),
    modifiers(&Bearer),
    components(schemas(
        dto::ErrorBody,
        dto::AdminResult,
        dto::Event,
        dto::DrainRequest,
        dto::UndrainRequest,
        dto::DisableRequest,
        dto::EnableRequest,
    ))
)]
struct Frame;

/// The `bearer` security scheme the operations name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The token from the file named by api.token_file."))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The routes, grouped by what they need: reads (the token with
/// `api.protect_reads`), writes (the token whenever one is configured)
/// and open ones (health, readiness, this document).
pub(super) struct Routes {
    pub reads: OpenApiRouter<AppState>,
    pub writes: OpenApiRouter<AppState>,
    pub open: OpenApiRouter<AppState>,
}

/// Every route with its description.
pub(super) fn routes() -> Routes {
    let reads = OpenApiRouter::new()
        .routes(routes!(handlers::state))
        .routes(routes!(handlers::pops))
        .routes(routes!(handlers::pop))
        .routes(routes!(handlers::peers))
        .routes(routes!(handlers::checks))
        .routes(routes!(handlers::explain))
        .routes(routes!(sse::events))
        .routes(routes!(fleet::view))
        .routes(routes!(fleet::report))
        .routes(routes!(handlers::metrics));
    let writes = OpenApiRouter::new()
        .routes(routes!(handlers::drain))
        .routes(routes!(handlers::undrain))
        .routes(routes!(handlers::disable))
        .routes(routes!(handlers::enable))
        .routes(routes!(handlers::reload));
    let open = OpenApiRouter::new()
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::readyz))
        .routes(routes!(handlers::openapi));
    Routes {
        reads,
        writes,
        open,
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let Routes {
        reads,
        writes,
        open,
    } = routes();
    let mut doc = OpenApiRouter::with_openapi(Frame::openapi())
        .merge(reads)
        .merge(writes)
        .merge(open)
        .into_openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    add_guard_responses(&mut doc);
    doc
}

/// The answers of [`super::guard`], which every operation can give (403)
/// and every POST (408, 413, 415), added to each operation.
fn add_guard_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let error = |text: &str| {
        ResponseBuilder::new()
            .description(text)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let post = item.post.iter_mut().map(|op| (op, true));
        for (op, is_post) in item.get.iter_mut().map(|op| (op, false)).chain(post) {
            let r = &mut op.responses.responses;
            r.entry("403".into()).or_insert_with(|| {
                error("`Host` does not name this API (see api.allowed_hosts), or a browser request from another origin.").into()
            });
            if is_post {
                r.entry("408".into()).or_insert_with(|| {
                    error("The body did not arrive within api.header_read_timeout.").into()
                });
                r.entry("413".into())
                    .or_insert_with(|| error("The body is larger than 64 KiB.").into());
                r.entry("415".into()).or_insert_with(|| {
                    error("The request has a body (or a `Content-Type`) that is not `Content-Type: application/json`; a POST with no body and no `Content-Type` takes the defaults.").into()
                });
            }
        }
    }
}

/// The document as JSON text, built once.
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        document()
            .to_json()
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
    })
    .clone()
}
