//! Interruptions: a running deployment pausing for a person. A manual
//! intervention step asks to proceed or abort; with guided failure, a failed
//! action asks whether to retry it, ignore the failure or fail.
//!
//! The shape is Octopus's (`Form` with `Values` and `Elements`), so Octopus
//! clients can show and submit it. The pure rules live here: building the
//! form, checking a submission, reading the decision, closing.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const MANUAL_ACTION_TYPE: &str = "Octopus.Manual";
pub const PROP_MANUAL_INSTRUCTIONS: &str = "Octopus.Action.Manual.Instructions";
pub const PROP_MANUAL_BLOCK_CONCURRENT: &str = "Octopus.Action.Manual.BlockConcurrentDeployments";
/// Comma-separated team ids whose members may act.
pub const PROP_MANUAL_RESPONSIBLE_TEAMS: &str = "Octopus.Action.Manual.ResponsibleTeamIds";

/// Form element names, as Octopus names them (clients submit by these).
pub const FIELD_INSTRUCTIONS: &str = "Instructions";
pub const FIELD_NOTES: &str = "Notes";
pub const FIELD_RESULT: &str = "Result";
pub const FIELD_GUIDANCE: &str = "Guidance";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub enum InterruptionKind {
    #[default]
    ManualIntervention,
    GuidedFailure,
}

/// What a person decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Manual intervention: go on.
    Proceed,
    /// Manual intervention: fail the step.
    Abort,
    /// Guided failure: run the failed action again.
    Retry,
    /// Guided failure: carry on as if the action had succeeded.
    Ignore,
    /// Guided failure: fail the step (Octopus's "Fail"; "Abort" is accepted).
    Fail,
}

impl Decision {
    /// The value stored in the form, as Octopus stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Proceed => "Proceed",
            Decision::Abort => "Abort",
            Decision::Retry => "Retry",
            Decision::Ignore => "Ignore",
            Decision::Fail => "Fail",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Button {
    pub text: String,
    pub value: String,
    pub requires_confirmation: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "Type", rename_all_fields = "PascalCase")]
pub enum Control {
    Paragraph { text: String, resolve_links: bool },
    TextArea { label: String },
    SubmitButtonGroup { buttons: Vec<Button> },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct FormElement {
    pub name: String,
    pub control: Control,
    pub is_value_required: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Form {
    pub values: BTreeMap<String, Option<String>>,
    pub elements: Vec<FormElement>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Interruption {
    pub id: String,
    pub space_id: String,
    pub title: String,
    pub created: Option<Timestamp>,
    pub is_pending: bool,
    pub form: Form,
    pub related_document_ids: Vec<String>,
    pub responsible_team_ids: Vec<String>,
    pub responsible_user_id: Option<String>,
    /// Per caller: filled in when served, never meaningful when stored.
    pub can_take_responsibility: bool,
    /// Per caller: filled in when served.
    pub has_responsibility: bool,
    pub task_id: String,
    /// The activity that asked, so a client can place it in the log.
    pub correlation_id: String,
    pub is_linked_to_other_interruption: bool,
    #[serde(rename = "Type")]
    pub kind: InterruptionKind,
    /// Who submitted it (username) and when, or why it was closed unanswered.
    pub last_modified_by: Option<String>,
    pub last_modified_on: Option<Timestamp>,
}

/// Where in a deployment an interruption is raised.
#[derive(Clone, Debug, Default)]
pub struct Raised {
    pub space_id: String,
    pub task_id: String,
    pub correlation_id: String,
    pub related_document_ids: Vec<String>,
}

fn notes_element() -> FormElement {
    FormElement {
        name: FIELD_NOTES.into(),
        control: Control::TextArea {
            label: "Notes".into(),
        },
        is_value_required: false,
    }
}

fn button(text: &str, value: &str, confirm: bool) -> Button {
    Button {
        text: text.into(),
        value: value.into(),
        requires_confirmation: confirm,
    }
}

impl Interruption {
    /// The interruption a manual intervention step raises.
    pub fn manual(at: Raised, title: &str, instructions: &str, team_ids: Vec<String>) -> Self {
        let values = [FIELD_INSTRUCTIONS, FIELD_NOTES, FIELD_RESULT]
            .into_iter()
            .map(|k| (k.to_owned(), None))
            .collect();
        Interruption {
            title: title.to_owned(),
            kind: InterruptionKind::ManualIntervention,
            responsible_team_ids: team_ids,
            form: Form {
                values,
                elements: vec![
                    FormElement {
                        name: FIELD_INSTRUCTIONS.into(),
                        control: Control::Paragraph {
                            text: instructions.to_owned(),
                            resolve_links: false,
                        },
                        is_value_required: false,
                    },
                    notes_element(),
                    FormElement {
                        name: FIELD_RESULT.into(),
                        control: Control::SubmitButtonGroup {
                            buttons: vec![
                                button("Proceed", "Proceed", false),
                                button("Abort", "Abort", true),
                            ],
                        },
                        is_value_required: true,
                    },
                ],
            },
            ..Interruption::raised(at)
        }
    }

    /// The interruption a failed action raises under guided failure.
    pub fn guided_failure(at: Raised, title: &str, explanation: &str) -> Self {
        let values = [FIELD_NOTES, FIELD_GUIDANCE]
            .into_iter()
            .map(|k| (k.to_owned(), None))
            .collect();
        Interruption {
            title: title.to_owned(),
            kind: InterruptionKind::GuidedFailure,
            form: Form {
                values,
                elements: vec![
                    FormElement {
                        name: FIELD_INSTRUCTIONS.into(),
                        control: Control::Paragraph {
                            text: explanation.to_owned(),
                            resolve_links: false,
                        },
                        is_value_required: false,
                    },
                    notes_element(),
                    FormElement {
                        name: FIELD_GUIDANCE.into(),
                        control: Control::SubmitButtonGroup {
                            buttons: vec![
                                button("Fail", "Fail", true),
                                button("Retry", "Retry", false),
                                button("Ignore", "Ignore", true),
                            ],
                        },
                        is_value_required: true,
                    },
                ],
            },
            ..Interruption::raised(at)
        }
    }

    fn raised(at: Raised) -> Self {
        Interruption {
            space_id: at.space_id,
            task_id: at.task_id,
            correlation_id: at.correlation_id,
            related_document_ids: at.related_document_ids,
            created: Some(Timestamp::now()),
            is_pending: true,
            ..Default::default()
        }
    }

    /// The field a submission's decision goes in.
    pub fn decision_field(&self) -> &'static str {
        match self.kind {
            InterruptionKind::ManualIntervention => FIELD_RESULT,
            InterruptionKind::GuidedFailure => FIELD_GUIDANCE,
        }
    }

    /// The decision recorded in the form, once submitted.
    pub fn decision(&self) -> Option<Decision> {
        let value = self.value(self.decision_field())?;
        parse_decision(self.kind, value).ok()
    }

    pub fn notes(&self) -> Option<&str> {
        self.value(FIELD_NOTES).filter(|n| !n.trim().is_empty())
    }

    fn value(&self, field: &str) -> Option<&str> {
        self.form.values.get(field).and_then(|v| v.as_deref())
    }

    /// Checks a submitted form (field names case-insensitive, unknown fields
    /// ignored, as Octopus clients send the whole form back).
    pub fn check_submission(&self, values: &Map<String, Value>) -> Result<Submission, String> {
        let get = |field: &str| {
            values
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(field))
                .map(|(_, v)| v)
        };
        let text = |v: &Value| match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        let field = self.decision_field();
        let decision = match get(field).and_then(text) {
            Some(v) if !v.trim().is_empty() => parse_decision(self.kind, v.trim())?,
            _ => {
                return Err(format!(
                    "{field} is required: {}",
                    match self.kind {
                        InterruptionKind::ManualIntervention => "Proceed or Abort",
                        InterruptionKind::GuidedFailure => "Retry, Ignore or Fail",
                    }
                ))
            }
        };
        let notes = get(FIELD_NOTES).and_then(text).filter(|n| !n.is_empty());
        Ok(Submission { decision, notes })
    }

    /// Records a submission made by `username`.
    pub fn submit(&mut self, submission: &Submission, user_id: &str, username: &str) {
        self.form.values.insert(
            self.decision_field().to_owned(),
            Some(submission.decision.as_str().to_owned()),
        );
        self.form
            .values
            .insert(FIELD_NOTES.to_owned(), submission.notes.clone());
        self.responsible_user_id = Some(user_id.to_owned());
        self.last_modified_by = Some(username.to_owned());
        self.last_modified_on = Some(Timestamp::now());
        self.is_pending = false;
    }

    /// Closes it unanswered (the task was cancelled, or its server stopped).
    pub fn close(&mut self, reason: &str) {
        self.form
            .values
            .insert(FIELD_NOTES.to_owned(), Some(reason.to_owned()));
        self.last_modified_on = Some(Timestamp::now());
        self.is_pending = false;
    }
}

/// A checked submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub decision: Decision,
    pub notes: Option<String>,
}

fn parse_decision(kind: InterruptionKind, value: &str) -> Result<Decision, String> {
    let is = |s: &str| value.eq_ignore_ascii_case(s);
    match kind {
        InterruptionKind::ManualIntervention if is("Proceed") => Ok(Decision::Proceed),
        InterruptionKind::ManualIntervention if is("Abort") => Ok(Decision::Abort),
        InterruptionKind::ManualIntervention => Err(format!(
            "'{value}' is not a result of a manual intervention: use Proceed or Abort"
        )),
        InterruptionKind::GuidedFailure if is("Retry") => Ok(Decision::Retry),
        InterruptionKind::GuidedFailure if is("Ignore") => Ok(Decision::Ignore),
        InterruptionKind::GuidedFailure if is("Fail") || is("Abort") => Ok(Decision::Fail),
        InterruptionKind::GuidedFailure if is("Exclude") => Err(
            "Exclude is not available: the failed action ran on the built-in worker, not on a deployment target"
                .into(),
        ),
        InterruptionKind::GuidedFailure => Err(format!(
            "'{value}' is not failure guidance: use Retry, Ignore or Fail"
        )),
    }
}

/// Whether a deployment runs in guided failure mode: what the request says,
/// else the project's `DefaultGuidedFailureMode` (`On`, `Off`), else
/// (`EnvironmentDefault`, or anything else) the environment's setting.
pub fn resolve_guided_failure(
    requested: Option<bool>,
    project_mode: &str,
    environment_default: bool,
) -> bool {
    requested.unwrap_or_else(|| match project_mode.trim() {
        m if m.eq_ignore_ascii_case("On") => true,
        m if m.eq_ignore_ascii_case("Off") => false,
        _ => environment_default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn manual_form_has_octopus_shape() {
        let i = Interruption::manual(Raised::default(), "Approve", "Check it", vec![]);
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["Form"]["Elements"][0]["Control"]["Type"], "Paragraph");
        assert_eq!(v["Form"]["Elements"][0]["Control"]["Text"], "Check it");
        assert_eq!(
            v["Form"]["Elements"][2]["Control"]["Buttons"][1]["Value"],
            "Abort"
        );
        assert_eq!(v["Form"]["Values"]["Result"], Value::Null);
        assert_eq!(v["IsPending"], true);
        assert_eq!(v["Type"], "ManualIntervention");
        let back: Interruption = serde_json::from_value(v).unwrap();
        assert_eq!(back, i);
    }

    #[test]
    fn submissions_are_checked() {
        let mut i = Interruption::manual(Raised::default(), "t", "x", vec![]);
        assert!(i.check_submission(&values(json!({"Notes": "n"}))).is_err());
        assert!(i
            .check_submission(&values(json!({"Result": "Retry"})))
            .is_err());
        let s = i
            .check_submission(&values(
                json!({"Instructions": null, "notes": "ok", "result": "proceed"}),
            ))
            .unwrap();
        assert_eq!(s.decision, Decision::Proceed);
        i.submit(&s, "Users-1", "admin");
        assert!(!i.is_pending);
        assert_eq!(i.decision(), Some(Decision::Proceed));
        assert_eq!(i.notes(), Some("ok"));

        let g = Interruption::guided_failure(Raised::default(), "t", "x");
        for (given, want) in [
            ("Retry", Decision::Retry),
            ("ignore", Decision::Ignore),
            ("Fail", Decision::Fail),
            ("Abort", Decision::Fail),
        ] {
            let s = g
                .check_submission(&values(json!({ "Guidance": given })))
                .unwrap();
            assert_eq!(s.decision, want);
        }
        assert!(g
            .check_submission(&values(json!({"Guidance": "Exclude"})))
            .is_err());
        assert!(g
            .check_submission(&values(json!({"Result": "Proceed"})))
            .is_err());
    }

    #[test]
    fn guided_failure_mode() {
        assert!(resolve_guided_failure(Some(true), "Off", false));
        assert!(!resolve_guided_failure(Some(false), "On", true));
        assert!(resolve_guided_failure(None, "On", false));
        assert!(!resolve_guided_failure(None, "Off", true));
        assert!(resolve_guided_failure(None, "EnvironmentDefault", true));
        assert!(!resolve_guided_failure(None, "", false));
    }
}
