//! Writing the audit log: one event per change, in the change's own
//! transaction, saying who (user), from where (address, user agent, how
//! they signed in), what (category, message, the documents it is about) and,
//! for a change to a document, the document before and after with every
//! sensitive value replaced.

use crate::actor::Actor;
use crate::Result;
use cuttle_store::{AuditEvent, Tx};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// What replaces a sensitive value in an event; the value itself is never
/// written to the log.
pub const HIDDEN: &str = "********";

pub use cuttle_model::event::category;

/// One event about to be written.
#[derive(Default)]
pub struct Entry {
    pub space_id: Option<String>,
    pub category: &'static str,
    pub message: String,
    pub related: Vec<String>,
    pub details: Option<String>,
    /// `{DocumentContext, Differences}`, already without sensitive values.
    pub change: Option<Value>,
}

impl Entry {
    pub fn new(category: &'static str, space_id: Option<&str>, message: String) -> Self {
        Entry {
            space_id: space_id.map(str::to_owned),
            category,
            message,
            ..Default::default()
        }
    }

    pub fn about(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.related.extend(ids.into_iter().map(Into::into));
        self
    }

    /// The document before and after the change (`None` where it did not
    /// exist), compared and stripped of sensitive values.
    pub fn changed<D: Serialize>(mut self, before: Option<&D>, after: Option<&D>) -> Self {
        let before = before.and_then(|d| serde_json::to_value(d).ok());
        let after = after.and_then(|d| serde_json::to_value(d).ok());
        self.change = Some(change_details(before, after));
        self
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }
}

/// Writes `entry` as `actor`'s event in `tx`.
pub async fn record(tx: &mut Tx, actor: &Actor, entry: Entry) -> Result<()> {
    tx.record_event(event(actor, entry)).await?;
    Ok(())
}

/// `entry` as `actor`'s event, for a store write that takes the event to
/// write in its own transaction (cancelling a task).
pub fn event(actor: &Actor, entry: Entry) -> AuditEvent {
    let mut related = Vec::new();
    for id in entry.related {
        if !id.is_empty() && !related.contains(&id) {
            related.push(id);
        }
    }
    AuditEvent {
        space_id: entry.space_id,
        user_id: Some(actor.id.clone()).filter(|id| !id.is_empty()),
        username: Some(actor.username.clone()).filter(|n| !n.is_empty()),
        category: entry.category.into(),
        message: entry.message,
        related_document_ids: related,
        is_service: actor.is_service,
        identity_established_with: actor.origin.established_with.clone(),
        user_agent: actor.origin.user_agent.clone(),
        ip_address: actor.origin.ip_address.clone(),
        details: entry.details,
        change_details: entry.change.map(|c| c.to_string()),
    }
}

/// Octopus's `ChangeDetails`: the document as it is now (as it was, for a
/// deletion) and the differences, each `{Path, Before, After}` with a JSON
/// pointer; sensitive values replaced by [`HIDDEN`] in both.
pub fn change_details(mut before: Option<Value>, mut after: Option<Value>) -> Value {
    for doc in [&mut before, &mut after].into_iter().flatten() {
        hide_sensitive(doc);
    }
    let mut differences = Vec::new();
    diff(
        "",
        before.as_ref().unwrap_or(&Value::Null),
        after.as_ref().unwrap_or(&Value::Null),
        &mut differences,
    );
    json!({
        "DocumentContext": after.as_ref().or(before.as_ref()).cloned().unwrap_or(Value::Null),
        "Differences": differences,
    })
}

/// Field names whose values are secrets wherever they appear.
fn secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "password",
        "apikey",
        "api_key",
        "secret",
        "token",
        "privatekey",
        "private_key",
        "certificatedata",
        "pfx",
        "passphrase",
        "keyhash",
        "key_hash",
        "passwordhash",
    ]
    .iter()
    .any(|s| lower.contains(s))
        && !lower.ends_with("id")
        && !lower.starts_with("has")
        && !lower.starts_with("is")
}

/// Replaces every sensitive value in a document: a variable marked
/// sensitive (its `Value`), and any field named like a secret.
pub fn hide_sensitive(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let sensitive_variable = map.get("IsSensitive") == Some(&Value::Bool(true))
                || map.get("Type").and_then(Value::as_str)
                    == Some(cuttle_model::variables::SENSITIVE_TYPE);
            for (k, v) in map.iter_mut() {
                if (sensitive_variable && k == "Value") || (secret_field(k) && !v.is_null()) {
                    *v = Value::String(HIDDEN.into());
                } else {
                    hide_sensitive(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(hide_sensitive),
        _ => {}
    }
}

/// Leaves that differ between `a` and `b`. Arrays of objects with `Id`s
/// are matched by id (a variable moved in the list is not a change).
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<Value>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let child = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                diff(
                    &child,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if by_id(x).is_some() && by_id(y).is_some() => {
            let (xs, ys) = (by_id(x).unwrap_or_default(), by_id(y).unwrap_or_default());
            let ids: std::collections::BTreeSet<&String> =
                xs.keys().chain(ys.keys()).copied().collect();
            for id in ids {
                diff(
                    &format!("{path}/{id}"),
                    xs.get(id).copied().unwrap_or(&Value::Null),
                    ys.get(id).copied().unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ => {
            let mut d = Map::new();
            d.insert("Path".into(), Value::String(path.to_owned()));
            d.insert("Before".into(), a.clone());
            d.insert("After".into(), b.clone());
            out.push(Value::Object(d));
        }
    }
}

/// The items of an array by their `Id`, if every item has a distinct one.
fn by_id(items: &[Value]) -> Option<std::collections::BTreeMap<&String, &Value>> {
    let mut map = std::collections::BTreeMap::new();
    for item in items {
        let Some(Value::String(id)) = item.get("Id") else {
            return None;
        };
        if map.insert(id, item).is_some() {
            return None;
        }
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_values_never_reach_the_change() {
        let before = json!({"Variables": [
            {"Id": "a", "Name": "Password", "Value": "old-secret", "IsSensitive": true, "Type": "Sensitive"},
            {"Id": "b", "Name": "Plain", "Value": "x", "IsSensitive": false, "Type": "String"}
        ]});
        let after = json!({"Variables": [
            {"Id": "a", "Name": "Password", "Value": "new-secret", "IsSensitive": true, "Type": "Sensitive"},
            {"Id": "b", "Name": "Plain", "Value": "y", "IsSensitive": false, "Type": "String"}
        ], "ApiKey": "API-XYZ"});
        let c = change_details(Some(before), Some(after)).to_string();
        assert!(!c.contains("old-secret") && !c.contains("new-secret") && !c.contains("API-XYZ"));
        assert!(c.contains(r#""Path":"/Variables/b/Value""#), "{c}");
        assert!(c.contains(HIDDEN));
    }

    #[test]
    fn differences_name_changed_leaves_only() {
        let c = change_details(
            Some(json!({"Name": "a", "Description": "same"})),
            Some(json!({"Name": "b", "Description": "same"})),
        );
        assert_eq!(
            c["Differences"],
            json!([{"Path": "/Name", "Before": "a", "After": "b"}])
        );
        assert_eq!(c["DocumentContext"]["Name"], "b");
    }

    #[test]
    fn a_deletion_keeps_the_document_it_removed() {
        let c = change_details(Some(json!({"Name": "gone"})), None);
        assert_eq!(c["DocumentContext"]["Name"], "gone");
    }
}
