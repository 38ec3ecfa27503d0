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
    doc
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
