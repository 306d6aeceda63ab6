//! The route table: every route is registered here together with its
//! description, so the router and the OpenAPI document at
//! `/api/openapi.json` are built from the same calls and cannot drift.
//!
//! Route modules write `r.space("/projects", get(list, op("Lists …").page::<Project>()))`:
//! [`get`], [`post`], [`put`] and [`delete`] take a handler *and* its
//! [`Op`]; there is no way to add a handler without describing it.
//!
//! Each `Op` also says who may call it ([`Access`]): `.public()`,
//! `.signed_in()` (the service decides the rest) or `.requires(permission)`.
//! The check runs before the handler, and registering an operation that
//! says none of these panics when the router is built, so no route can be
//! added without deciding who may call it.

use crate::AppState;
use axum::handler::Handler;
pub(crate) use axum::routing::MethodRouter;
use axum::Router;
use cuttle_model::Permission;
use std::collections::BTreeMap;
use utoipa::openapi::path::{HttpMethod, Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    ContentBuilder, Paths, Ref, RefOr, Required, ResponseBuilder, ResponsesBuilder,
};
use utoipa::{IntoParams, ToSchema};

/// Media types the API answers with besides JSON.
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const OCTET_STREAM: &str = "application/octet-stream";
pub const EVENT_STREAM: &str = "text/event-stream";
const JSON: &str = "application/json";

/// The name of the API key scheme in the document.
pub const API_KEY_SCHEME: &str = "ApiKey";

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Without an API key.
    Public,
    /// Any valid caller; what they may see or do is decided further in.
    SignedIn,
    /// A caller holding the permission in the route's space (its
    /// `{space}`, or the default space), or installation-wide for a system
    /// permission.
    Requires(Permission),
    /// As `Requires`, but on the route without `{space}` the permission may
    /// be held in any space: the answer spans every space the caller sees
    /// (tasks, events, teams).
    RequiresSomewhere(Permission),
}

/// What one operation takes and answers.
pub struct Op {
    summary: String,
    public: bool,
    access: Option<Access>,
    query: Vec<utoipa::openapi::path::Parameter>,
    body: Option<(&'static str, RefOr<Schema>)>,
    status: u16,
    answer: Option<(&'static str, RefOr<Schema>)>,
    schemas: Vec<(String, RefOr<Schema>)>,
}

/// An operation that answers 200 with a JSON object (shape it with the
/// builder methods).
pub fn op(summary: impl Into<String>) -> Op {
    Op {
        summary: summary.into(),
        public: false,
        access: None,
        query: Vec::new(),
        body: None,
        status: 200,
        answer: Some((JSON, ObjectBuilder::new().into())),
        schemas: Vec::new(),
    }
}

impl Op {
    /// Answered without an API key.
    pub fn public(mut self) -> Self {
        self.public = true;
        self.access = Some(Access::Public);
        self
    }

    /// Answered to any valid caller; the service decides what they see.
    pub fn signed_in(mut self) -> Self {
        self.access = Some(Access::SignedIn);
        self
    }

    /// Answered to callers holding `p` (see [`Access::Requires`]).
    pub fn requires(mut self, p: Permission) -> Self {
        self.access = Some(Access::Requires(p));
        self
    }

    /// Answered to callers holding `p` somewhere (see
    /// [`Access::RequiresSomewhere`]).
    pub fn requires_somewhere(mut self, p: Permission) -> Self {
        self.access = Some(Access::RequiresSomewhere(p));
        self
    }

    /// Who may call this operation.
    pub fn access(&self) -> Option<Access> {
        self.access
    }

    /// Answers one `T`, with its `Links`.
    pub fn resource<T: ToSchema>(mut self) -> Self {
        self.answer = Some((JSON, self.schema_ref::<T>()));
        self
    }

    /// Answers one `T`, or `null` where there is none.
    pub fn optional<T: ToSchema>(mut self) -> Self {
        let one = self.schema_ref::<T>();
        let null = ObjectBuilder::new().schema_type(Type::Null);
        let either = utoipa::openapi::schema::OneOfBuilder::new()
            .item(one)
            .item(null);
        self.answer = Some((JSON, either.into()));
        self
    }

    /// Answers 201 with the created `T`.
    pub fn created<T: ToSchema>(mut self) -> Self {
        self.status = 201;
        self.resource::<T>()
    }

    /// Answers a JSON array of `T`.
    pub fn array<T: ToSchema>(mut self) -> Self {
        let item = self.schema_ref::<T>();
        self.answer = Some((JSON, ArrayBuilder::new().items(item).into()));
        self
    }

    /// Answers Octopus's paged collection of `T`.
    pub fn page<T: ToSchema>(mut self) -> Self {
        let item = self.schema_ref::<T>();
        self.answer = Some((JSON, collection(item)));
        self
    }

    /// Answers 204 without a body.
    pub fn no_content(mut self) -> Self {
        self.status = 204;
        self.answer = None;
        self
    }

    /// Answers 200 without a body.
    pub fn empty(mut self) -> Self {
        self.answer = None;
        self
    }

    /// Takes a JSON object whose shape the resource it is for decides.
    pub fn body_object(mut self) -> Self {
        self.body = Some((JSON, ObjectBuilder::new().into()));
        self
    }

    /// Takes a JSON array of ids.
    pub fn body_ids(mut self) -> Self {
        let id = ObjectBuilder::new().schema_type(Type::String);
        self.body = Some((JSON, ArrayBuilder::new().items(id).into()));
        self
    }

    /// Answers 200 with a body of another media type.
    pub fn media(mut self, media_type: &'static str) -> Self {
        self.answer = Some((media_type, binary().into()));
        self
    }

    /// Takes a JSON body of `T`.
    pub fn body<T: ToSchema>(mut self) -> Self {
        self.body = Some((JSON, self.schema_ref::<T>()));
        self
    }

    /// Takes a multipart form whose one part is a file.
    pub fn upload(mut self) -> Self {
        let form = ObjectBuilder::new()
            .property("fileToUpload", binary())
            .required("fileToUpload");
        self.body = Some(("multipart/form-data", form.into()));
        self
    }

    /// Takes the query parameters `P` describes.
    pub fn query<P: IntoParams>(mut self) -> Self {
        self.query
            .extend(P::into_params(|| Some(ParameterIn::Query)));
        self
    }

    fn schema_ref<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let name = T::name().into_owned();
        self.schemas.push((name.clone(), T::schema()));
        T::schemas(&mut self.schemas);
        RefOr::Ref(Ref::from_schema_name(name))
    }
}

/// Bytes of any kind: a file, a log, a stream.
fn binary() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::Custom("binary".into())))
}

/// The envelope Octopus pages collections in.
fn collection(item: RefOr<Schema>) -> RefOr<Schema> {
    let int = || ObjectBuilder::new().schema_type(Type::Integer);
    ObjectBuilder::new()
        .property("ItemType", ObjectBuilder::new().schema_type(Type::String))
        .property("TotalResults", int())
        .property("ItemsPerPage", int())
        .property("NumberOfPages", int())
        .property("LastPageNumber", int())
        .property("Items", ArrayBuilder::new().items(item))
        .property("Links", ObjectBuilder::new())
        .required("Items")
        .required("TotalResults")
        .into()
}

/// The handlers of one path, one per method, each with its description.
pub struct Endpoint {
    router: MethodRouter<AppState>,
    ops: Vec<(HttpMethod, Op)>,
}

macro_rules! method {
    ($name:ident, $method:ident) => {
        pub fn $name<H, T>(handler: H, op: Op) -> Endpoint
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            Endpoint {
                router: crate::authorize::guard(axum::routing::$name(handler), &op),
                ops: vec![(HttpMethod::$method, op)],
            }
        }
    };
}

macro_rules! chained {
    ($name:ident, $method:ident) => {
        pub fn $name<H, T>(mut self, handler: H, op: Op) -> Self
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.router = self
                .router
                .merge(crate::authorize::guard(axum::routing::$name(handler), &op));
            self.ops.push((HttpMethod::$method, op));
            self
        }
    };
}

method!(get, Get);
method!(post, Post);
method!(put, Put);
method!(delete, Delete);
method!(patch, Patch);

impl Endpoint {
    /// Wraps the handlers so far in `layer` (a body limit, say).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<axum::extract::Request, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Response:
            axum::response::IntoResponse + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
    {
        self.router = self.router.layer(layer);
        self
    }

    /// Answers every method not given here with 405 and `message` in
    /// Octopus's error shape (a read-only collection, say).
    pub fn refuse_other_methods(mut self, message: &'static str) -> Self {
        self.router = self.router.fallback(move || async move {
            crate::error::ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, message)
        });
        self
    }

    chained!(get, Get);
    chained!(post, Post);
    chained!(put, Put);
    chained!(delete, Delete);
    chained!(patch, Patch);
}

/// The router and the description of every route in it.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    paths: BTreeMap<String, PathItem>,
    schemas: BTreeMap<String, RefOr<Schema>>,
    table: Vec<RouteEntry>,
}

/// One operation as registered: its method, path template and access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub method: &'static str,
    pub path: String,
    pub access: Access,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    /// A route at exactly `path`.
    pub fn at(mut self, path: &str, endpoint: Endpoint) -> Self {
        self.describe(path, &endpoint.ops);
        self.router = self.router.route(path, endpoint.router);
        self
    }

    /// A space resource, under both `/api/{space}{path}` and, for the
    /// default space, `/api{path}`.
    pub fn space(mut self, path: &str, endpoint: Endpoint) -> Self {
        let scoped = format!("/api/{{space}}{path}");
        let default = format!("/api{path}");
        self.describe(&scoped, &endpoint.ops);
        self.describe(&default, &endpoint.ops);
        self.router = self
            .router
            .route(&scoped, endpoint.router.clone())
            .route(&default, endpoint.router);
        self
    }

    /// Every operation registered, in order: what the authorization test
    /// walks.
    pub fn table(&self) -> &[RouteEntry] {
        &self.table
    }

    /// The router, and the document's paths and schemas.
    pub fn into_parts(self) -> (Router<AppState>, Paths, BTreeMap<String, RefOr<Schema>>) {
        let mut described = self.paths;
        link_created_resources(&mut described);
        let mut paths = Paths::new();
        for (path, item) in described {
            paths.paths.insert(path, item);
        }
        (self.router, paths, self.schemas)
    }

    fn describe(&mut self, path: &str, ops: &[(HttpMethod, Op)]) {
        for (method, op) in ops {
            let Some(access) = op.access else {
                panic!(
                    "{} {path} ({}) does not say who may call it: give its Op .public(), .signed_in() or .requires(..)",
                    method_name(method),
                    op.summary
                );
            };
            self.table.push(RouteEntry {
                method: method_name(method),
                path: path.to_owned(),
                access,
            });
            for (name, schema) in &op.schemas {
                self.schemas
                    .entry(name.clone())
                    .or_insert_with(|| schema.clone());
            }
            let operation = operation(path, method, op);
            let item = PathItem::new(method.clone(), operation);
            match self.paths.get_mut(path) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    self.paths.insert(path.to_owned(), item);
                }
            }
        }
    }
}

/// Links each create (a `POST` answering 201 on a collection) to the
/// operations on the created item (`{collection}/{id}`), with the id from
/// the answer's `Id`, so a client or a fuzzer can follow from one to the
/// other.
fn link_created_resources(paths: &mut BTreeMap<String, PathItem>) {
    use utoipa::openapi::link::LinkBuilder;
    let mut links = Vec::new();
    for (path, item) in paths.iter() {
        let creates = item
            .post
            .as_ref()
            .is_some_and(|op| op.responses.responses.contains_key("201"));
        let Some(target) = creates
            .then(|| paths.get(&format!("{path}/{{id}}")))
            .flatten()
        else {
            continue;
        };
        let item_path = format!("{path}/{{id}}");
        let targets = [
            ("Get", &target.get, HttpMethod::Get),
            ("Modify", &target.put, HttpMethod::Put),
            ("Delete", &target.delete, HttpMethod::Delete),
        ];
        for (name, op, method) in targets {
            if op.is_some() {
                let mut link = LinkBuilder::new()
                    .operation_id(operation_id(&item_path, &method))
                    .parameter("id", "$response.body#/Id");
                if path.contains("{space}") {
                    link = link.parameter("space", "$request.path.space");
                }
                links.push((path.clone(), name, link.build()));
            }
        }
    }
    for (path, name, link) in links {
        let created = paths
            .get_mut(&path)
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.responses.responses.get_mut("201"));
        if let Some(RefOr::T(response)) = created {
            response.links.insert(name.to_owned(), RefOr::T(link));
        }
    }
}

/// The described operation: path parameters come from the template itself.
fn operation(path: &str, method: &HttpMethod, op: &Op) -> Operation {
    let mut b = Operation::builder()
        .operation_id(Some(operation_id(path, method)))
        .summary(Some(op.summary.clone()))
        .tag(tag(path));
    for name in path_parameters(path) {
        let description = match name {
            "space" => "The space's id (for example `Spaces-1`).",
            "id" => "The resource's id.",
            _ => "",
        };
        b = b.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(description).filter(|d| !d.is_empty()))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    for p in &op.query {
        b = b.parameter(p.clone());
    }
    if let Some((media, schema)) = &op.body {
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    *media,
                    ContentBuilder::new().schema(Some(schema.clone())).build(),
                )
                .build(),
        ));
    }
    let mut answer = ResponseBuilder::new().description(op.summary.clone());
    if let Some((media, schema)) = &op.answer {
        answer = answer.content(
            *media,
            ContentBuilder::new().schema(Some(schema.clone())).build(),
        );
    }
    let error = ResponseBuilder::new()
        .description("An error, in Octopus's shape")
        .content(
            JSON,
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("Error"))))
                .build(),
        );
    b = b.responses(
        ResponsesBuilder::new()
            .response(op.status.to_string(), answer)
            .response("default", error)
            .build(),
    );
    if !op.public {
        b = b.security(SecurityRequirement::new::<_, [&str; 0], &str>(
            API_KEY_SCHEME,
            [],
        ));
    }
    b.build()
}

/// The `{name}` segments of a route template.
pub fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Patch => "PATCH",
        _ => "OTHER",
    }
}

/// A stable id: the method and the template's segments, without braces.
fn operation_id(path: &str, method: &HttpMethod) -> String {
    let method = match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Put => "put",
        HttpMethod::Delete => "delete",
        HttpMethod::Patch => "patch",
        _ => "other",
    };
    let rest: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_matches(|c| c == '{' || c == '}')
                .replace(['-', '.'], "_")
        })
        .collect();
    format!("{method}_{}", rest.join("_"))
}

/// The area a path belongs to: its first literal segment after `/api` and
/// the space.
fn tag(path: &str) -> String {
    path.split('/')
        .find(|s| !s.is_empty() && *s != "api" && !s.starts_with('{'))
        .unwrap_or("api")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_name_the_method_and_template() {
        assert_eq!(
            operation_id("/api/{space}/projects/{id}", &HttpMethod::Get),
            "get_api_space_projects_id"
        );
        assert_eq!(
            operation_id("/api/build-information", &HttpMethod::Post),
            "post_api_build_information"
        );
    }

    #[test]
    fn tags_are_the_first_literal_after_the_space() {
        assert_eq!(tag("/api/{space}/projects/{id}"), "projects");
        assert_eq!(tag("/api"), "api");
        assert_eq!(tag("/api/users/me"), "users");
    }

    #[test]
    fn path_parameters_come_from_the_template() {
        let names: Vec<&str> =
            path_parameters("/api/{space}/projects/{id}/releases/{version}").collect();
        assert_eq!(names, ["space", "id", "version"]);
    }
}
