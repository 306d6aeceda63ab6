// Drives a running Cuttle server with the official Octopus Deploy TypeScript
// client the way a CI pipeline does: resolve the space by name, model an
// environment and a project with a script step, create a release and deploy
// it through the executions API, and wait with the client's own task waiter.
//
//   CUTTLE_URL=http://127.0.0.1:8080 CUTTLE_API_KEY=API-... node flow.mjs
//
// Prints `compat: 1 passed, 0 failed` and exits 0 when the deployment
// succeeds; exits 1 with the reason otherwise.

// The package is CommonJS: its default export is the reliable way to reach
// every named export from an ES module.
import octopus from "@octopusdeploy/api-client";

const {
  BasicRepository,
  Client,
  DeploymentProcessRepository,
  DeploymentRepository,
  EnvironmentRepository,
  LifecycleRepository,
  ProjectGroupRepository,
  ProjectRepository,
  ReleaseRepository,
  ServerTaskWaiter,
  SpaceServerTaskRepository,
  resolveSpaceId,
} = octopus;

const instanceURL = process.env.CUTTLE_URL;
const apiKey = process.env.CUTTLE_API_KEY;
if (!instanceURL || !apiKey) {
  console.error("compat: FAILED: set CUTTLE_URL and CUTTLE_API_KEY");
  process.exit(1);
}

const spaceName = "Default";
const greeting = "hello from octopus client";
// Unique names, so the flow can run again against the same server.
const suffix = Date.now().toString();
const taskTimeoutMs = 120_000;

const stage = (text) => console.log(`compat: ${text}`);
// A failed expectation is reported by its text alone, without a stack.
class Mismatch extends Error {}
function check(ok, text) {
  if (!ok) throw new Mismatch(text);
}

// A hung request must fail the run rather than hold up whoever runs it.
setTimeout(() => fail(new Error("the flow did not finish within 5 minutes")), 300_000).unref();

// The client reports resolution problems and retries through this logger.
const logging = {
  debug: () => {},
  info: (m) => console.log(`client: ${m}`),
  warn: (m) => console.log(`client warning: ${m}`),
  error: (m, e) => console.log(`client error: ${m}${e ? ` ${e}` : ""}`),
};

async function main() {
  // Reads GET /api; creating releases and deployments later checks its Version.
  const client = await Client.create({ instanceURL, apiKey, userAgentApp: "cuttle-compat", logging });
  const info = await client.getServerInformation();
  stage(`connected to ${instanceURL}, server version ${info.version}`);

  const spaceId = await resolveSpaceId(client, spaceName);
  check(spaceId === "Spaces-1", `the ${spaceName} space resolves to Spaces-1, got ${spaceId}`);
  stage(`space ${spaceName} is ${spaceId}`);

  const environment = await new EnvironmentRepository(client, spaceName).create({
    Name: `Compat ${suffix}`,
    Description: "created by the Octopus client",
  });
  check(environment?.Id?.startsWith("Environments-"), `environment created: ${JSON.stringify(environment)}`);
  stage(`environment ${environment.Name} is ${environment.Id}`);

  const group = await findByName(new ProjectGroupRepository(client, spaceName), "Default Project Group");
  const lifecycle = await findByName(new LifecycleRepository(client, spaceName), "Default Lifecycle");
  stage(`project group ${group.Id}, lifecycle ${lifecycle.Id}`);

  const project = await new ProjectRepository(client, spaceName).create({
    Name: `Compat ${suffix}`,
    Description: "created by the Octopus client",
    ProjectGroupId: group.Id,
    LifecycleId: lifecycle.Id,
  });
  check(project?.Id?.startsWith("Projects-"), `project created: ${JSON.stringify(project)}`);
  stage(`project ${project.Name} is ${project.Id}`);

  const processes = new DeploymentProcessRepository(client, spaceName);
  const current = await processes.get(project);
  check(Array.isArray(current?.Steps), `the deployment process has Steps: ${JSON.stringify(current)}`);
  // The whole process goes back with its Version, as the client sends it;
  // empty ids ask the server to assign them.
  const updated = await processes.update(project, {
    ...current,
    Steps: [
      {
        Id: "",
        Name: "Say hello",
        Condition: "Success",
        StartTrigger: "StartAfterPrevious",
        PackageRequirement: "LetOctopusDecide",
        Properties: {},
        Actions: [
          {
            Id: "",
            Name: "Say hello",
            ActionType: "Octopus.Script",
            IsDisabled: false,
            IsRequired: false,
            Environments: [],
            ExcludedEnvironments: [],
            Channels: [],
            TenantTags: [],
            Packages: [],
            WorkerPoolId: null,
            Properties: {
              "Octopus.Action.RunOnServer": "true",
              "Octopus.Action.Script.ScriptSource": "Inline",
              "Octopus.Action.Script.Syntax": "Bash",
              "Octopus.Action.Script.ScriptBody": `echo "${greeting}"`,
            },
          },
        ],
      },
    ],
  });
  const step = updated?.Steps?.[0];
  check(
    updated?.Steps?.length === 1 && step.Id && step.Actions?.[0]?.Id,
    `the process was saved with ids assigned: ${JSON.stringify(updated)}`,
  );
  stage(`deployment process saved, version ${updated.Version}`);

  // No ReleaseVersion: the server picks it, 0.0.1 for a first release.
  const release = await new ReleaseRepository(client, spaceName).create({ spaceName, ProjectName: project.Name });
  check(release?.ReleaseVersion === "0.0.1", `a first release without a version is 0.0.1: ${JSON.stringify(release)}`);
  stage(`release ${release.ReleaseVersion} is ${release.ReleaseId}`);

  const deployment = await new DeploymentRepository(client, spaceName).create({
    spaceName,
    ProjectName: project.Name,
    ReleaseVersion: release.ReleaseVersion,
    EnvironmentNames: [environment.Name],
  });
  check(deployment.DeploymentServerTasks.length === 1, `one deployment per environment: ${JSON.stringify(deployment)}`);
  const { DeploymentId, ServerTaskId } = deployment.DeploymentServerTasks[0];
  stage(`deployment ${DeploymentId} runs as task ${ServerTaskId}`);

  let lastState;
  const task = await new ServerTaskWaiter(client, spaceName).waitForServerTaskToComplete(
    ServerTaskId,
    500,
    taskTimeoutMs,
    (t) => {
      if (t.State !== lastState) stage(`task ${t.Id} is ${(lastState = t.State)}`);
    },
  );
  // The waiter answers nothing, rather than failing, when it times out.
  const tasks = new SpaceServerTaskRepository(client, spaceName);
  if (task?.State !== "Success") {
    // The task log tells why; show it with the failure.
    const log = await tasks.getRaw(ServerTaskId).catch((e) => `(the log could not be read: ${e.message})`);
    throw new Mismatch(
      task
        ? `the deployment should succeed, but task ${task.Id} ended ${task.State}: ${task.ErrorMessage ?? ""}\n${log}`
        : `task ${ServerTaskId} did not complete within ${taskTimeoutMs / 1000} s (last state ${lastState})\n${log}`,
    );
  }

  // The script really ran: its output is in the task log.
  const log = await tasks.getRaw(ServerTaskId);
  check(typeof log === "string" && log.includes(greeting), `the task log shows the script output:\n${log}`);
  stage(`task ${task.Id} finished ${task.State}, and its log says "${greeting}"`);
}

// Lists with the client's own paging parameters and matches the exact name.
async function findByName(repository, name) {
  const page = await repository.list({ partialName: name, skip: 0, take: BasicRepository.TakeAll });
  const found = page?.Items?.find((item) => item.Name === name);
  check(found, `"${name}" is listed: ${JSON.stringify(page)}`);
  return found;
}

function fail(e) {
  // The client rejects with an OctopusError carrying the HTTP status; its
  // message already holds the server's ErrorMessage and each of its Errors.
  const status = e?.StatusCode ? ` (HTTP ${e.StatusCode})` : "";
  console.error(`compat: FAILED${status}: ${e?.message ?? e}`);
  if (!(e instanceof Mismatch) && !e?.StatusCode && e?.stack) console.error(e.stack);
  console.log("compat: 0 passed, 1 failed");
  process.exit(1);
}

main().then(() => {
  console.log("compat: 1 passed, 0 failed");
  process.exit(0);
}, fail);
