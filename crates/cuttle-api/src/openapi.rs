//! The OpenAPI 3.1 document served at `/api/openapi.json`, assembled from the
//! route table ([`crate::route_table`]) and the resource types' derived
//! schemas. Nothing in it is written by hand but the document's header.

use crate::route_table::{Routes, API_KEY_SCHEME};
use crate::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use cuttle_service::instance::CUTTLE_VERSION;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, RefOr};

/// The path the document is served at.
pub const PATH: &str = "/api/openapi.json";

/// The document's text, made once when the router is built.
#[derive(Clone)]
pub struct Document(pub Arc<str>);

/// Adds the document's own route, then splits the table into the router
/// (which serves the document) and the document.
pub fn finish(routes: Routes) -> (Router<AppState>, OpenApi) {
    let routes = with_document(routes);
    let (router, paths, schemas) = routes.into_parts();
    let doc = document(paths, schemas);
    let text = doc.to_json().unwrap_or_default();
    (router.layer(Extension(Document(text.into()))), doc)
}

/// `routes` with this document's own route.
pub fn with_document(routes: Routes) -> Routes {
    routes.at(
        PATH,
        crate::route_table::get(
            serve,
            crate::route_table::op("This document: the OpenAPI description of the API").public(),
        ),
    )
}

fn document(
    paths: utoipa::openapi::Paths,
    mut schemas: BTreeMap<String, RefOr<Schema>>,
) -> OpenApi {
    schemas.insert("Error".into(), error_schema());
    let mut components = ComponentsBuilder::new().security_scheme(
        API_KEY_SCHEME,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-Octopus-ApiKey",
            "An API key (`API-…`), created under a user's API keys",
        ))),
    );
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Cuttle")
                .version(CUTTLE_VERSION)
                .description(Some(
                    "Cuttle's REST API, shaped like Octopus Deploy's. Space resources \
                     answer under `/api/{space}/…` and, for the default space, under \
                     `/api/…`. Literal path segments match in any letter case.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// `{"ErrorMessage": "...", "Errors": ["..."]}`, as every error answers.
fn error_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            "ErrorMessage",
            ObjectBuilder::new().schema_type(Type::String),
        )
        .property(
            "Errors",
            ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)),
        )
        .required("ErrorMessage")
        .into()
}

async fn serve(Extension(Document(text)): Extension<Document>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        text.to_string(),
    )
}
