// Drives a running Cuttle server with the official Octopus Deploy TypeScript
// client, the way a CI pipeline does: resolve the space, model a project,
// create a release and a deployment through the executions API, and wait for
// the task with the client's own task waiter.
import {
  Client,
  DeploymentProcessRepository,
  DeploymentRepository,
  EnvironmentRepository,
  LifecycleRepository,
  ProjectGroupRepository,
  ProjectRepository,
  ReleaseRepository,
  ServerTaskWaiter,
  SpaceRepository,
} from "@octopusdeploy/api-client";

const instanceURL = process.env.CUTTLE_URL;
const apiKey = process.env.CUTTLE_API_KEY;
if (!instanceURL || !apiKey) {
  console.error("compat: set CUTTLE_URL and CUTTLE_API_KEY");
  process.exit(2);
}

const spaceName = "Default";
const suffix = Date.now().toString(36);
const stage = (text) => console.log(`compat: ${text}`);
const check = (ok, text) => {
  if (!ok) throw new Error(text);
};

const logging = {
  debug: () => {},
  info: (m) => console.log(`client: ${m}`),
  warn: (m) => console.log(`client warning: ${m}`),
  error: (m, e) => console.log(`client error: ${m} ${e ?? ""}`),
};

async function main() {
  const client = await Client.create({ instanceURL, apiKey, userAgentApp: "cuttle-compat-test", logging });
  stage("connected");

  const spaces = await new SpaceRepository(client).list({ partialName: spaceName, skip: 0, take: 2147483647 });
  const space = spaces.Items.find((s) => s.Name === spaceName);
  check(space && space.Id === "Spaces-1", `the Default space resolves to Spaces-1, got ${JSON.stringify(space)}`);
  stage(`space ${space.Id}`);

  const environment = await new EnvironmentRepository(client, spaceName).create({ Name: `CI ${suffix}` });
  check(environment.Id?.startsWith("Environments-"), `environment created: ${JSON.stringify(environment)}`);
  stage(`environment ${environment.Id}`);

  const groups = await new ProjectGroupRepository(client, spaceName).list({ take: 2147483647 });
  const lifecycles = await new LifecycleRepository(client, spaceName).list({ take: 2147483647 });
  const group = groups.Items.find((g) => g.Name === "Default Project Group");
  const lifecycle = lifecycles.Items.find((l) => l.Name === "Default Lifecycle");
  check(group && lifecycle, "the default project group and lifecycle exist");

  const projects = new ProjectRepository(client, spaceName);
  const project = await projects.create({
    Name: `Compat ${suffix}`,
    Description: "created by the Octopus client",
    ProjectGroupId: group.Id,
    LifecycleId: lifecycle.Id,
  });
  check(project.Id?.startsWith("Projects-"), `project created: ${JSON.stringify(project)}`);
  stage(`project ${project.Id}`);

  const processes = new DeploymentProcessRepository(client, spaceName);
  const process_ = await processes.get(project);
  process_.Steps = [
    {
      Id: "",
      Name: "Say hello",
      Condition: "Success",
      StartTrigger: "StartAfterPrevious",
      PackageRequirement: "LetOctopusDecide",
      Properties: { "Octopus.Action.TargetRoles": "" },
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
          Properties: {
            "Octopus.Action.RunOnServer": "true",
            "Octopus.Action.Script.ScriptSource": "Inline",
            "Octopus.Action.Script.Syntax": "Bash",
            "Octopus.Action.Script.ScriptBody": 'echo "hello from octopus client"',
          },
        },
      ],
    },
  ];
  const updated = await processes.update(project, process_);
  check(updated.Steps.length === 1 && updated.Steps[0].Id !== "", "the process was saved with ids assigned");
  stage(`process version ${updated.Version}`);

  const release = await new ReleaseRepository(client, spaceName).create({
    spaceName,
    ProjectName: project.Name,
  });
  check(release.ReleaseVersion === "0.0.1", `a first release without a version is 0.0.1, got ${release.ReleaseVersion}`);
  stage(`release ${release.ReleaseId} ${release.ReleaseVersion}`);

  const deployment = await new DeploymentRepository(client, spaceName).create({
    spaceName,
    ProjectName: project.Name,
    ReleaseVersion: release.ReleaseVersion,
    EnvironmentNames: [environment.Name],
  });
  const taskId = deployment.DeploymentServerTasks[0].ServerTaskId;
  stage(`deployment ${deployment.DeploymentServerTasks[0].DeploymentId} as ${taskId}`);

  const waiter = new ServerTaskWaiter(client, spaceName);
  const task = await waiter.waitForServerTaskToComplete(taskId, 200, 60000, (t) =>
    console.log(`compat: task ${t.Id} is ${t.State}`),
  );
  check(task.State === "Success", `the deployment succeeded, got ${task.State}: ${task.ErrorMessage ?? ""}`);
  stage(`task ${task.Id} finished ${task.State}`);
}

main().then(
  () => console.log("compat: 1 passed, 0 failed"),
  (e) => {
    console.error(`compat: FAILED: ${e?.stack ?? e}`);
    if (e?.ErrorMessage) console.error(`server said: ${e.ErrorMessage} ${JSON.stringify(e.Errors ?? [])}`);
    process.exit(1);
  },
);
