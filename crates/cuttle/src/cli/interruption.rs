//! `cuttle interruption list|proceed|abort|retry|ignore`: answering manual
//! interventions and guided failures from a terminal, through the same
//! interruptions API the portal uses.

use super::api::Api;
use super::Connection;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::io::Write;

#[derive(clap::Subcommand, Debug)]
pub enum InterruptionCommand {
    /// List interruptions waiting for an answer (all, with --all)
    List {
        /// Only those of this task (ServerTasks-N) or deployment
        #[arg(long, value_name = "ID")]
        regarding: Option<String>,
        /// Include answered ones
        #[arg(long)]
        all: bool,
    },
    /// Let a manual intervention go ahead
    Proceed(Answer),
    /// Stop at a manual intervention, or fail the step of a guided failure
    Abort(Answer),
    /// Run a failed action again (guided failure)
    Retry(Answer),
    /// Carry on as if a failed action had succeeded (guided failure)
    Ignore(Answer),
}

#[derive(clap::Args, Debug)]
pub struct Answer {
    /// The interruption (Interruptions-N)
    #[arg(value_name = "INTERRUPTION_ID")]
    id: String,
    /// A note for the task log: why
    #[arg(long, default_value = "")]
    notes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    items: Vec<Interruption>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Interruption {
    id: String,
    title: String,
    is_pending: bool,
    task_id: Option<String>,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    form: Form,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Form {
    values: serde_json::Map<String, serde_json::Value>,
    elements: Vec<serde_json::Value>,
}

impl Form {
    /// The text the step gives the person answering (a Paragraph element).
    fn instructions(&self) -> Option<&str> {
        self.elements
            .iter()
            .find(|e| e["Name"] == "Instructions")
            .and_then(|e| e["Control"]["Text"].as_str())
    }
}

pub(crate) async fn run(
    conn: &Connection,
    cmd: InterruptionCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    let api = Api::new(conn)?;
    let space = api.space_id(&conn.space).await?;
    let (answer, field, value) = match cmd {
        InterruptionCommand::List { regarding, all } => {
            let mut query = vec![("take", "100".to_owned())];
            if !all {
                query.push(("pendingOnly", "true".into()));
            }
            if let Some(r) = regarding {
                query.push(("regarding", r));
            }
            let page: Page = api
                .send(
                    api.request(Method::GET, &["api", &space, "interruptions"])
                        .query(&query),
                )
                .await?;
            if page.items.is_empty() {
                writeln!(out, "No interruptions are waiting.")?;
            }
            for i in page.items {
                let state = if i.is_pending { "waiting" } else { "answered" };
                writeln!(
                    out,
                    "{}  {}  {} ({state}{})",
                    i.id,
                    i.kind.as_deref().unwrap_or("Interruption"),
                    i.title,
                    i.task_id.map(|t| format!(", task {t}")).unwrap_or_default()
                )?;
                if let Some(text) = i.form.instructions() {
                    writeln!(out, "    {text}")?;
                }
            }
            return Ok(0);
        }
        InterruptionCommand::Proceed(a) => (a, "Result", "Proceed"),
        InterruptionCommand::Abort(a) => (a, "Abort", "Abort"),
        InterruptionCommand::Retry(a) => (a, "Guidance", "Retry"),
        InterruptionCommand::Ignore(a) => (a, "Guidance", "Ignore"),
    };
    // Abort means Result=Abort for a manual step and Guidance=Fail for a
    // guided failure: the interruption's form says which it is.
    let (field, value) = if field == "Abort" {
        let i: Interruption = api
            .send(api.request(Method::GET, &["api", &space, "interruptions", &answer.id]))
            .await?;
        if i.form.values.contains_key("Guidance") {
            ("Guidance", "Fail")
        } else {
            ("Result", "Abort")
        }
    } else {
        (field, value)
    };
    let body = json!({ "Notes": answer.notes, field: value });
    let answered: Interruption = api
        .post(
            &["api", &space, "interruptions", &answer.id, "submit"],
            &body,
        )
        .await?;
    writeln!(out, "{}: {value} ({})", answered.id, answered.title)?;
    Ok(0)
}
