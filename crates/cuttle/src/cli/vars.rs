//! `cuttle vars render`: renders a template against variables from a JSON
//! file, locally, without a server. Useful to check a config transform or a
//! script before it ever reaches a deployment.
//!
//! Exit codes: 0 rendered; 1 the template could not be rendered (a cycle, a
//! parse error, or with `--strict` an unresolved token); 2 bad input (a file
//! that is missing, not JSON, or of the wrong shape).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cuttle_vars::scope::{self, ScopeContext};
use cuttle_vars::VariableDictionary;
use serde_json::Value;

#[derive(clap::Subcommand, Debug)]
pub enum VarsCommand {
    /// Render a template with variables from a JSON file and print the result
    /// exactly, adding nothing
    Render(RenderArgs),
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct RenderArgs {
    /// The variables: a JSON object of names to values, or an Octopus-style
    /// variable list (an array of {Name, Value, Scope}, or a variable set
    /// with a Variables array)
    #[arg(long, value_name = "VARS.json")]
    pub variables: PathBuf,
    /// The template to render [default: standard input]
    #[arg(value_name = "TEMPLATE_FILE")]
    pub template: Option<PathBuf>,
    /// Fail (exit 1, nothing printed) if any token is left unresolved
    #[arg(long)]
    pub strict: bool,
    /// Do not warn about tokens left unresolved
    #[arg(long, short)]
    pub quiet: bool,
    /// Pick scoped values for this environment (name or id)
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,
    /// Pick scoped values for a target with this role; repeat for several
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Pick scoped values for this deployment target (name or id)
    #[arg(long, value_name = "NAME")]
    pub machine: Option<String>,
    /// Pick scoped values for this step/action (name or id)
    #[arg(long, value_name = "NAME")]
    pub step: Option<String>,
    /// Pick scoped values for this channel (name or id)
    #[arg(long, value_name = "NAME")]
    pub channel: Option<String>,
    /// Pick scoped values for a tenant with this tag (TagSet/Tag); repeat for
    /// several
    #[arg(long = "tenant-tag", value_name = "TAG")]
    pub tenant_tags: Vec<String>,
    /// Pick scoped values for this process: the deployment process or a
    /// runbook (id)
    #[arg(long, value_name = "ID")]
    pub process: Option<String>,
}

impl RenderArgs {
    fn context(&self) -> ScopeContext {
        ScopeContext {
            environment: self.environment.iter().cloned().collect(),
            machine: self.machine.iter().cloned().collect(),
            roles: self.roles.clone(),
            step_roles: vec![],
            action: self.step.iter().cloned().collect(),
            channel: self.channel.iter().cloned().collect(),
            tenant_tags: self.tenant_tags.clone(),
            process_owner: self.process.iter().cloned().collect(),
        }
    }

    fn scoped(&self) -> bool {
        self.context() != ScopeContext::default()
    }
}

pub fn run(cmd: VarsCommand) -> i32 {
    let VarsCommand::Render(args) = cmd;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    render(
        &args,
        &mut std::io::stdin().lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

/// Why `render` stopped: bad input (exit 2) or a template that would not
/// render (exit 1).
enum Failure {
    Input(anyhow::Error),
    Render(anyhow::Error),
}

/// The whole command over explicit streams, so tests need no process.
pub fn render(
    args: &RenderArgs,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let result = rendered(args, stdin, stderr).and_then(|text| {
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .context("could not write the output")
            .map_err(Failure::Render)
    });
    // Nothing useful can be done if stderr itself is gone.
    match result {
        Ok(()) => 0,
        Err(Failure::Input(e)) => {
            let _ = writeln!(stderr, "Error: {e:#}");
            2
        }
        Err(Failure::Render(e)) => {
            let _ = writeln!(stderr, "Error: {e:#}");
            1
        }
    }
}

fn rendered(
    args: &RenderArgs,
    stdin: &mut dyn Read,
    stderr: &mut dyn Write,
) -> Result<String, Failure> {
    let variables = load_variables(args).map_err(Failure::Input)?;
    let (template, source) = match &args.template {
        Some(path) => (
            read_text(path, "template").map_err(Failure::Input)?,
            path.display().to_string(),
        ),
        None => {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("could not read the template from standard input (is it UTF-8?)")
                .map_err(Failure::Input)?;
            (text, "standard input".to_owned())
        }
    };

    let out = cuttle_vars::render(&template, &variables)
        .with_context(|| format!("could not render {source}"))
        .map_err(Failure::Render)?;
    // A template that does not parse comes back unchanged, as Octopus does;
    // say why, and with --strict refuse it.
    if let Some(e) = &out.parse_error {
        if args.strict {
            return Err(Failure::Render(anyhow::anyhow!(
                "{source} could not be parsed: {e}"
            )));
        }
        if !args.quiet {
            let _ = writeln!(
                stderr,
                "Warning: {source} could not be parsed, so it was left as written: {e}"
            );
        }
    }

    let mut unresolved: Vec<&str> = Vec::new();
    for token in &out.unresolved {
        if !unresolved.contains(&token.as_str()) {
            unresolved.push(token);
        }
    }
    if !unresolved.is_empty() {
        let list = unresolved.join(", ");
        if args.strict {
            // Nothing on stdout: a half-rendered file is worse than none.
            return Err(Failure::Render(anyhow::anyhow!(
                "{source}: {} unresolved: {list}",
                plural(unresolved.len(), "token")
            )));
        }
        if !args.quiet {
            let _ = writeln!(stderr, "Warning: {source}: left unresolved: {list}");
        }
    }
    Ok(out.text.unwrap_or_default())
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("could not read the {what} file {}", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the {what} file {} is not UTF-8 text", path.display()))
}

fn load_variables(args: &RenderArgs) -> anyhow::Result<VariableDictionary> {
    let path = &args.variables;
    let text = read_text(path, "variables")?;
    let json: Value = serde_json::from_str(&text)
        .with_context(|| format!("the variables file {} is not valid JSON", path.display()))?;
    variables_from_json(&text, &json, args)
        .with_context(|| format!("the variables file {}", path.display()))
}

/// The dictionary `json` (parsed from `text`) describes: an Octopus variable
/// list resolved for the scope the arguments select, or a plain object of
/// names to values.
fn variables_from_json(
    text: &str,
    json: &Value,
    args: &RenderArgs,
) -> anyhow::Result<VariableDictionary> {
    if scope::is_variable_list(json) {
        let list = scope::variable_list(json)?;
        let context = args.context().expanded(&list.scope_values);
        return Ok(scope::resolve(&list.variables, &context));
    }
    if !json.is_object() {
        anyhow::bail!(
            "expected an object of variable names to values, or an Octopus variable list; found {}",
            describe(json)
        );
    }
    if args.scoped() {
        // Scope options would silently do nothing: say so rather than render
        // values the user did not ask for.
        anyhow::bail!(
            "--environment, --role, --machine, --step, --channel, --tenant-tag and --process \
             pick among scoped values, but this is a plain object of names to values; \
             give an Octopus variable list (an array of {{Name, Value, Scope}}) or drop them"
        );
    }
    // Read again for the file's order, which serde_json's map does not keep;
    // the dictionary's iteration order is visible to templates.
    let Members(members) = serde_json::from_str(text)?;
    let mut dict = VariableDictionary::new();
    for (name, value) in members {
        dict.set(name, text_of(&value));
    }
    Ok(dict)
}

/// A JSON object's members in the order written.
struct Members(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// A JSON value as a variable's text: strings as they are, null as empty,
/// numbers and booleans as written, objects and arrays as compact JSON (the
/// template language reads `#{Config.Db.Host}` out of it).
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain() -> RenderArgs {
        RenderArgs::default()
    }

    fn dict(json: Value, args: &RenderArgs) -> Vec<(String, String)> {
        dict_text(&json.to_string(), args)
    }

    fn dict_text(text: &str, args: &RenderArgs) -> Vec<(String, String)> {
        let json: Value = serde_json::from_str(text).expect("JSON");
        variables_from_json(text, &json, args)
            .expect("valid variables")
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_plain_object_maps_names_to_text() {
        // In the file's order, not sorted.
        let got = dict_text(
            r#"{"Name": "World", "Port": 8080, "Ratio": 0.5, "Debug": true, "Empty": null,
                "Config": {"Db": {"Host": "db1", "Port": 5432}}, "List": [1, "a"]}"#,
            &plain(),
        );
        assert_eq!(
            got,
            pairs(&[
                ("Name", "World"),
                ("Port", "8080"),
                ("Ratio", "0.5"),
                ("Debug", "true"),
                ("Empty", ""),
                ("Config", r#"{"Db":{"Host":"db1","Port":5432}}"#),
                ("List", r#"[1,"a"]"#),
            ])
        );
    }

    #[test]
    fn a_repeated_name_keeps_its_first_place_and_last_value() {
        // Names are case-insensitive, as in templates.
        let got = dict_text(r#"{"B": "1", "A": "2", "b": "3"}"#, &plain());
        assert_eq!(got, pairs(&[("B", "3"), ("A", "2")]));
    }

    #[test]
    fn a_variable_list_is_resolved_for_the_selected_scope() {
        let list = json!([
            {"Name": "Db", "Value": "dev-db"},
            {"Name": "Db", "Value": "prod-db", "Scope": {"Environment": ["Production"]}},
            {"Name": "Db", "Value": "prod-web01", "Scope": {"Machine": ["web01"]}},
            {"Name": "Port", "Value": "80", "Scope": {"Role": ["web"]}},
        ]);
        assert_eq!(dict(list.clone(), &plain()), pairs(&[("Db", "dev-db")]));
        let prod = RenderArgs {
            environment: Some("production".into()),
            ..plain()
        };
        assert_eq!(dict(list.clone(), &prod), pairs(&[("Db", "prod-db")]));
        let web01 = RenderArgs {
            machine: Some("web01".into()),
            roles: vec!["web".into()],
            ..prod
        };
        assert_eq!(
            dict(list, &web01),
            pairs(&[("Db", "prod-web01"), ("Port", "80")])
        );
    }

    #[test]
    fn scope_values_let_names_match_id_scopes() {
        let set = json!({
            "Variables": [
                {"Name": "Db", "Value": "dev-db"},
                {"Name": "Db", "Value": "prod-db", "Scope": {"Environment": ["Environments-2"]}},
            ],
            "ScopeValues": {"Environments": [{"Id": "Environments-2", "Name": "Production"}]},
        });
        let prod = RenderArgs {
            environment: Some("Production".into()),
            ..plain()
        };
        assert_eq!(dict(set, &prod), pairs(&[("Db", "prod-db")]));
    }

    #[test]
    fn wrong_shapes_are_refused_with_a_reason() {
        let err = |json: Value, args: &RenderArgs| {
            let text = json.to_string();
            let e = variables_from_json(&text, &json, args).expect_err("refused");
            format!("{e:#}")
        };
        assert!(err(json!(42), &plain()).contains("found a number"));
        assert!(err(json!("x"), &plain()).contains("found a string"));
        assert!(err(json!([1, 2]), &plain()).contains("variable 0: expected an object"));
        let prod = RenderArgs {
            environment: Some("Production".into()),
            ..plain()
        };
        assert!(err(json!({"Name": "World"}), &prod).contains("plain object"));
        assert!(
            err(json!([{"Name": "A", "Scope": {"Tenant": ["T"]}}]), &plain())
                .contains("scope 'Tenant' is not supported")
        );
    }

    #[test]
    fn missing_and_malformed_files_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.json");
        let args = RenderArgs {
            variables: missing.clone(),
            ..plain()
        };
        let (code, _, err) = run_with(&args, "");
        assert_eq!(code, 2);
        assert!(
            err.contains("could not read the variables file") && err.contains("nope.json"),
            "{err}"
        );

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"Name\": ").expect("write");
        let args = RenderArgs {
            variables: bad,
            ..plain()
        };
        let (code, _, err) = run_with(&args, "");
        assert_eq!(code, 2);
        assert!(err.contains("bad.json is not valid JSON"), "{err}");
    }

    #[test]
    fn text_without_tokens_is_printed_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vars = dir.path().join("vars.json");
        std::fs::write(&vars, "{}").expect("write");
        let args = RenderArgs {
            variables: vars,
            ..plain()
        };
        let (code, out, err) = run_with(&args, "no tokens\r\n\n  ");
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, "no tokens\r\n\n  ", "")
        );
    }

    fn run_with(args: &RenderArgs, stdin: &str) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = render(args, &mut stdin.as_bytes(), &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }
}
