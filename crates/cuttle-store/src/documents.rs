//! Resources kept as JSON documents. Each document type says which collection
//! it belongs to and which of its fields are queried or must be unique; the
//! rest of its shape is free to grow without migrations.

use crate::statement::Statement;
use crate::{is_unique_violation, Result, Store, StoreError, Tx};
use cuttle_model::ids::sequence_of;
use cuttle_model::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyArguments;
use sqlx::query::QueryAs;
use sqlx::{Any, AnyConnection};

pub trait Document: Serialize + DeserializeOwned + Send + Sync + Unpin {
    const COLLECTION: &'static str;
    /// What a person calls one of these, for error messages.
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn space_id(&self) -> Option<&str>;
    fn name(&self) -> &str;
    /// The resource that owns this one (a project owns its releases).
    fn parent_id(&self) -> Option<&str> {
        None
    }
    fn environment_id(&self) -> Option<&str> {
        None
    }
    /// Names are unique within this scope, case-insensitively; `None` means
    /// names need not be unique.
    fn unique_scope(&self) -> Option<String> {
        self.space_id().map(str::to_owned)
    }
    fn sort_key(&self) -> i64 {
        sequence_of(self.id())
    }
    /// This document as a deployment, which the store also keeps in the
    /// deployment index ([`crate::deployments`]); `None` for every other.
    fn as_deployment(&self) -> Option<&Deployment> {
        None
    }
}

/// A named resource of a space, unique by name there; listed in creation
/// order, or by the field given last (a user-chosen sort order).
macro_rules! space_document {
    ($t:ty, $collection:literal, $kind:literal $(, $sort:ident)?) => {
        impl Document for $t {
            const COLLECTION: &'static str = $collection;
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn space_id(&self) -> Option<&str> {
                Some(&self.space_id)
            }
            fn name(&self) -> &str {
                &self.name
            }
            $(
                fn sort_key(&self) -> i64 {
                    self.$sort
                }
            )?
        }
    };
}

space_document!(ProjectGroup, "ProjectGroups", "project group");
space_document!(Lifecycle, "Lifecycles", "lifecycle");
space_document!(Project, "Projects", "project");

impl Document for Space {
    const COLLECTION: &'static str = "Spaces";
    const KIND: &'static str = "space";
    fn id(&self) -> &str {
        &self.id
    }
    fn space_id(&self) -> Option<&str> {
        None
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn unique_scope(&self) -> Option<String> {
        Some(String::new())
    }
}

space_document!(Environment, "Environments", "environment", sort_order);

impl Document for Channel {
    const COLLECTION: &'static str = "Channels";
    const KIND: &'static str = "channel";
    fn id(&self) -> &str {
        &self.id
    }
    fn space_id(&self) -> Option<&str> {
        Some(&self.space_id)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn parent_id(&self) -> Option<&str> {
        Some(&self.project_id)
    }
    fn unique_scope(&self) -> Option<String> {
        Some(self.project_id.clone())
    }
}

/// A document that belongs to another (its parent), is named by its id and is
/// listed only under that parent.
macro_rules! owned_document {
    ($t:ty, $collection:literal, $kind:literal, $parent:ident) => {
        impl Document for $t {
            const COLLECTION: &'static str = $collection;
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn space_id(&self) -> Option<&str> {
                Some(&self.space_id)
            }
            fn name(&self) -> &str {
                &self.id
            }
            fn parent_id(&self) -> Option<&str> {
                Some(&self.$parent)
            }
            fn unique_scope(&self) -> Option<String> {
                None
            }
            fn sort_key(&self) -> i64 {
                0
            }
        }
    };
}

owned_document!(
    DeploymentProcess,
    "DeploymentProcesses",
    "deployment process",
    project_id
);

/// The frozen copy of a deployment process that a release keeps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct ProcessSnapshot(pub DeploymentProcess);

impl Document for ProcessSnapshot {
    const COLLECTION: &'static str = "ProcessSnapshots";
    const KIND: &'static str = "deployment process snapshot";
    fn id(&self) -> &str {
        &self.0.id
    }
    fn space_id(&self) -> Option<&str> {
        Some(&self.0.space_id)
    }
    fn name(&self) -> &str {
        &self.0.id
    }
    fn parent_id(&self) -> Option<&str> {
        Some(&self.0.project_id)
    }
    fn unique_scope(&self) -> Option<String> {
        None
    }
    fn sort_key(&self) -> i64 {
        0
    }
}

impl Document for Release {
    const COLLECTION: &'static str = "Releases";
    const KIND: &'static str = "release";
    fn id(&self) -> &str {
        &self.id
    }
    fn space_id(&self) -> Option<&str> {
        Some(&self.space_id)
    }
    fn name(&self) -> &str {
        &self.version
    }
    fn parent_id(&self) -> Option<&str> {
        Some(&self.project_id)
    }
    fn unique_scope(&self) -> Option<String> {
        Some(self.project_id.clone())
    }
}

impl Document for Deployment {
    const COLLECTION: &'static str = "Deployments";
    const KIND: &'static str = "deployment";
    fn id(&self) -> &str {
        &self.id
    }
    fn space_id(&self) -> Option<&str> {
        Some(&self.space_id)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn parent_id(&self) -> Option<&str> {
        Some(&self.project_id)
    }
    fn environment_id(&self) -> Option<&str> {
        Some(&self.environment_id)
    }
    fn unique_scope(&self) -> Option<String> {
        None
    }
    fn as_deployment(&self) -> Option<&Deployment> {
        Some(self)
    }
}

space_document!(
    LibraryVariableSet,
    "LibraryVariableSets",
    "library variable set"
);

owned_document!(VariableSet, "VariableSets", "variable set", owner_id);

/// Kept under its task (`parent_id`), so a task's interruptions list cheaply.
impl Document for Interruption {
    const COLLECTION: &'static str = "Interruptions";
    const KIND: &'static str = "interruption";
    fn id(&self) -> &str {
        &self.id
    }
    fn space_id(&self) -> Option<&str> {
        Some(&self.space_id)
    }
    fn name(&self) -> &str {
        &self.title
    }
    fn parent_id(&self) -> Option<&str> {
        Some(&self.task_id)
    }
    fn unique_scope(&self) -> Option<String> {
        None
    }
}

// Machines and workers belong to several environments or pools, more than
// the one `environment_id` column holds; they are listed by space and
// filtered in memory (see `crate::machines`).
space_document!(Machine, "Machines", "deployment target");
space_document!(Worker, "Workers", "worker");
space_document!(MachinePolicy, "MachinePolicies", "machine policy");
space_document!(
    cuttle_model::build_info::BuildInformation,
    "BuildInformation",
    "build information"
);

space_document!(WorkerPool, "WorkerPools", "worker pool", sort_order);
space_document!(cuttle_model::Subscription, "Subscriptions", "subscription");

/// Team names are unique within the team's space, or among the
/// installation-wide teams.
impl Document for Team {
    const COLLECTION: &'static str = "Teams";
    const KIND: &'static str = "team";
    fn id(&self) -> &str {
        &self.id
    }
    fn space_id(&self) -> Option<&str> {
        self.space_id.as_deref()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn unique_scope(&self) -> Option<String> {
        Some(self.space_id.clone().unwrap_or_default())
    }
}

/// Roles are installation-wide, unique by name.
impl Document for UserRole {
    const COLLECTION: &'static str = "UserRoles";
    const KIND: &'static str = "user role";
    fn id(&self) -> &str {
        &self.id
    }
    fn space_id(&self) -> Option<&str> {
        None
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn unique_scope(&self) -> Option<String> {
        Some(String::new())
    }
}

/// Kept under its team, so a team's roles list cheaply.
impl Document for ScopedUserRole {
    const COLLECTION: &'static str = "ScopedUserRoles";
    const KIND: &'static str = "scoped user role";
    fn id(&self) -> &str {
        &self.id
    }
    fn space_id(&self) -> Option<&str> {
        self.space_id.as_deref()
    }
    fn name(&self) -> &str {
        &self.id
    }
    fn parent_id(&self) -> Option<&str> {
        Some(&self.team_id)
    }
    fn unique_scope(&self) -> Option<String> {
        None
    }
}

/// Which documents a list wants.
#[derive(Clone, Debug, Default)]
pub struct DocumentQuery {
    pub space_id: Option<String>,
    pub parent_ids: Vec<String>,
    pub environment_ids: Vec<String>,
    pub ids: Vec<String>,
    /// Exact name, case-insensitive.
    pub name: Option<String>,
    /// Part of the name, case-insensitive.
    pub partial_name: Option<String>,
    pub skip: i64,
    /// `None` means all.
    pub take: Option<i64>,
    /// Newest first (releases, deployments).
    pub descending: bool,
}

impl DocumentQuery {
    /// Every document of a kind in one space.
    pub fn in_space(space_id: &str) -> Self {
        DocumentQuery {
            space_id: Some(space_id.to_owned()),
            ..Default::default()
        }
    }
}

/// The total of a list whose page came back short (and did not start past
/// the end): that page holds the last of them, so nothing need count them.
pub(crate) fn known_total(skip: i64, take: Option<i64>, returned: usize) -> Option<i64> {
    let (skip, take, len) = (
        skip.max(0),
        take.unwrap_or(i64::MAX).max(0),
        returned as i64,
    );
    (len < take && (len > 0 || skip == 0)).then_some(skip + len)
}

#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Builds the WHERE clause and its arguments for a query, numbering the
/// placeholders so both databases accept them.
struct Filter {
    sql: String,
    args: Vec<String>,
}

impl Filter {
    fn new(collection: &str) -> Self {
        Filter {
            sql: "collection = $1".into(),
            args: vec![collection.to_owned()],
        }
    }

    fn push(&mut self, clause_with_placeholder: impl FnOnce(usize) -> String, value: String) {
        self.args.push(value);
        let clause = clause_with_placeholder(self.args.len());
        self.sql.push_str(" AND ");
        self.sql.push_str(&clause);
    }

    fn push_in(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let start = self.args.len() + 1;
        let placeholders: Vec<String> = (0..values.len())
            .map(|i| format!("${}", start + i))
            .collect();
        self.args.extend(values.iter().cloned());
        self.sql
            .push_str(&format!(" AND {column} IN ({})", placeholders.join(", ")));
    }

    fn bind_all<'q, O>(
        &'q self,
        mut q: QueryAs<'q, Any, O, AnyArguments<'q>>,
    ) -> QueryAs<'q, Any, O, AnyArguments<'q>> {
        for a in &self.args {
            q = q.bind(a.as_str());
        }
        q
    }
}

fn decode<D: Document>(body: &str) -> Result<D> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Corrupt(format!("{} document: {e}", D::KIND)))
}

fn duplicate_message<D: Document>(doc: &D) -> String {
    match D::COLLECTION {
        "Releases" => format!(
            "A release with version '{}' already exists for this project",
            doc.name()
        ),
        _ => format!(
            "A {} named '{}' already exists; names must be unique",
            D::KIND,
            doc.name()
        ),
    }
}

/// The values of a document's row, in the order of [`DOCUMENT_COLUMNS`].
fn document_row<D: Document>(doc: &D, st: &mut Statement) -> Result<String> {
    let body = serde_json::to_string(doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let name_lower = doc.name().to_lowercase();
    let unique_key = doc.unique_scope().map(|s| format!("{s}/{name_lower}"));
    let optional = |st: &mut Statement, v: Option<&str>| match v {
        Some(v) => st.arg(v),
        None => "NULL".to_owned(),
    };
    let values = [
        st.arg(doc.id()),
        st.arg(D::COLLECTION),
        optional(st, doc.space_id()),
        optional(st, doc.parent_id()),
        optional(st, doc.environment_id()),
        st.arg(doc.name()),
        st.arg(name_lower.as_str()),
        optional(st, unique_key.as_deref()),
        st.arg(doc.sort_key()),
        st.arg(body),
        st.arg(Timestamp::now().to_string()),
    ];
    Ok(format!("({})", values.join(", ")))
}

const DOCUMENT_COLUMNS: &str =
    "id, collection, space_id, parent_id, environment_id, name, name_lower, unique_key, sort_key, body, updated_at";

/// Inserts documents in one multi-row statement (bulk imports; the caller
/// keeps any index of them, see [`crate::deployments`]).
pub(crate) async fn insert_many<D: Document>(conn: &mut AnyConnection, docs: &[&D]) -> Result<()> {
    if docs.is_empty() {
        return Ok(());
    }
    let mut st = Statement::default();
    let rows = docs
        .iter()
        .map(|d| document_row(*d, &mut st))
        .collect::<Result<Vec<_>>>()?;
    st.sql = format!(
        "INSERT INTO documents ({DOCUMENT_COLUMNS}) VALUES {}",
        rows.join(", ")
    );
    let st = st.for_connection(conn);
    match st.query().execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "some of the {} {}s already exist",
            docs.len(),
            D::KIND
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn insert_on<D: Document>(conn: &mut AnyConnection, doc: &D) -> Result<()> {
    let mut st = Statement::default();
    let row = document_row(doc, &mut st)?;
    st.sql = format!("INSERT INTO documents ({DOCUMENT_COLUMNS}) VALUES {row}");
    match st.query().execute(&mut *conn).await {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict(duplicate_message(doc)))
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(d) = doc.as_deployment() {
        crate::deployments::index(conn, d, false).await?;
    }
    Ok(())
}

async fn update_on<D: Document>(conn: &mut AnyConnection, doc: &D) -> Result<()> {
    let body = serde_json::to_string(doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let name_lower = doc.name().to_lowercase();
    let unique_key = doc.unique_scope().map(|s| format!("{s}/{name_lower}"));
    let res = sqlx::query(
        "UPDATE documents SET name = $1, name_lower = $2, unique_key = $3, sort_key = $4, body = $5, updated_at = $6, \
         parent_id = $7, environment_id = $8 WHERE id = $9 AND collection = $10",
    )
    .bind(doc.name())
    .bind(&name_lower)
    .bind(unique_key)
    .bind(doc.sort_key())
    .bind(body)
    .bind(Timestamp::now().to_string())
    .bind(doc.parent_id())
    .bind(doc.environment_id())
    .bind(doc.id())
    .bind(D::COLLECTION)
    .execute(&mut *conn)
    .await;
    match res {
        Ok(r) if r.rows_affected() == 0 => Err(StoreError::NotFound(format!(
            "The {} '{}'",
            D::KIND,
            doc.id()
        ))),
        Ok(_) => match doc.as_deployment() {
            Some(d) => crate::deployments::index(conn, d, true).await,
            None => Ok(()),
        },
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(duplicate_message(doc))),
        Err(e) => Err(e.into()),
    }
}

async fn get_on<D: Document>(conn: &mut AnyConnection, id: &str) -> Result<Option<D>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT body FROM documents WHERE id = $1 AND collection = $2")
            .bind(id)
            .bind(D::COLLECTION)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(b,)| decode(&b)).transpose()
}

pub(crate) async fn list_on<D: Document>(
    conn: &mut AnyConnection,
    q: &DocumentQuery,
) -> Result<Page<D>> {
    let mut f = Filter::new(D::COLLECTION);
    if let Some(space) = &q.space_id {
        f.push(|n| format!("space_id = ${n}"), space.clone());
    }
    f.push_in("parent_id", &q.parent_ids);
    f.push_in("environment_id", &q.environment_ids);
    f.push_in("id", &q.ids);
    if let Some(name) = &q.name {
        f.push(|n| format!("name_lower = ${n}"), name.to_lowercase());
    }
    if let Some(part) = q.partial_name.as_deref().filter(|p| !p.is_empty()) {
        f.push(
            |n| format!("name_lower LIKE ${n} ESCAPE '\\'"),
            format!("%{}%", escape_like(&part.to_lowercase())),
        );
    }
    let order = if q.descending { "DESC" } else { "ASC" };
    let take = q.take.unwrap_or(i64::MAX).clamp(0, i64::MAX);
    let skip = q.skip.max(0);
    let list_sql = format!(
        "SELECT body FROM documents WHERE {} ORDER BY sort_key {order}, id {order} LIMIT {take} OFFSET {skip}",
        f.sql,
    );
    let rows: Vec<(String,)> = f
        .bind_all(sqlx::query_as(&list_sql))
        .fetch_all(&mut *conn)
        .await?;
    let total = if let Some(total) = known_total(skip, q.take, rows.len()) {
        total
    } else {
        let count_sql = format!("SELECT COUNT(*) FROM documents WHERE {}", f.sql);
        let (total,): (i64,) = f
            .bind_all(sqlx::query_as(&count_sql))
            .fetch_one(&mut *conn)
            .await?;
        total
    };
    let items = rows
        .iter()
        .map(|(b,)| decode(b))
        .collect::<Result<Vec<D>>>()?;
    Ok(Page { items, total })
}

async fn delete_on<D: Document>(conn: &mut AnyConnection, id: &str) -> Result<()> {
    let r = sqlx::query("DELETE FROM documents WHERE id = $1 AND collection = $2")
        .bind(id)
        .bind(D::COLLECTION)
        .execute(&mut *conn)
        .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("The {} '{id}'", D::KIND)));
    }
    if D::COLLECTION == Deployment::COLLECTION {
        crate::deployments::unindex(conn, id).await?;
    }
    Ok(())
}

impl Tx {
    pub async fn insert<D: Document>(&mut self, doc: &D) -> Result<()> {
        self.touched.document(D::COLLECTION);
        insert_on(&mut self.inner, doc).await
    }
    pub async fn update<D: Document>(&mut self, doc: &D) -> Result<()> {
        self.touched.document(D::COLLECTION);
        update_on(&mut self.inner, doc).await
    }
    pub async fn get<D: Document>(&mut self, id: &str) -> Result<Option<D>> {
        get_on(&mut self.inner, id).await
    }
    /// Reads a document and locks its row until the transaction ends, so a
    /// check followed by an update cannot race another writer (or node).
    pub async fn lock<D: Document>(&mut self, id: &str) -> Result<Option<D>> {
        let backend = crate::dialect::Backend::of_connection(self.inner.backend_name());
        let sql = format!(
            "SELECT body FROM documents WHERE id = $1 AND collection = $2{}",
            backend.lock_row()
        );
        let row: Option<(String,)> = sqlx::query_as(&sql)
            .bind(id)
            .bind(D::COLLECTION)
            .fetch_optional(&mut *self.inner)
            .await?;
        row.map(|(body,)| {
            serde_json::from_str(&body)
                .map_err(|e| StoreError::Corrupt(format!("{} document: {e}", D::KIND)))
        })
        .transpose()
    }
    pub async fn list<D: Document>(&mut self, q: &DocumentQuery) -> Result<Page<D>> {
        list_on(&mut self.inner, q).await
    }
    pub async fn delete<D: Document>(&mut self, id: &str) -> Result<()> {
        self.touched.document(D::COLLECTION);
        delete_on::<D>(&mut self.inner, id).await
    }

    /// Deletes every document of this kind that `parent_id` owns in the
    /// space, in one statement whatever their number (a project's
    /// deployments may be hundreds of thousands), and their index rows
    /// with them. Answers how many went.
    pub async fn delete_owned<D: Document>(
        &mut self,
        space_id: &str,
        parent_id: &str,
    ) -> Result<u64> {
        let removed = sqlx::query(
            "DELETE FROM documents WHERE collection = $1 AND space_id = $2 AND parent_id = $3",
        )
        .bind(D::COLLECTION)
        .bind(space_id)
        .bind(parent_id)
        .execute(&mut *self.inner)
        .await?
        .rows_affected();
        if D::COLLECTION == Deployment::COLLECTION {
            crate::deployments::unindex_project(&mut self.inner, space_id, parent_id).await?;
        }
        Ok(removed)
    }
}

impl Store {
    pub async fn get<D: Document>(&self, id: &str) -> Result<Option<D>> {
        let mut conn = self.reader().acquire().await?;
        get_on(&mut conn, id).await
    }

    /// Like [`Store::get`], but a missing document is an error naming it.
    pub async fn require<D: Document>(&self, id: &str) -> Result<D> {
        self.get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("The {} '{id}'", D::KIND)))
    }

    pub async fn list<D: Document>(&self, q: &DocumentQuery) -> Result<Page<D>> {
        let mut conn = self.reader().acquire().await?;
        list_on(&mut conn, q).await
    }

    /// Finds one document by exact (case-insensitive) name.
    pub async fn find_by_name<D: Document>(
        &self,
        space_id: Option<&str>,
        parent_id: Option<&str>,
        name: &str,
    ) -> Result<Option<D>> {
        let q = DocumentQuery {
            space_id: space_id.map(str::to_owned),
            parent_ids: parent_id.map(|p| vec![p.to_owned()]).unwrap_or_default(),
            name: Some(name.to_owned()),
            take: Some(1),
            ..Default::default()
        };
        Ok(self.list::<D>(&q).await?.items.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_escaping() {
        assert_eq!(super::escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
