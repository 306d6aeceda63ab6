//! The built-in feed's package versions: one row per version, with what is
//! known about its file; the file itself is kept outside the database, named
//! by its hash. Lists come back unordered: SemVer order is not text order,
//! so callers sort (a space's versions are a few thousand small rows).

use crate::{is_unique_violation, Result, Store, StoreError, Tx};
use cuttle_model::ids::BUILTIN_FEED_ID;
use cuttle_model::package::Package;
use cuttle_model::{Release, Timestamp};
use sqlx::AnyConnection;

/// Which package versions a list wants.
#[derive(Clone, Debug, Default)]
pub struct PackageQuery {
    pub space_id: String,
    /// Part of the package id, in any case.
    pub filter: Option<String>,
    /// Exactly this package id, in any case.
    pub package_id: Option<String>,
    /// Only these resource ids (`packages-…`); empty means any.
    pub ids: Vec<String>,
}

const COLUMNS: &str =
    "id, space_id, package_id, version, file_extension, hash, size_bytes, published";

type Row = (String, String, String, String, String, String, i64, String);

fn from_row(r: Row) -> Result<Package> {
    let (id, space_id, package_id, version, file_extension, hash, size, published) = r;
    let published = Timestamp::parse(&published)
        .ok_or_else(|| StoreError::Corrupt(format!("package {id}: bad time '{published}'")))?;
    Ok(Package {
        id,
        space_id,
        package_id,
        version,
        feed_id: BUILTIN_FEED_ID.into(),
        file_extension,
        hash,
        package_size_bytes: size,
        published: Some(published),
    })
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

async fn packages_on(conn: &mut AnyConnection, q: &PackageQuery) -> Result<Vec<Package>> {
    let mut sql = format!("SELECT {COLUMNS} FROM packages WHERE space_id = $1");
    let mut args = vec![q.space_id.clone()];
    if let Some(f) = q.filter.as_deref().filter(|f| !f.is_empty()) {
        args.push(format!("%{}%", escape_like(&f.to_lowercase())));
        sql.push_str(&format!(
            " AND package_id_lower LIKE ${} ESCAPE '\\'",
            args.len()
        ));
    }
    if let Some(p) = q.package_id.as_deref().filter(|p| !p.is_empty()) {
        args.push(p.to_lowercase());
        sql.push_str(&format!(" AND package_id_lower = ${}", args.len()));
    }
    if !q.ids.is_empty() {
        let start = args.len() + 1;
        let placeholders: Vec<String> = (0..q.ids.len())
            .map(|i| format!("${}", start + i))
            .collect();
        args.extend(q.ids.iter().cloned());
        sql.push_str(&format!(" AND id IN ({})", placeholders.join(", ")));
    }
    let mut query = sqlx::query_as::<_, Row>(&sql);
    for a in &args {
        query = query.bind(a.as_str());
    }
    query
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

async fn package_on(conn: &mut AnyConnection, space_id: &str, id: &str) -> Result<Option<Package>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM packages WHERE space_id = $1 AND id = $2"
    ))
    .bind(space_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(from_row).transpose()
}

async fn package_by_version_on(
    conn: &mut AnyConnection,
    space_id: &str,
    package_id: &str,
    version_key: &str,
) -> Result<Option<Package>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM packages WHERE space_id = $1 AND package_id_lower = $2 AND version_key = $3"
    ))
    .bind(space_id)
    .bind(package_id.to_lowercase())
    .bind(version_key)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(from_row).transpose()
}

async fn hash_in_use_on(conn: &mut AnyConnection, hash: &str) -> Result<bool> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM packages WHERE hash = $1")
        .bind(hash)
        .fetch_one(&mut *conn)
        .await?;
    Ok(n > 0)
}

impl Store {
    /// The package versions a query asks for, in no particular order.
    pub async fn packages(&self, q: &PackageQuery) -> Result<Vec<Package>> {
        let mut conn = self.reader().acquire().await?;
        packages_on(&mut conn, q).await
    }

    /// One package version by its resource id (`packages-…`).
    pub async fn package(&self, space_id: &str, id: &str) -> Result<Option<Package>> {
        let mut conn = self.reader().acquire().await?;
        package_on(&mut conn, space_id, id).await
    }

    /// Whether any package version, in any space, has a file with this hash.
    pub async fn package_hash_in_use(&self, hash: &str) -> Result<bool> {
        let mut conn = self.reader().acquire().await?;
        hash_in_use_on(&mut conn, hash).await
    }

    /// The releases of a space that select package versions: the candidates
    /// for holding on to a package. A release that selects none is left out
    /// by its stored JSON, so the rest are never read.
    pub async fn releases_selecting_packages(&self, space_id: &str) -> Result<Vec<Release>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT body FROM documents WHERE collection = 'Releases' AND space_id = $1 \
             AND body LIKE '%\"SelectedPackages\":[{%'",
        )
        .bind(space_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|(b,)| {
                serde_json::from_str(b)
                    .map_err(|e| StoreError::Corrupt(format!("release document: {e}")))
            })
            .collect()
    }
}

impl Tx {
    /// The version of a package that clashes with `version_key`, if any.
    pub async fn package_by_version(
        &mut self,
        space_id: &str,
        package_id: &str,
        version_key: &str,
    ) -> Result<Option<Package>> {
        package_by_version_on(&mut self.inner, space_id, package_id, version_key).await
    }

    pub async fn package_hash_in_use(&mut self, hash: &str) -> Result<bool> {
        hash_in_use_on(&mut self.inner, hash).await
    }

    /// Adds a package version; one that exists already is a conflict.
    pub async fn insert_package(&mut self, p: &Package) -> Result<()> {
        let published = p.published.unwrap_or_else(Timestamp::now);
        let res = sqlx::query(
            "INSERT INTO packages (id, space_id, package_id, package_id_lower, version, version_key, \
             file_extension, hash, size_bytes, published) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&p.id)
        .bind(&p.space_id)
        .bind(&p.package_id)
        .bind(p.package_id.to_lowercase())
        .bind(&p.version)
        .bind(p.version_key())
        .bind(&p.file_extension)
        .bind(&p.hash)
        .bind(p.package_size_bytes)
        .bind(published.to_string())
        .execute(&mut *self.inner)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "A package with the same name and version already exists: {} {} (or another package has the id '{}')",
                p.package_id, p.version, p.id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_package(&mut self, space_id: &str, id: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM packages WHERE space_id = $1 AND id = $2")
            .bind(space_id)
            .bind(id)
            .execute(&mut *self.inner)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("The package '{id}'")));
        }
        Ok(())
    }
}
