//! `cuttle-bench vars`: throughput of the variable engine, in process.
//!
//! A deterministic project of 2,000 variable values scoped across 10
//! environments, 100 machines and 5 roles, and a ~50 KB config template that
//! uses them (nested references, filters, JSON paths, `#{if}`, `#{each}`).
//! Each run resolves and renders the template once per machine; the floor is
//! a plain copy of the same output bytes.

use std::hint::black_box;
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use cuttle_model::{Variable, VariableScope};
use cuttle_vars::scope::{self, ScopeContext};
use cuttle_vars::{render, PreparedTemplate, RenderOptions, VariableDictionary};

use crate::{ms, Stats};

const ENVIRONMENTS: usize = 10;
const MACHINES: usize = 100;
const ROLES: [&str; 5] = ["web", "api", "worker", "db", "cache"];
const VARIABLES: usize = 2_000;
const TEMPLATE_BYTES: usize = 50 * 1024;

/// Names of each kind; their value counts add up to `VARIABLES`.
const ENV_NAMES: usize = 60; // x 10 environments = 600 values
const MACHINE_NAMES: usize = 4; // x 100 machines = 400 values
const ROLE_NAMES: usize = 40; // x 5 roles = 200 values
const JSON_NAMES: usize = 20;
const SERVICES: [&str; 4] = ["orders", "billing", "search", "auth"];

#[derive(clap::Args)]
pub struct VarsArgs {
    /// Timed runs over all 100 machines (after one untimed warm-up).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Print the config rendered for machine N (0-99) instead of timing.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..MACHINES as i64))]
    show: Option<u16>,
}

pub fn run(args: &VarsArgs) -> Result<()> {
    let variables = variables();
    ensure!(
        variables.len() == VARIABLES,
        "generated {} variables, not {VARIABLES}",
        variables.len()
    );
    let template = template();
    let contexts: Vec<ScopeContext> = (0..MACHINES).map(context).collect();
    if let Some(n) = args.show {
        let dict = scope::resolve(&variables, &contexts[usize::from(n)]);
        print!("{}", render(&template, &dict)?.text.unwrap_or_default());
        return Ok(());
    }

    // The warm-up also checks that the engine really evaluated the template:
    // timing a render that echoed its tokens back would measure nothing.
    let mut outputs = Vec::with_capacity(MACHINES);
    let mut unresolved = Vec::new();
    for ctx in &contexts {
        let dict = scope::resolve(&variables, ctx);
        let rendered = render(&template, &dict)?;
        if let Some(e) = rendered.parse_error {
            bail!("the benchmark's template does not parse: {e}");
        }
        unresolved.extend(rendered.unresolved);
        outputs.push(rendered.text.unwrap_or_default());
    }
    let output_bytes: usize = outputs.iter().map(String::len).sum();
    println!(
        "cuttle-bench vars: {VARIABLES} variable values, {ENVIRONMENTS} environments, \
         {MACHINES} machines, template {:.1} KB, output {:.1} KB per machine (mean), {} runs",
        template.len() as f64 / 1024.0,
        output_bytes as f64 / MACHINES as f64 / 1024.0,
        args.runs
    );
    if !unresolved.is_empty() {
        unresolved.sort();
        unresolved.dedup();
        println!(
            "warning: {} distinct tokens were left unresolved, e.g. {:?}",
            unresolved.len(),
            &unresolved[..unresolved.len().min(5)]
        );
    }

    let mut resolve_ms = Vec::new();
    let mut render_ms = Vec::new();
    let mut machine_ms = Vec::new();
    let mut run_ms = Vec::new();
    let mut parse_ms = Vec::new();
    let mut copy_run_ms = Vec::new();
    for _ in 0..args.runs {
        // A deployment parses the file once and renders it for every machine.
        let t0 = Instant::now();
        let prepared = PreparedTemplate::new(black_box(&template), &RenderOptions::default());
        let mut run = t0.elapsed();
        parse_ms.push(ms(run));
        for ctx in &contexts {
            let t0 = Instant::now();
            let dict: VariableDictionary = scope::resolve(black_box(&variables), black_box(ctx));
            let t1 = Instant::now();
            let rendered = prepared.render(&dict)?;
            let t2 = Instant::now();
            black_box(rendered);
            resolve_ms.push(ms(t1 - t0));
            render_ms.push(ms(t2 - t1));
            machine_ms.push(ms(t2 - t0));
            run += t2 - t0;
        }
        run_ms.push(ms(run));

        // Timed as a batch: one copy is a few microseconds, near the clock's resolution.
        let t0 = Instant::now();
        for out in &outputs {
            black_box(black_box(out.as_str()).to_owned());
        }
        copy_run_ms.push(ms(t0.elapsed()));
    }

    let parse = Stats::of(parse_ms);
    let resolve = Stats::of(resolve_ms);
    let render = Stats::of(render_ms);
    let machine = Stats::of(machine_ms);
    let run = Stats::of(run_ms);
    let copy = Stats::of(copy_run_ms);
    let per_template = |run_ms: f64| run_ms / MACHINES as f64;
    let templates_per_s = |run_ms: f64| MACHINES as f64 / (run_ms / 1000.0);
    let mb_per_s = |run_ms: f64| output_bytes as f64 / 1e6 / (run_ms / 1000.0);

    let row = |what: &str, value: String| println!("{what:<36} {value}");
    row(
        "parse, once per run, median/p95",
        format!("{:8.3} / {:.3} ms", parse.median, parse.p95),
    );
    row(
        "resolve, per machine, median/p95",
        format!("{:8.3} / {:.3} ms", resolve.median, resolve.p95),
    );
    row(
        "render, per machine, median/p95",
        format!("{:8.3} / {:.3} ms", render.median, render.p95),
    );
    row(
        "resolve+render, per machine, med/p95",
        format!("{:8.3} / {:.3} ms", machine.median, machine.p95),
    );
    row(
        "100 machines, per run, median/p95",
        format!("{:8.1} / {:.1} ms", run.median, run.p95),
    );
    // Throughput from the median run and from the p95 (slow) run.
    row(
        "templates/s, median/p95 run",
        format!(
            "{:8.0} / {:.0}",
            templates_per_s(run.median),
            templates_per_s(run.p95)
        ),
    );
    row(
        "output MB/s (1e6 B), median/p95 run",
        format!("{:8.1} / {:.1}", mb_per_s(run.median), mb_per_s(run.p95)),
    );
    row(
        "plain copy, per template, median/p95",
        format!(
            "{:8.4} / {:.4} ms",
            per_template(copy.median),
            per_template(copy.p95)
        ),
    );
    row(
        "plain copy MB/s, median/p95 run",
        format!("{:8.1} / {:.1}", mb_per_s(copy.median), mb_per_s(copy.p95)),
    );
    row(
        "render / copy (median)",
        format!("{:8.1}x", render.median / per_template(copy.median)),
    );
    row(
        "resolve+render / copy (median)",
        format!("{:8.1}x", machine.median / per_template(copy.median)),
    );
    Ok(())
}

fn environment(i: usize) -> String {
    format!("Env-{i:02}")
}

fn machine(i: usize) -> String {
    format!("machine-{i:03}")
}

/// Machine `i` is in environment `i % 10` and has one or two roles.
fn roles(i: usize) -> Vec<String> {
    let mut roles = vec![ROLES[i % ROLES.len()].to_owned()];
    let second = ROLES[(i / ROLES.len()) % ROLES.len()];
    if !roles.iter().any(|r| r == second) {
        roles.push(second.to_owned());
    }
    roles
}

fn context(i: usize) -> ScopeContext {
    ScopeContext {
        environment: vec![environment(i % ENVIRONMENTS)],
        machine: vec![machine(i)],
        roles: roles(i),
        ..ScopeContext::default()
    }
}

fn var(name: String, value: String, scope: VariableScope) -> Variable {
    Variable {
        name,
        value: Some(value),
        scope,
        ..Variable::default()
    }
}

fn setting(k: usize) -> String {
    format!("App.Setting{k:03}")
}

fn variables() -> Vec<Variable> {
    let mut vars = Vec::with_capacity(VARIABLES);
    let unscoped = VARIABLES
        - ENV_NAMES * ENVIRONMENTS
        - MACHINE_NAMES * MACHINES
        - ROLE_NAMES * ROLES.len()
        - JSON_NAMES
        - 1
        - 2 * SERVICES.len();
    for k in 0..unscoped {
        // Mostly plain text of varied length; some reference a later setting
        // (so there are no cycles), a few through a filter.
        let value = match k % 13 {
            3 if k + 1 < unscoped => format!("#{{{}}}/data", setting(k + 1)),
            7 if k + 5 < unscoped => format!("prefix-#{{{} | ToUpper}}", setting(k + 5)),
            9 => format!(
                "#{{Env.Opt{:02}}}:#{{Role.Opt{:02}}}",
                k % ENV_NAMES,
                k % ROLE_NAMES
            ),
            _ => format!("value-{k}-{}", "x".repeat(k * 37 % 50)),
        };
        vars.push(var(setting(k), value, VariableScope::default()));
    }
    for n in 0..JSON_NAMES {
        let value = format!(
            r#"{{"Host":"db-{n}.internal","Port":{},"Options":{{"Pool":{},"Ssl":true}},"Tags":["primary","zone-{}"]}}"#,
            5432 + n,
            10 + n,
            n % 3
        );
        vars.push(var(
            format!("App.Json{n:02}"),
            value,
            VariableScope::default(),
        ));
    }
    vars.push(var(
        "App.Endpoints".into(),
        "alpha,beta,gamma,delta,epsilon".into(),
        VariableScope::default(),
    ));
    for (s, service) in SERVICES.iter().enumerate() {
        vars.push(var(
            format!("Service[{service}].Port"),
            (8000 + s).to_string(),
            VariableScope::default(),
        ));
        vars.push(var(
            format!("Service[{service}].Url"),
            format!("https://#{{Env.Opt{:02}}}.example/{service}", s + 1),
            VariableScope::default(),
        ));
    }
    for k in 0..ENV_NAMES {
        for e in 0..ENVIRONMENTS {
            // Env.Opt00 is the feature flag of the template's `#{if}`.
            let value = if k == 0 {
                if e % 2 == 0 { "True" } else { "False" }.to_owned()
            } else {
                format!("{}-opt{k}", environment(e).to_lowercase())
            };
            vars.push(var(
                format!("Env.Opt{k:02}"),
                value,
                VariableScope {
                    environment: vec![environment(e)],
                    ..VariableScope::default()
                },
            ));
        }
    }
    for k in 0..MACHINE_NAMES {
        for m in 0..MACHINES {
            vars.push(var(
                format!("Machine.Opt{k}"),
                format!("{}-slot{k}", machine(m)),
                VariableScope {
                    machine: vec![machine(m)],
                    ..VariableScope::default()
                },
            ));
        }
    }
    for k in 0..ROLE_NAMES {
        for role in ROLES {
            vars.push(var(
                format!("Role.Opt{k:02}"),
                format!("{role}-role-opt{k}"),
                VariableScope {
                    role: vec![role.to_owned()],
                    ..VariableScope::default()
                },
            ));
        }
    }
    for (i, v) in vars.iter_mut().enumerate() {
        v.id = format!("Variables-{}", i + 1);
    }
    vars
}

/// An XML config file of about `TEMPLATE_BYTES`, cycling through every kind
/// of variable so that each machine's output differs.
fn template() -> String {
    let mut t = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration>\n  <appSettings>\n",
    );
    let header_end = t.len();
    let footer = concat!(
        "  </appSettings>\n",
        "#{if Env.Opt00}  <feature name=\"beta\" enabled=\"true\" owner=\"#{Machine.Opt0}\" />\n",
        "#{else}  <feature name=\"beta\" enabled=\"false\" />\n#{/if}",
        "  <endpoints>\n",
        "#{each e in App.Endpoints}    <endpoint name=\"#{e}\" index=\"#{Octopus.Template.Each.Index}\" ",
        "last=\"#{Octopus.Template.Each.Last}\" />\n#{/each}",
        "  </endpoints>\n  <services>\n",
        "#{each s in Service}    <service name=\"#{s}\" port=\"#{s.Port}\" url=\"#{s.Url}\" />\n#{/each}",
        "  </services>\n</configuration>\n",
    );
    let mut i = 0usize;
    while t.len() - header_end + footer.len() < TEMPLATE_BYTES - 200 {
        let line = match i % 10 {
            0..=3 => {
                let k = i * 7 % 700;
                format!("    <add key=\"{0}\" value=\"#{{{0}}}\" />\n", setting(k))
            }
            4 => format!(
                "    <add key=\"Env{0:02}\" value=\"#{{Env.Opt{0:02}}}\" />\n",
                i % ENV_NAMES
            ),
            5 => format!(
                "    <add key=\"Machine{0}\" value=\"#{{Machine.Opt{0}}}\" />\n",
                i % MACHINE_NAMES
            ),
            6 => format!(
                "    <add key=\"Role{0:02}\" value=\"#{{Role.Opt{0:02}}}\" />\n",
                i % ROLE_NAMES
            ),
            7 => {
                let n = i % JSON_NAMES;
                format!(
                    "    <add key=\"Db{n:02}\" value=\"Server=#{{App.Json{n:02}.Host}};Port=#{{App.Json{n:02}.Port}};Pool=#{{App.Json{n:02}.Options.Pool}};Tag=#{{App.Json{n:02}.Tags[1]}}\" />\n"
                )
            }
            8 => format!(
                "    <add key=\"Upper{0}\" value=\"#{{{0} | ToUpper}}\" />\n",
                setting(i % 700)
            ),
            _ => format!(
                "    <!-- generated for #{{Machine.Opt1}}; ##{{not a token}} -->\n    <add key=\"Html{0}\" value=\"#{{{0} | HtmlEscape}}\" />\n",
                setting(i * 3 % 700)
            ),
        };
        t.push_str(&line);
        i += 1;
    }
    t.push_str(footer);
    t
}
