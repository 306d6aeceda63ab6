//! What every editing form shares: the CSRF field, labelled inputs with
//! their errors beside them, and the service's complaints sorted onto the
//! fields they concern, so a form posted with a mistake comes back as it
//! was typed, with the reason next to the input that caused it.

use crate::error::PortalError;
use crate::session::CSRF_FIELD;
use axum::http::StatusCode;
use cuttle_service::ServiceError;
use maud::{html, Markup};
use serde::Deserialize;

/// A form that carries nothing but its CSRF token (a button that acts).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfOnly {
    pub csrf: Option<String>,
}

/// The hidden field carrying the session's CSRF token; every form has one.
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

/// The problems with a posted form: some about one field, some about the
/// form as a whole (a concurrent edit, a rule spanning fields).
#[derive(Debug, Default)]
pub struct Problems {
    pub general: Vec<String>,
    fields: Vec<(&'static str, String)>,
}

impl Problems {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.general.is_empty() && self.fields.is_empty()
    }

    /// Adds a problem with one field (the form's own checks, before the
    /// service is called).
    pub fn on(&mut self, field: &'static str, message: impl Into<String>) {
        self.fields.push((field, message.into()));
    }

    /// Sorts a service error: `field_of` names the field a message is
    /// about (from its words), or `None` for the form as a whole. Errors
    /// that are not about the input (not found, forbidden, internal) come
    /// back as `Err`, to be shown as an error page. The status is what the
    /// re-rendered form is sent with.
    pub fn from_error(
        error: impl Into<PortalError>,
        field_of: impl Fn(&str) -> Option<&'static str>,
    ) -> Result<(StatusCode, Problems), PortalError> {
        let mut problems = Problems::none();
        let (status, messages) = match error.into() {
            PortalError::Service(ServiceError::BadRequest { message, errors }) => {
                let errors = if errors.is_empty() {
                    vec![message]
                } else {
                    errors
                };
                (StatusCode::BAD_REQUEST, errors)
            }
            PortalError::Service(ServiceError::Conflict(m)) => (StatusCode::CONFLICT, vec![m]),
            PortalError::Service(ServiceError::AlreadyExists { detail, .. }) => {
                (StatusCode::CONFLICT, vec![detail])
            }
            PortalError::BadRequest(m) => (StatusCode::BAD_REQUEST, vec![m]),
            other => return Err(other),
        };
        for m in messages {
            match field_of(&m) {
                Some(f) => problems.fields.push((f, m)),
                None => problems.general.push(m),
            }
        }
        Ok((status, problems))
    }

    pub fn field<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.fields
            .iter()
            .filter(move |(f, _)| *f == name)
            .map(|(_, m)| m.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.field(name).next().is_some()
    }

    /// The form-wide problems, announced to screen readers; put it at the
    /// top of the form.
    pub fn summary(&self) -> Markup {
        html! {
            @if !self.general.is_empty() {
                div.alert role="alert" {
                    @if self.general.len() == 1 {
                        (self.general[0])
                    } @else {
                        ul { @for m in &self.general { li { (m) } } }
                    }
                }
            }
        }
    }

    /// The problems with `name`, under its input; the input names this
    /// element's id (`{id}-error`) in `aria-describedby`.
    pub fn under(&self, id: &str, name: &str) -> Markup {
        html! {
            @if self.has(name) {
                p.field-error id=(format!("{id}-error")) {
                    @for (i, m) in self.field(name).enumerate() {
                        @if i > 0 { br; }
                        (m)
                    }
                }
            }
        }
    }
}

/// A labelled single-line text input with its problems beneath it.
pub fn text_field(
    problems: &Problems,
    id: &str,
    name: &str,
    label: &str,
    value: &str,
    hint: Option<&str>,
) -> Markup {
    let invalid = problems.has(name);
    let described = match (invalid, hint.is_some()) {
        (true, _) => Some(format!("{id}-error")),
        (false, true) => Some(format!("{id}-hint")),
        _ => None,
    };
    html! {
        div.field.invalid[invalid] {
            label for=(id) { (label) }
            input #(id) type="text" name=(name) value=(value)
                aria-invalid=[invalid.then_some("true")]
                aria-describedby=[described];
            @if let Some(h) = hint { p.hint id=(format!("{id}-hint")) { (h) } }
            (problems.under(id, name))
        }
    }
}

/// A labelled multi-line text area with its problems beneath it.
pub fn text_area(
    problems: &Problems,
    id: &str,
    name: &str,
    label: &str,
    value: &str,
    rows: u32,
) -> Markup {
    let invalid = problems.has(name);
    html! {
        div.field.invalid[invalid] {
            label for=(id) { (label) }
            textarea #(id) name=(name) rows=(rows)
                aria-invalid=[invalid.then_some("true")]
                aria-describedby=[invalid.then(|| format!("{id}-error"))] { (value) }
            (problems.under(id, name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_land_on_their_fields() {
        let e = ServiceError::invalid(vec![
            "A project named 'Web' already exists".into(),
            "Something else is wrong".into(),
        ]);
        let (status, p) = Problems::from_error(e, |m| m.contains("named").then_some("Name"))
            .expect("a form problem");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p.field("Name").collect::<Vec<_>>(),
            ["A project named 'Web' already exists"]
        );
        assert_eq!(p.general, ["Something else is wrong"]);
        let html = text_field(&p, "name", "Name", "Name", "<Web>", None).into_string();
        assert!(html.contains(r#"aria-invalid="true""#), "{html}");
        assert!(html.contains("&lt;Web&gt;"), "{html}");
        assert!(html.contains("already exists"), "{html}");

        let (status, p) =
            Problems::from_error(ServiceError::Conflict("changed".into()), |_| None).unwrap();
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(p.general, ["changed"]);
        assert!(Problems::from_error(ServiceError::not_found("project", "x"), |_| None).is_err());
    }
}
