//! What permission checks cost on the hot paths: the trivial deployment
//! (end to end, through the API) and the portal's dashboard, each as the
//! administrator and as a user whose Project Deployer role is narrowed to
//! one project and one environment, among other teams with roles of their
//! own. Rounds alternate, so drift in the machine's load falls on both.

use super::portal::Browser;
use super::{create_project, deploy, Api, Server, Stats};
use anyhow::{Context, Result};
use reqwest::{Client, Method};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct PermissionsArgs {
    /// Deployments timed per caller (after a warm-up each).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    deployments: u32,
    /// Dashboard fetches timed per caller.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    fetches: u32,
    /// Other teams, each with a scoped role, that every check reads past.
    #[arg(long, default_value_t = 20)]
    teams: u32,
}

const PASSWORD: &str = "scoped-bench-42";

pub async fn run(cuttle: &Path, http: &Client, args: &PermissionsArgs) -> Result<()> {
    println!(
        "cuttle-bench permissions: SQLite, {} deployments and {} dashboard fetches per caller, {} other teams",
        args.deployments, args.fetches, args.teams
    );
    let data = tempfile::Builder::new().prefix("cuttle-bench-").tempdir()?;
    let (server, _) = Server::start(cuttle, data.path(), None, http, &[]).await?;
    let admin = Api {
        http,
        base: &server.base,
    };
    create_project(&admin).await?;
    // The scoped user: Project Deployer on Bench in the Bench environment.
    let user = admin
        .call(
            Method::POST,
            "/api/users",
            Some(json!({"Username": "deployer", "Password": PASSWORD})),
        )
        .await?;
    let user_id = user["Id"].as_str().context("no user Id")?;
    let team = admin
        .call(
            Method::POST,
            "/api/teams",
            Some(json!({"Name": "developers", "SpaceId": "Spaces-1", "MemberUserIds": [user_id]})),
        )
        .await?;
    let project = admin
        .call(Method::GET, "/api/Spaces-1/projects/Bench", None)
        .await?;
    let env = admin
        .call(Method::GET, "/api/Spaces-1/environments?name=Bench", None)
        .await?;
    admin
        .call(
            Method::POST,
            "/api/scopeduserroles",
            Some(
                json!({"TeamId": team["Id"], "UserRoleId": "userroles-projectdeployer",
                "SpaceId": "Spaces-1", "ProjectIds": [project["Id"]],
                "EnvironmentIds": [env["Items"][0]["Id"]]}),
            ),
        )
        .await?;
    for i in 0..args.teams {
        let t = admin
            .call(
                Method::POST,
                "/api/teams",
                Some(json!({"Name": format!("team {i}"), "SpaceId": "Spaces-1"})),
            )
            .await?;
        admin
            .call(
                Method::POST,
                "/api/scopeduserroles",
                Some(json!({"TeamId": t["Id"], "UserRoleId": "userroles-projectviewer", "SpaceId": "Spaces-1"})),
            )
            .await?;
    }
    let key = admin
        .call(
            Method::POST,
            &format!("/api/users/{user_id}/apikeys"),
            Some(json!({"Purpose": "bench"})),
        )
        .await?;
    let key = key["ApiKey"].as_str().context("no ApiKey")?;
    let scoped_http = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .default_headers(
            [("X-Octopus-ApiKey".parse()?, key.parse()?)]
                .into_iter()
                .collect(),
        )
        .build()?;
    let scoped = Api {
        http: &scoped_http,
        base: &server.base,
    };
    deploy(&admin).await.context("warm-up deployment")?;
    deploy(&scoped)
        .await
        .context("warm-up deployment as the scoped user")?;

    let (mut as_admin, mut as_scoped) = (vec![], vec![]);
    for _ in 0..args.deployments {
        as_admin.push(deploy(&admin).await?.e2e);
        as_scoped.push(deploy(&scoped).await?.e2e);
    }
    report("trivial deployment e2e", as_admin, as_scoped);

    let admin_page = Browser::sign_in(&server.base).await?;
    let scoped_page = Browser::sign_in_as(&server.base, "deployer", PASSWORD).await?;
    admin_page.get("/").await?;
    scoped_page.get("/").await?;
    let (mut as_admin, mut as_scoped) = (vec![], vec![]);
    for _ in 0..args.fetches {
        for (browser, into) in [(&admin_page, &mut as_admin), (&scoped_page, &mut as_scoped)] {
            let t0 = Instant::now();
            browser.get("/").await?;
            into.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    report("dashboard page", as_admin, as_scoped);
    Ok(())
}

fn report(what: &str, admin: Vec<f64>, scoped: Vec<f64>) {
    let (a, s) = (Stats::of(admin), Stats::of(scoped));
    println!(
        "{what:<24} administrator median {:6.2} ms p95 {:6.2} ms | scoped user median {:6.2} ms p95 {:6.2} ms | scoped/admin {:5.3}x",
        a.median,
        a.p95,
        s.median,
        s.p95,
        s.median / a.median
    );
}
