//! Resources of which exactly one per space is the default (worker pools,
//! machine policies): making one the default unsets the old one in the same
//! transaction, and the default can neither be unset nor deleted directly.

use crate::actor::Actor;
use crate::resources::audit_change;
use crate::{Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::{MachinePolicy, WorkerPool};
use cuttle_store::{Document, DocumentQuery, Store, StoreError, Tx};

pub(crate) trait OneDefault: Document + Clone {
    fn is_default(&self) -> bool;
    fn set_default(&mut self, is_default: bool);
    fn set_id(&mut self, id: String);
}

macro_rules! one_default {
    ($t:ty) => {
        impl OneDefault for $t {
            fn is_default(&self) -> bool {
                self.is_default
            }
            fn set_default(&mut self, is_default: bool) {
                self.is_default = is_default;
            }
            fn set_id(&mut self, id: String) {
                self.id = id;
            }
        }
    };
}

one_default!(WorkerPool);
one_default!(MachinePolicy);

/// The space's default, if it has one.
pub(crate) async fn find_default<D: OneDefault>(
    store: &Store,
    space_id: &str,
) -> Result<Option<D>> {
    Ok(store
        .list::<D>(&DocumentQuery::in_space(space_id))
        .await?
        .items
        .into_iter()
        .find(|d| d.is_default()))
}

/// Unsets the default flag of every other document in the space.
async fn clear_other_defaults<D: OneDefault>(
    tx: &mut Tx,
    space_id: &str,
    keep: &str,
) -> Result<(), StoreError> {
    for mut other in tx
        .list::<D>(&DocumentQuery::in_space(space_id))
        .await?
        .items
    {
        if other.is_default() && other.id() != keep {
            other.set_default(false);
            tx.update(&other).await?;
        }
    }
    Ok(())
}

pub(crate) async fn insert<D: OneDefault>(
    store: &Store,
    caller: &Actor,
    collection: Collection,
    mut doc: D,
) -> Result<D> {
    let space_id = doc.space_id().unwrap_or_default().to_owned();
    let mut tx = store.begin().await?;
    doc.set_id(tx.next_id(collection).await?);
    if doc.is_default() {
        clear_other_defaults::<D>(&mut tx, &space_id, doc.id()).await?;
    }
    tx.insert(&doc).await?;
    let message = format!("{} {} was created", D::KIND, doc.name());
    audit_change(&mut tx, caller, None, Some(&doc), message, vec![]).await?;
    tx.commit().await?;
    Ok(doc)
}

pub(crate) async fn update<D: OneDefault>(
    store: &Store,
    caller: &Actor,
    existing: &D,
    doc: D,
) -> Result<D> {
    if existing.is_default() && !doc.is_default() {
        return Err(ServiceError::bad_request(format!(
            "The {kind} '{}' is the default; make another {kind} the default instead",
            existing.name(),
            kind = D::KIND
        )));
    }
    let space_id = doc.space_id().unwrap_or_default().to_owned();
    let mut tx = store.begin().await?;
    if doc.is_default() && !existing.is_default() {
        clear_other_defaults::<D>(&mut tx, &space_id, doc.id()).await?;
    }
    tx.update(&doc).await?;
    let message = format!("{} {} was modified", D::KIND, doc.name());
    audit_change(&mut tx, caller, Some(existing), Some(&doc), message, vec![]).await?;
    tx.commit().await?;
    Ok(doc)
}

/// The default cannot be deleted: machines registered later need one.
pub(crate) fn ensure_not_default<D: OneDefault>(doc: &D) -> Result<()> {
    if doc.is_default() {
        return Err(ServiceError::bad_request(format!(
            "The {kind} '{}' is the default and cannot be deleted; make another {kind} the default first",
            doc.name(),
            kind = D::KIND
        )));
    }
    Ok(())
}

/// Deletes a document that is not the default; the caller has checked that
/// nothing uses it.
pub(crate) async fn delete<D: OneDefault>(store: &Store, caller: &Actor, doc: &D) -> Result<()> {
    ensure_not_default(doc)?;
    crate::resources::delete_existing(store, caller, doc).await
}

/// Gives the space a default if it has none: the document named `name` if
/// there is one (an installation older than defaults may have made it), or a
/// new one from `make`. Idempotent, so it runs at every start.
pub(crate) async fn seed<D: OneDefault>(
    tx: &mut Tx,
    space_id: &str,
    collection: Collection,
    name: &str,
    make: impl FnOnce() -> D,
) -> Result<(), StoreError> {
    let existing = tx
        .list::<D>(&DocumentQuery::in_space(space_id))
        .await?
        .items;
    if existing.iter().any(|d| d.is_default()) {
        return Ok(());
    }
    if let Some(mut named) = existing
        .into_iter()
        .find(|d| d.name().eq_ignore_ascii_case(name))
    {
        named.set_default(true);
        return tx.update(&named).await;
    }
    let mut doc = make();
    doc.set_id(tx.next_id(collection).await?);
    doc.set_default(true);
    tx.insert(&doc).await
}
