//! Request bodies the way Octopus clients send them: field names bind
//! case-insensitively (clients send `spaceId` beside `SpaceId`-style
//! fields) and unknown fields are ignored. The adapter knows a struct's field
//! names from serde, so only struct fields are renamed; the keys of free-form
//! maps (variables, form values) stay exactly as sent.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;
use serde_json::{Map, Value};

/// A JSON body bound case-insensitively; see the module docs.
pub struct OctoJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OctoJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::bad_request(format!("The request body could not be read: {e}"))
        })?;
        parse(&bytes).map(OctoJson)
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; send a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    refuse_nul(&value, &mut String::new())?;
    from_value(value)
        .map_err(|e| ApiError::bad_request(format!("The request body has the wrong shape: {e}")))
}

/// Refuses a body with a NUL in any string or key, naming where: no name,
/// id or value means one, and PostgreSQL can neither store nor look one
/// up, where SQLite can (so this is one 400 on both, not a 500 on one).
fn refuse_nul(value: &Value, at: &mut String) -> Result<(), ApiError> {
    let field = |at: &str| match at {
        "" => "The request body".to_owned(),
        _ => at.to_owned(),
    };
    match value {
        Value::String(s) => cuttle_service::text::check_no_nul(&field(at), s)?,
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                refuse_nul(item, at)?;
                at.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(key);
                cuttle_service::text::check_no_nul(&format!("The key {}", field(at)), key)?;
                refuse_nul(item, at)?;
                at.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(CiValue(value))
}

struct CiValue(Value);

impl<'de> de::Deserializer<'de> for CiValue {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(CiSeq(items.into_iter())),
            Value::Object(map) => visitor.visit_map(CiMap::new(map, None)),
            other => de::Deserializer::deserialize_any(other, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(CiMap::new(map, Some(fields))),
            other => CiValue(other).deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_enum(self.0, name, variants, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct CiSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for CiSeq {
    type Error = serde_json::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(CiValue(v)))
            .transpose()
    }
}

struct CiMap {
    entries: std::vec::IntoIter<(String, Value)>,
    pending: Option<Value>,
}

impl CiMap {
    fn new(map: Map<String, Value>, fields: Option<&'static [&'static str]>) -> Self {
        let entries: Vec<(String, Value)> = match fields {
            None => map.into_iter().collect(),
            Some(fields) => {
                let exact: Vec<String> = map
                    .keys()
                    .filter(|k| fields.contains(&k.as_str()))
                    .cloned()
                    .collect();
                map.into_iter()
                    .filter_map(|(k, v)| {
                        if fields.contains(&k.as_str()) {
                            return Some((k, v));
                        }
                        match fields.iter().find(|f| f.eq_ignore_ascii_case(&k)) {
                            // The exactly-named field wins over a differently-cased twin.
                            Some(f) if exact.iter().any(|e| e == f) => None,
                            Some(f) => Some(((*f).to_owned(), v)),
                            None => Some((k, v)),
                        }
                    })
                    .collect()
            }
        };
        CiMap {
            entries: entries.into_iter(),
            pending: None,
        }
    }
}

impl<'de> MapAccess<'de> for CiMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.pending = Some(v);
                seed.deserialize(k.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let v = self.pending.take().unwrap_or(Value::Null);
        seed.deserialize(CiValue(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Inner {
        project_name: String,
        count: i64,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Outer {
        space_id: Option<String>,
        items: Vec<Inner>,
        variables: BTreeMap<String, String>,
        state: Option<cuttle_model::TaskState>,
    }

    #[test]
    fn binds_case_insensitively_but_keeps_map_keys() {
        let v = json!({
            "spaceId": "Spaces-1",
            "ITEMS": [{"projectName": "Web", "count": 2, "extra": true}],
            "variables": {"myVar": "x", "Other": "y"},
            "State": "Success",
            "unknownField": 5
        });
        let o: Outer = from_value(v).unwrap();
        assert_eq!(o.space_id.as_deref(), Some("Spaces-1"));
        assert_eq!(
            o.items,
            vec![Inner {
                project_name: "Web".into(),
                count: 2
            }]
        );
        assert_eq!(o.variables.keys().collect::<Vec<_>>(), ["Other", "myVar"]);
        assert_eq!(o.state, Some(cuttle_model::TaskState::Success));
    }

    #[test]
    fn exact_name_wins_over_twin() {
        let o: Inner = from_value(json!({"projectName": "lower", "ProjectName": "exact"})).unwrap();
        assert_eq!(o.project_name, "exact");
    }

    #[test]
    fn errors_are_clear() {
        let e = parse::<Inner>(b"{not json").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse::<Inner>(b"   ").unwrap_err();
        assert!(e.message.contains("empty"));
        let e = parse::<Inner>(br#"{"Count": "many"}"#).unwrap_err();
        assert!(e.message.contains("wrong shape"), "{}", e.message);
    }
}
