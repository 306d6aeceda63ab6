//! Timestamps as Octopus writes them: ISO 8601 in UTC with milliseconds and an
//! explicit offset (`2026-01-02T03:04:05.678+00:00`). The fixed width makes the
//! text sort in time order, which the store relies on.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        // Truncate to what the text form keeps, so a value survives a round trip.
        Self::from_millis(Utc::now().timestamp_millis())
    }

    pub fn from_millis(ms: i64) -> Self {
        Self(Utc.timestamp_millis_opt(ms).single().unwrap_or_default())
    }

    pub fn millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Self::from_millis(t.with_timezone(&Utc).timestamp_millis()))
    }

    pub fn add_millis(&self, ms: i64) -> Self {
        Self::from_millis(self.millis().saturating_add(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_rfc3339_opts(SecondsFormat::Millis, false);
        f.write_str(&text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("'{text}' is not an ISO 8601 date and time"))
        })
    }
}

/// In the API's description a timestamp is an RFC 3339 date and time.
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

/// Formats a duration the way Octopus shows task durations ("1 minute", "3 seconds").
pub fn human_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (n, unit) = if secs < 60 {
        (secs, "second")
    } else if secs < 3600 {
        (secs / 60, "minute")
    } else {
        (secs / 3600, "hour")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_as_text() {
        let a = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(a.to_string(), "2023-11-14T22:13:20.123+00:00");
        assert_eq!(Timestamp::parse(&a.to_string()), Some(a));
        let b = a.add_millis(5);
        assert!(a.to_string() < b.to_string());
        assert_eq!(Timestamp::parse("2023-11-14T23:13:20.123+01:00"), Some(a));
        assert_eq!(Timestamp::parse("yesterday"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(999), "0 seconds");
        assert_eq!(human_duration(1000), "1 second");
        assert_eq!(human_duration(125_000), "2 minutes");
    }
}
