"""Local AWS for tests and the rehearsal: moto in-process, plus the pieces moto does not run.

- Lambda: moto without Docker answers every invoke with a canned reply. `route_function` sends the
  invokes of a function (boto3 `lambda.invoke`, Step Functions Lambda tasks) to our real handler,
  in-process, with the function's environment set for the call.
- Step Functions executes ASL (moto's engine), unchanged definitions.
- ECS RunTask from Step Functions (`ecs:runTask` and `ecs:runTask.sync`): moto's integration breaks on
  the response shape, and nothing runs a container here. The TaskSimulator takes its place: it
  resolves the task definition's `secrets` the way the ECS agent would, runs a registered behaviour
  (exit code, log lines) and answers with the DescribeTasks-shaped task that AWS returns.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
import uuid
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import boto3

from tootstack.errors import InvalidInput, TootstackError
from tootstack_dev.iam.record import CallRecorder, Principal, acting_as

ACCOUNT_ID = "123456789012"  # moto's default account


# --- ECS task simulation -------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    """How a simulated task ends."""

    exit_code: int | None = 0  # None: the container never started (stop_code TaskFailedToStart)
    log_lines: tuple[str, ...] | list[str] = ()
    stop_code: str = "EssentialContainerExited"
    stopped_reason: str = "Essential container in task exited"
    run_seconds: float = 0.0

    @classmethod
    def failed_to_start(cls, reason: str) -> "TaskResult":
        return cls(exit_code=None, stop_code="TaskFailedToStart", stopped_reason=reason)


@dataclass
class TaskRun:
    """One RunTask as the container would see it."""

    family: str
    task_definition_arn: str
    cluster: str
    container_name: str
    command: list[str]
    environment: dict[str, str]
    secrets: dict[str, str]
    overrides: dict[str, Any]
    task_arn: str = ""
    started_by: str = ""
    result: TaskResult | None = None


Behavior = Union[TaskResult, Callable[[TaskRun], TaskResult]]


class TaskSimulator:
    """Registered container behaviours by task definition family; a record of every run."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._behaviors: dict[str, Behavior] = {}
        self.runs: list[TaskRun] = []
        self.log_events: list[tuple[str, str, str]] = []  # (log group, log stream, message)
        self._lock = threading.Lock()
        self.recorder: CallRecorder | None = None  # the harness's IAM call recorder, when there is one

    def on(self, family: str, behavior: Behavior) -> None:
        """What a task of `family` (name, or family of a task definition ARN) does when run."""
        self._behaviors[family] = behavior

    @contextmanager
    def behaving(self, family: str, behavior: Behavior) -> Iterator[None]:
        """`on(family, behavior)` for the block only; the previous behaviour (or none) is put back after."""
        previous = self._behaviors.get(family)
        self._behaviors[family] = behavior
        try:
            yield
        finally:
            if previous is None:
                self._behaviors.pop(family, None)
            else:
                self._behaviors[family] = previous

    def run_task(self, params: dict[str, Any]) -> dict[str, Any]:
        """Run a task for an ecs:RunTask call (boto3 parameter names); returns the stopped task
        in DescribeTasks shape (camelCase, as boto3 returns it)."""
        ecs = boto3.client("ecs", region_name=self.region)
        taskdef = ecs.describe_task_definition(taskDefinition=params["taskDefinition"])["taskDefinition"]
        cluster = params.get("cluster", "default")
        container = _essential_container(taskdef)
        overrides = params.get("overrides") or {}
        container_override = next(
            (o for o in overrides.get("containerOverrides", []) if o.get("name") == container["name"]), {}
        )
        environment = {e["name"]: e["value"] for e in container.get("environment", [])}
        environment.update({e["name"]: e["value"] for e in container_override.get("environment", [])})
        command = list(container_override.get("command") or container.get("command") or [])
        run = TaskRun(
            family=taskdef["family"],
            task_definition_arn=taskdef["taskDefinitionArn"],
            cluster=cluster,
            container_name=container["name"],
            command=command,
            environment=environment,
            secrets={},
            overrides=overrides,
            started_by=params.get("startedBy", ""),
        )
        # What RunTask validates before placing the task: the cluster, and the network for awsvpc.
        clusters = ecs.describe_clusters(clusters=[cluster])["clusters"]
        if not clusters or clusters[0].get("status") != "ACTIVE":
            raise TootstackError(f"RunTask failed: ClusterNotFoundException: cluster {cluster} not found")
        cluster_arn = clusters[0]["clusterArn"]
        if taskdef.get("networkMode") == "awsvpc":
            self._check_network(params.get("networkConfiguration"))
        run.task_arn = f"{cluster_arn.replace(':cluster/', ':task/')}/{uuid.uuid4().hex}"
        # What the ECS agent does with the task's execution role: pull the image, fetch the secrets, and
        # (below) write the container's logs.
        # (moto's CloudFormation drops a task definition's roles: an empty role is resolved from the family.)
        agent = Principal("task-execution", run.family, taskdef.get("executionRoleArn", ""))
        self._record_image_pull(agent, container.get("image", ""))
        try:
            with acting_as(agent):
                run.secrets = self._resolve_secrets(container)
            with acting_as(None):
                result = self._behave(run)
        except _SecretResolutionError as exc:
            # What ECS does when the execution role cannot fetch a secret: the task never starts.
            result = TaskResult.failed_to_start(f"ResourceInitializationError: unable to pull secrets: {exc}")
        run.result = result
        if result.run_seconds:
            time.sleep(result.run_seconds)
        self._write_logs(container, run, result.log_lines, agent)
        with self._lock:
            self.runs.append(run)
        container_state: dict[str, Any] = {"name": container["name"], "lastStatus": "STOPPED"}
        if result.exit_code is not None:
            container_state["exitCode"] = result.exit_code
        else:
            container_state["reason"] = result.stopped_reason
        return {
            "taskArn": run.task_arn,
            "clusterArn": cluster_arn,
            "taskDefinitionArn": run.task_definition_arn,
            "group": params.get("group", f"family:{run.family}"),
            "startedBy": run.started_by,
            "launchType": params.get("launchType", "FARGATE"),
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "stopCode": result.stop_code,
            "stoppedReason": result.stopped_reason,
            "containers": [container_state],
            "overrides": overrides,
        }

    def _check_network(self, network: dict[str, Any] | None) -> None:
        vpc = (network or {}).get("awsvpcConfiguration") or {}
        if not vpc.get("subnets"):
            raise TootstackError("RunTask failed: InvalidParameterException: Network Configuration must be provided when networkMode 'awsvpc' is specified.")
        ec2 = boto3.client("ec2", region_name=self.region)
        ec2.describe_subnets(SubnetIds=vpc["subnets"])  # raises InvalidSubnetID.NotFound as AWS does
        if vpc.get("securityGroups"):
            ec2.describe_security_groups(GroupIds=vpc["securityGroups"])

    def _behave(self, run: TaskRun) -> TaskResult:
        behavior = self._behaviors.get(run.family, TaskResult())
        return behavior(run) if callable(behavior) else behavior

    def _resolve_secrets(self, container: dict[str, Any]) -> dict[str, str]:
        return {s["name"]: resolve_secret_reference(s["valueFrom"], self.region) for s in container.get("secrets", [])}

    def _record_image_pull(self, agent: Principal | None, image: str) -> None:
        """The ECR calls the ECS agent makes with the execution role to pull an image from ECR
        (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html)."""
        if self.recorder is None or agent is None or ".dkr.ecr." not in image.split("/", 1)[0]:
            return
        repository = image.split("/", 1)[1].split("@", 1)[0].split(":", 1)[0]
        self.recorder.record(agent, "ecr:GetAuthorizationToken", {}, self.region)
        for action in ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"):
            self.recorder.record(agent, action, {"repositoryName": repository}, self.region)

    def _write_logs(self, container: dict[str, Any], run: TaskRun, lines: Any, agent: Principal | None = None) -> None:
        if not lines:
            return
        options = (container.get("logConfiguration") or {}).get("options", {})
        group = options.get("awslogs-group", f"/tootstack/rehearsal/{run.family}")
        prefix = options.get("awslogs-stream-prefix", run.family)
        stream = f"{prefix}/{container['name']}/{run.task_arn.rsplit('/', 1)[-1]}"
        logs = boto3.client("logs", region_name=self.region)
        with acting_as(None):  # the stack creates its log groups; a test's task definition may not have one
            try:
                logs.create_log_group(logGroupName=group)
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
        with acting_as(agent):  # the awslogs driver writes with the execution role
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
            now = int(time.time() * 1000)
            logs.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=[{"timestamp": now, "message": str(line)} for line in lines],
            )
        with self._lock:
            self.log_events.extend((group, stream, str(line)) for line in lines)


class _SecretResolutionError(Exception):
    pass


def resolve_secret_reference(value_from: str, region: str) -> str:
    """The value ECS injects for a container `secrets` entry: a Secrets Manager ARN (optionally
    `:json-key:version-stage:version-id`) or an SSM parameter name/ARN."""
    try:
        if value_from.startswith("arn:") and ":secretsmanager:" in value_from:
            parts = value_from.split(":")
            secret_id = ":".join(parts[:7])
            json_key, stage, version = (parts[7:] + ["", "", ""])[:3]
            sm = boto3.client("secretsmanager", region_name=region)
            kwargs: dict[str, str] = {"SecretId": secret_id}
            if stage:
                kwargs["VersionStage"] = stage
            if version:
                kwargs["VersionId"] = version
            value = sm.get_secret_value(**kwargs)["SecretString"]
            if json_key:
                document = json.loads(value)
                if json_key not in document:
                    raise _SecretResolutionError(f"{secret_id}: no key {json_key!r} in the secret")
                return str(document[json_key])
            return value
        name = value_from.split(":parameter", 1)[1] if value_from.startswith("arn:") else value_from
        ssm = boto3.client("ssm", region_name=region)
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except _SecretResolutionError:
        raise
    except Exception as exc:  # the reason names the reference, never a value
        raise _SecretResolutionError(f"{value_from.split(':json')[0]}: {type(exc).__name__}") from None


def _essential_container(taskdef: dict[str, Any]) -> dict[str, Any]:
    containers = taskdef.get("containerDefinitions", [])
    if not containers:
        raise InvalidInput(f"task definition {taskdef.get('family')} has no containers")
    return next((c for c in containers if c.get("essential", True)), containers[0])


def _camel(node: Any) -> Any:
    """Step Functions passes ECS parameters PascalCase (TaskDefinition); boto3 names them camelCase."""
    if isinstance(node, dict):
        return {key[:1].lower() + key[1:]: _camel(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_camel(item) for item in node]
    return node


def _pascal(node: Any) -> Any:
    """Step Functions' ECS integration returns the task with PascalCase keys ($.Containers[0].ExitCode)."""
    if isinstance(node, dict):
        return {key[:1].upper() + key[1:]: _pascal(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_pascal(item) for item in node]
    return node


# --- Lambda routing ------------------------------------------------------------------------------


@dataclass
class _Route:
    target: Any  # a handler callable, or a LocalFunction whose module loads on the first call
    environment: dict[str, str]
    name: str

    @property
    def handler(self) -> Callable[[dict, Any], Any]:
        # Loaded inside the call, under the function's environment, as Lambda imports it at cold start.
        return getattr(self.target, "entrypoint", self.target)


class LambdaContext:
    """What a handler's `context` carries in Lambda (enough for Powertools); also for tests that call a
    handler directly."""

    def __init__(self, name: str, arn: str | None = None) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn or f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{name}"
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


_ENV_LOCK = threading.RLock()  # handlers see their own environment; one routed call at a time


# --- the harness ---------------------------------------------------------------------------------


@dataclass
class Execution:
    arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def raw(self) -> str:
        """Everything the execution recorded, serialised: what a secret scan must search."""
        return json.dumps({"output": self.output, "error": self.error, "cause": self.cause, "history": self.history}, default=str)


class LocalAws:
    """moto in-process with Step Functions execution, Lambda routing and ECS task simulation."""

    def __init__(self, region: str = "us-east-1", function_stdout: Any = None) -> None:
        """`function_stdout`: a text stream that takes what routed handlers print (in Lambda it would go to
        CloudWatch Logs: log lines, metrics); None lets it through to this process's stdout."""
        self.region = region
        self.function_stdout = function_stdout
        self.account_id = ACCOUNT_ID
        self.tasks = TaskSimulator(region)
        # Every AWS call a function, state machine or task execution role makes (tootstack_dev.iam).
        self.iam_calls = CallRecorder()
        self.tasks.recorder = self.iam_calls
        # How an ECS service deployment ends (tootstack_dev.local.ecs_deployments): "COMPLETED" or "FAILED".
        self.ecs_outcome: Callable[[str, str], str] = lambda service, task_definition: "COMPLETED"
        # Every UpdateService as ECS applied it: {"service", "desired", "task_definition", "previous" (task
        # definition before it), "running": {name: n}}
        # (the cluster's running counts right after it): what "never 0 running tasks" is checked against.
        self.ecs_updates: list[dict[str, Any]] = []
        from tootstack_dev.local.cfn_update import UpdateFidelity

        self.cfn_update = UpdateFidelity()   # CloudFormation's update order and propagation on moto's update_stack
        # The seconds of every Step Functions Wait state passed: emulated time, recorded and not slept.
        self.waited: list[int] = []
        self.emulated_time: set[str] = set()
        self._routes: dict[str, _Route] = {}
        self._mock: Any = None
        self._patches: list[tuple[Any, str, Any]] = []
        self._cleanups: list[Callable[[], None]] = []

    # lifecycle
    def __enter__(self) -> "LocalAws":
        from moto import mock_aws

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})
        self._mock.start()
        self._install_patches()
        self.iam_calls.install()
        self._cleanups.append(self.iam_calls.uninstall)
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        self._patches.clear()
        for cleanup in reversed(self._cleanups):
            cleanup()
        self._cleanups.clear()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region)

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._patches.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def _install_patches(self) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
            StateTaskServiceEcs,
        )

        from moto.ecs.models import EC2ContainerServiceBackend

        from tootstack_dev.local.ecs_deployments import deploying_update_service

        harness = self
        original_resources = EC2ContainerServiceBackend._calculate_task_resource_requirements
        original_invoke = LambdaSimpleBackend.invoke
        original_eval = StateTaskServiceEcs._eval_service_task
        original_resolver = StateTaskServiceEcs._build_sync_resolver

        def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any) -> Any:
            fn = backend.get_function(function_name, qualifier)
            route = harness._routes.get(fn.function_name)
            if route is None:
                return original_invoke(backend, function_name, qualifier, body, headers, response_headers)
            payload, errored = harness._call_route(route, fn.function_arn, body, role_arn=fn.role)
            if errored:
                response_headers["x-amz-function-error"] = "Unhandled"
            encoded = payload.encode()
            response_headers["Content-Length"] = str(len(encoded))
            return encoded

        def eval_service_task(service: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any) -> None:
            if service._get_boto_service_action() != "run_task":
                return original_eval(service, env, resource_runtime_part, normalised_parameters, state_credentials)
            params = _camel(normalised_parameters)
            harness._record_run_task(params, sync=service.resource.condition == ResourceCondition.Sync)
            with acting_as(None):
                task = harness.tasks.run_task(params)
            harness._record_task_followed(task, sync=service.resource.condition == ResourceCondition.Sync)
            if service.resource.condition == ResourceCondition.Sync:
                env.stack.append({"Tasks": [_pascal(task)]})
            else:
                running = dict(task, lastStatus="PENDING", desiredStatus="RUNNING")
                running.pop("stopCode"), running.pop("stoppedReason"), running.pop("containers")
                env.stack.append({"Tasks": [_pascal(running)], "Failures": []})

        def build_sync_resolver(service: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any) -> Any:
            if service._get_boto_service_action() != "run_task":
                return original_resolver(service, env, resource_runtime_part, normalised_parameters, state_credentials)
            stopped = env.stack.pop()["Tasks"][0]
            return lambda: stopped

        def task_resources(backend: Any, task_definition: Any) -> Any:
            # moto sums container-level memory, which Fargate task definitions may leave to the task level.
            try:
                return original_resources(backend, task_definition)
            except TypeError:
                return {"CPU": 0, "MEMORY": 0, "PORTS": [], "PORTS_UDP": []}

        original_describe_td = EC2ContainerServiceBackend.describe_task_definition

        def describe_task_definition(backend: Any, task_definition_str: str) -> Any:
            # AWS: a family without ":revision" names its latest ACTIVE revision (RunTask and
            # DescribeTaskDefinition); moto 5.2 takes the highest revision even when it was deregistered.
            name = task_definition_str.split("/")[-1]
            if ":" not in name and name in backend.task_definitions:
                active = [rev for rev, td in backend.task_definitions[name].items() if td.status == "ACTIVE"]
                if active:
                    return backend.task_definitions[name][max(active)]
            return original_describe_td(backend, task_definition_str)

        self._patch(EC2ContainerServiceBackend, "describe_task_definition", describe_task_definition)
        self._patch(EC2ContainerServiceBackend, "_calculate_task_resource_requirements", task_resources)
        self._patch(EC2ContainerServiceBackend, "update_service",
                    deploying_update_service(EC2ContainerServiceBackend.update_service, lambda: harness.ecs_outcome,
                                             observe=harness.ecs_updates.append))
        self.cfn_update.install(self._patch)
        self._patch_cloudformation_backends()
        self._patch_execution_copy()
        self._patch_json_path()
        self._patch_sdk_shapes()
        self._patch_secret_current_version()
        self._patch(LambdaSimpleBackend, "invoke", invoke)
        self._patch_execution_principal()
        self._patch_log_group_arn()
        self._patch_wait_states()
        self._patch(StateTaskServiceEcs, "_eval_service_task", eval_service_task)
        self._patch(StateTaskServiceEcs, "_build_sync_resolver", build_sync_resolver)

    def _patch_execution_principal(self) -> None:
        """A Step Functions execution calls AWS (service integrations, Lambda invokes) with its state
        machine's role: its worker thread acts as that role (tootstack_dev.iam)."""
        from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

        original = ExecutionWorker._execution_logic

        def execution_logic(worker: Any) -> Any:
            details = worker._evaluation_details
            principal = Principal("state-machine", details.state_machine_details.arn, details.aws_execution_details.role_arn)
            with acting_as(principal):
                return original(worker)

        self._patch(ExecutionWorker, "_execution_logic", execution_logic)

    def _patch_wait_states(self) -> None:
        """A Wait state of a state machine given to `emulate_time` passes in emulated time: its seconds are
        recorded (`waited`), not slept, so it runs at its production polling interval (the upgrade's guard
        waits 30 s between checks) without the wall-clock wait. Other state machines wait as moto does."""
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

        harness, original = self, WaitFunction._wait_interval

        def wait_interval(function: Any, env: Any, wait_seconds: int) -> None:
            machine = env.states.context_object.context_object_data.get("StateMachine", {}).get("Id")
            if machine not in harness.emulated_time:
                return original(function, env, wait_seconds)
            harness.waited.append(int(wait_seconds))
            return None

        self._patch(WaitFunction, "_wait_interval", wait_interval)

    def emulate_time(self, state_machine_arn: str) -> None:
        """This state machine's Wait states pass in emulated time (recorded in `waited`, not slept)."""
        self.emulated_time.add(state_machine_arn)

    def use_ecr_registry(self, registry: Any) -> None:
        """From now on ecr:GetAuthorizationToken names `registry` (a local registry) as the account's ECR
        registry (tootstack_dev.local.ecr), as long as this emulation runs."""
        from tootstack_dev.local.ecr import ecr_registry

        named = ecr_registry(registry)
        named.__enter__()
        self._cleanups.append(lambda: named.__exit__(None, None, None))

    def _patch_log_group_arn(self) -> None:
        """`!GetAtt LogGroup.Arn` is `arn:aws:logs:<region>:<account>:log-group:<name>:*` in CloudFormation
        (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-logs-loggroup.html#aws-resource-logs-loggroup-return-values);
        moto 5.2 leaves out the `:*`, so a policy granting PutLogEvents on it would not cover the log streams."""
        from moto.logs.models import LogGroup

        original = LogGroup.get_cfn_attribute

        def get_cfn_attribute(group: Any, attribute_name: str) -> Any:
            value = original(group, attribute_name)
            return f"{value}:*" if attribute_name == "Arn" and not str(value).endswith(":*") else value

        self._patch(LogGroup, "get_cfn_attribute", get_cfn_attribute)

    def _record_run_task(self, params: dict[str, Any], sync: bool) -> None:
        """What the ecs:runTask(.sync) integration asks of the state machine's role
        (https://docs.aws.amazon.com/step-functions/latest/dg/ecs-iam.html): RunTask, PassRole of the task
        definition's roles to ECS, and for `.sync` the managed EventBridge rule and DescribeTasks."""
        from tootstack_dev.iam.record import current

        principal = current()
        if principal is None:
            return
        cluster = params.get("cluster", "default")
        self.iam_calls.record(principal, "ecs:RunTask", {"taskDefinition": params.get("taskDefinition", ""), "cluster": cluster}, self.region)
        with acting_as(None):
            taskdef = self.client("ecs").describe_task_definition(taskDefinition=params["taskDefinition"])["taskDefinition"]
        for key in ("executionRoleArn", "taskRoleArn"):  # an empty role: resolved from the family when checked
            self.iam_calls.record(principal, "iam:PassRole", {"role": taskdef.get(key, ""), "family": taskdef["family"],
                                                              "which": key, "passed_to": "ecs-tasks.amazonaws.com"}, self.region)
        if sync:
            for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
                self.iam_calls.record(principal, action, {"Rule": "StepFunctionsGetEventsForECSTaskRule"}, self.region)

    def _record_task_followed(self, task: dict[str, Any], sync: bool) -> None:
        """`.sync` follows the task it started with ecs:DescribeTasks."""
        from tootstack_dev.iam.record import current

        if sync:
            self.iam_calls.record(current(), "ecs:DescribeTasks", {"cluster": task["clusterArn"], "tasks": [task["taskArn"]]}, self.region)

    def _patch_cloudformation_backends(self) -> None:
        """With Docker-less Lambda and executing Step Functions, moto's API answers from the "simple" and
        "parser" backends, while its CloudFormation creates functions, layers and state machines in the
        plain ones: a deployed function or state machine would not exist for Invoke/StartExecution. Point
        CloudFormation at the backends the API reads."""
        import moto.awslambda.models as lambda_models
        import moto.stepfunctions.models as sfn_models
        from moto.awslambda_simple.models import lambda_simple_backends
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        self._patch(lambda_models, "lambda_backends", lambda_simple_backends)
        self._patch(sfn_models, "stepfunctions_backends", stepfunctions_parser_backends)

    def _patch_execution_copy(self) -> None:
        """moto 5.2 deep-copies the state machine, past executions included, on every StartExecution; a
        finished execution holds its worker's lock, so the second execution of a state machine fails with
        "cannot pickle '_thread.RLock'". Past executions are shared, not copied."""
        from moto.stepfunctions.parser.backend.execution import Execution as ParserExecution

        had = "__deepcopy__" in ParserExecution.__dict__
        original = ParserExecution.__dict__.get("__deepcopy__")
        ParserExecution.__deepcopy__ = lambda execution, memo: execution  # type: ignore[attr-defined]

        def restore() -> None:
            if had:
                ParserExecution.__deepcopy__ = original  # type: ignore[attr-defined]
            else:
                del ParserExecution.__deepcopy__

        self._cleanups.append(restore)

    def _patch_json_path(self) -> None:
        """AWS returns a scalar for a definite path such as $.Containers[0].ExitCode; moto 5.2 returns a
        one-element list when the path goes through an index. Patched wherever moto imported it."""
        import importlib
        import pkgutil
        import re
        import sys

        import moto.stepfunctions.parser.asl as asl
        from moto.stepfunctions.parser.asl.utils import json_path

        for module in pkgutil.walk_packages(asl.__path__, asl.__name__ + "."):
            try:
                importlib.import_module(module.name)
            except ImportError:  # a few modules of moto's vendored parser need LocalStack-only parts
                continue
        # jsonpath-ng parses with PLY (tens of ms per path); every Choice rule and Parameters binding
        # parses again. The parsed expressions are immutable: cache them (a Choice state went 0.2 s -> ~0).
        import functools

        self._patch(json_path, "parse", functools.lru_cache(maxsize=2048)(json_path.parse))
        original = json_path.extract_json
        indefinite = re.compile(r"\*|\?\(|\.\.|\[[^\]]*[:,][^\]]*\]")

        def extract_json(path: str, data: Any) -> Any:
            value = original(path, data)
            if not indefinite.search(path) and isinstance(value, list) and len(value) == 1:
                matches = json_path.parse(path).find(data)
                if len(matches) == 1:
                    return matches[0].value
            return value

        for name, module in list(sys.modules.items()):
            if name.startswith("moto.stepfunctions.parser") and getattr(module, "extract_json", None) is original:
                self._patch(module, "extract_json", extract_json)

    def _patch_secret_current_version(self) -> None:
        """moto 5.2: UpdateSecretVersionStage moving AWSCURRENT (the rotation protocol's finishSecret)
        leaves the secret's default version on the old one, so GetSecretValue without VersionStage, and
        the ECS `secrets` the TaskSimulator resolves, return the old value. In AWS they return AWSCURRENT.
        The Redis password rotation cannot be rehearsed without it."""
        from moto.secretsmanager.models import SecretsManagerBackend

        original = SecretsManagerBackend.update_secret_version_stage

        def update_secret_version_stage(backend: Any, secret_id: str, version_stage: str,
                                        remove_from_version_id: str, move_to_version_id: str) -> Any:
            result = original(backend, secret_id, version_stage, remove_from_version_id, move_to_version_id)
            if version_stage == "AWSCURRENT" and move_to_version_id:
                backend.secrets[secret_id].set_default_version_id(move_to_version_id)
            return result

        self._patch(SecretsManagerBackend, "update_secret_version_stage", update_secret_version_stage)

    def _patch_sdk_shapes(self) -> None:
        """AWS SDK integrations take PascalCase parameters and answer PascalCase (`$.Services[0].DesiredCount`).
        moto 5.2 ships the converters (`_to_boto_request`, `_from_boto_response`) but leaves the two hooks
        that call them empty, so `aws-sdk:ecs:updateService` fails with KeyError 'Cluster'."""
        import botocore.session
        from botocore import xform_name
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import StateTaskService

        session = botocore.session.get_session()
        operations: dict[tuple[str, str], Any] = {}

        def operation_model(service: Any, boto_service_name: str | None, service_action_name: str | None) -> Any:
            name = service._get_boto_service_name(boto_service_name)
            action = service._get_boto_service_action(service_action_name)
            key = (name, action)
            if key not in operations:
                model = session.get_service_model(name)
                by_snake = {xform_name(op): op for op in model.operation_names}
                operations[key] = model.operation_model(by_snake[action]) if action in by_snake else None
            return operations[key]

        def normalise_parameters(service: Any, parameters: dict, boto_service_name: str | None = None, service_action_name: str | None = None) -> None:
            model = operation_model(service, boto_service_name, service_action_name)
            if model is not None and model.input_shape is not None:
                service._to_boto_request(parameters, model.input_shape)

        def normalise_response(service: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None) -> None:
            model = operation_model(service, boto_service_name, service_action_name)
            if model is not None and model.output_shape is not None:
                service._from_boto_response(response, model.output_shape)

        self._patch(StateTaskService, "_normalise_parameters", normalise_parameters)
        self._patch(StateTaskService, "_normalise_response", normalise_response)

    # Lambda
    def route_function(self, name_or_arn: str, handler: Any, environment: dict[str, Any] | None = None) -> None:
        """Send every invoke of this (moto) function to `handler` (a callable or a LocalFunction)."""
        name = name_or_arn.split(":function:", 1)[1].split(":")[0] if ":function:" in name_or_arn else name_or_arn
        # What the Lambda runtime sets for every function (boto3 clients find their region in it).
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region, "AWS_LAMBDA_FUNCTION_NAME": name}
        env.update({key: str(value) for key, value in (environment or {}).items()})
        self._routes[name] = _Route(handler, env, name)

    def update_route(self, name_or_arn: str, environment: dict[str, Any], handler: Any = None) -> None:
        """Change a routed function's environment (merged over what it has) and, if given, its handler."""
        name = name_or_arn.split(":function:", 1)[1].split(":")[0] if ":function:" in name_or_arn else name_or_arn
        route = self._routes.get(name)
        if route is None:
            raise InvalidInput(f"function {name} is not routed to a handler")
        env = {**route.environment, **{key: str(value) for key, value in environment.items()}}
        self._routes[name] = _Route(handler or route.target, env, name)

    def create_function(self, name: str, handler: Any, environment: dict[str, Any] | None = None) -> str:
        """Create a moto Lambda function routed to `handler`; returns its ARN."""
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("app.py", "def lambda_handler(event, context):\n    return event\n")
        iam = self.client("iam")
        role_name = "tootstack-local-lambda"
        try:
            role_arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))["Role"]["Arn"]
        arn = self.client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role_arn,
            Handler="app.lambda_handler",
            Code={"ZipFile": buffer.getvalue()},
            Environment={"Variables": {k: str(v) for k, v in (environment or {}).items()}},
        )["FunctionArn"]
        self.route_function(name, handler, environment)
        return arn

    def invoke(self, name: str, event: Any) -> Any:
        """Invoke a function synchronously through the Lambda API; raises on a function error."""
        response = self.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            raise TootstackError(f"{name} failed: {payload.get('errorType')}: {payload.get('errorMessage')}")
        return payload

    def _call_route(self, route: _Route, arn: str, body: Any, role_arn: str = "") -> tuple[str, bool]:
        event = json.loads(body) if isinstance(body, (str, bytes)) and body else (body or {})
        with _ENV_LOCK, acting_as(Principal("function", route.name, role_arn) if role_arn else None):
            saved = {key: os.environ.get(key) for key in route.environment}
            os.environ.update(route.environment)
            try:
                with contextlib.redirect_stdout(self.function_stdout) if self.function_stdout else contextlib.nullcontext():
                    result = route.handler(event, LambdaContext(route.name, arn))
                return json.dumps(result, default=str), False
            except Exception as exc:  # Lambda reports an unhandled error as this payload
                return json.dumps({
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "stackTrace": traceback.format_tb(exc.__traceback__)[-3:],
                }), True
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value

    # Step Functions
    def create_state_machine(self, name: str, definition: str | dict[str, Any], substitutions: dict[str, Any] | None = None) -> str:
        text = definition if isinstance(definition, str) else json.dumps(definition)
        for key, value in (substitutions or {}).items():
            text = text.replace("${" + key + "}", str(value))
        role_arn = f"arn:aws:iam::{self.account_id}:role/tootstack-local-states"
        return self.client("stepfunctions").create_state_machine(name=name, definition=text, roleArn=role_arn)["stateMachineArn"]

    def create_state_machine_from_file(self, path: str | Path, name: str, substitutions: dict[str, Any] | None = None) -> str:
        return self.create_state_machine(name, Path(path).read_text(), substitutions)

    def run_state_machine(self, arn: str, input: Any = None, timeout: float = 60.0, name: str | None = None) -> Execution:
        sfn = self.client("stepfunctions")
        kwargs: dict[str, Any] = {"stateMachineArn": arn, "input": json.dumps(input if input is not None else {})}
        # AWS names an unnamed execution with a UUID; moto 5.2 leaves it None ($$.Execution.Name = null,
        # and a second unnamed execution of the same input collides): always give one.
        kwargs["name"] = name or str(uuid.uuid4())
        execution_arn = sfn.start_execution(**kwargs)["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TootstackError(f"execution {execution_arn} still RUNNING after {timeout}s")
            time.sleep(0.05)
        # moto's worker sets the status before output/error/cause (three assignments, another thread):
        # under load a poll can see FAILED without its cause or SUCCEEDED without output. Re-read until
        # the description is complete (bounded: a Fail state may legitimately have no cause).
        settle = time.monotonic() + 2.0
        while time.monotonic() < settle and not (
            ("output" in described) if described["status"] == "SUCCEEDED"
            else ("error" in described and "cause" in described) if described["status"] == "FAILED" else True
        ):
            time.sleep(0.02)
            described = sfn.describe_execution(executionArn=execution_arn)
        history: list[dict[str, Any]] = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
            history.extend(page["events"])
        output = described.get("output")
        return Execution(
            arn=execution_arn,
            status=described["status"],
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            history=history,
        )
