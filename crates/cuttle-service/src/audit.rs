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
/// deletion) and the differences, each `{Path, Before, After}` (a path of
/// field names, and of `Id`s inside lists of items that have them). A
/// sensitive value is [`HIDDEN`] everywhere; that it changed still shows.
pub fn change_details(before: Option<Value>, after: Option<Value>) -> Value {
    let mut differences = Vec::new();
    diff(
        "",
        before.as_ref().unwrap_or(&Value::Null),
        after.as_ref().unwrap_or(&Value::Null),
        false,
        &mut differences,
    );
    let mut context = after.or(before).unwrap_or(Value::Null);
    hide_sensitive(&mut context);
    json!({
        "DocumentContext": context,
        "Differences": differences,
    })
}

/// A sensitive variable: its `Value` is a secret.
fn is_sensitive_variable(v: &Value) -> bool {
    v.get("IsSensitive") == Some(&Value::Bool(true))
        || v.get("Type").and_then(Value::as_str) == Some(cuttle_model::variables::SENSITIVE_TYPE)
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
            let sensitive_variable = is_sensitive_variable(&Value::Object(map.clone()));
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

/// A value as a difference may show it: hidden when `secret`, and with
/// every secret inside it hidden.
fn shown(v: &Value, secret: bool) -> Value {
    match v {
        Value::Null => Value::Null,
        _ if secret => Value::String(HIDDEN.into()),
        _ => {
            let mut v = v.clone();
            hide_sensitive(&mut v);
            v
        }
    }
}

/// Leaves that differ between `a` and `b`. Arrays of objects with `Id`s
/// are matched by id (a variable moved in the list is not a change). Under
/// `secret`, values are compared but never shown.
fn diff(path: &str, a: &Value, b: &Value, secret: bool, out: &mut Vec<Value>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if !secret => {
            let sensitive = is_sensitive_variable(a) || is_sensitive_variable(b);
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let child = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                let hidden = (sensitive && k == "Value") || secret_field(k);
                diff(
                    &child,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    hidden,
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y))
            if !secret && by_id(x).is_some() && by_id(y).is_some() =>
        {
            let (xs, ys) = (by_id(x).unwrap_or_default(), by_id(y).unwrap_or_default());
            let ids: std::collections::BTreeSet<&String> =
                xs.keys().chain(ys.keys()).copied().collect();
            for id in ids {
                diff(
                    &format!("{path}/{id}"),
                    xs.get(id).copied().unwrap_or(&Value::Null),
                    ys.get(id).copied().unwrap_or(&Value::Null),
                    false,
                    out,
                );
            }
        }
        _ => {
            let mut d = Map::new();
            d.insert("Path".into(), Value::String(path.to_owned()));
            d.insert("Before".into(), shown(a, secret));
            d.insert("After".into(), shown(b, secret));
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
        // The secret's change shows, its values do not.
        assert!(
            c.contains(r#"{"After":"********","Before":"********","Path":"/Variables/a/Value"}"#),
            "{c}"
        );
        assert!(
            c.contains(r#""After":"********","Before":null,"Path":"/ApiKey""#),
            "{c}"
        );
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
    fn a_variable_added_as_sensitive_shows_hidden() {
        let after = json!({"Variables": [
            {"Id": "a", "Name": "Token", "Value": "s3cr3t", "IsSensitive": true}
        ]});
        let c = change_details(Some(json!({"Variables": []})), Some(after)).to_string();
        assert!(!c.contains("s3cr3t"), "{c}");
    }

    #[test]
    fn a_deletion_keeps_the_document_it_removed() {
        let c = change_details(Some(json!({"Name": "gone"})), None);
        assert_eq!(c["DocumentContext"]["Name"], "gone");
    }
}
