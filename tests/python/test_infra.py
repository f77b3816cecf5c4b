"""The AWS template and state machine: cfn-lint passes, the definition's
placeholders are exactly the template's DefinitionSubstitutions, and the rules of
Step Functions, Lambda, IAM and S3 that cfn-lint and moto do not enforce hold
(each checked from the services' documentation, cited beside it)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra" / "aws"


def test_cfn_lint_passes_on_the_template():
    # W3002: local paths (the Lambda zip, the definition) are uploaded by
    # `aws cloudformation package`, which the README's deploy steps run first.
    result = subprocess.run(
        [Path(sys.executable).parent / "cfn-lint", "--ignore-checks", "W3002", "--", str(INFRA / "template.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_definition_placeholders_match_the_substitutions():
    definition = (INFRA / "statemachine.asl.json").read_text()
    json.loads(definition)
    placeholders = set(re.findall(r"\$\{(\w+)\}", definition))
    template = (INFRA / "template.yaml").read_text()
    block = template.split("DefinitionSubstitutions:")[1].split("LoggingConfiguration:")[0]
    substitutions = set(re.findall(r"^\s+(\w+):", block, re.MULTILINE))
    assert placeholders == substitutions
    assert placeholders == {"FunctionArn", "ChildExecutionType", "GpuJobQueueArn", "GpuJobDefinitionArn",
                            "DataBucketName", "ResultsPrefix", "WorkerMemoryMB", "WorkerStorageMB",
                            "InputBucket"}
    # Launchers read the workers' memory where the definition names it.
    subs = yaml.safe_load(template.split("DefinitionSubstitutions:")[1].split("LoggingConfiguration:")[0]
                          .replace("!GetAtt ", "").replace("!Ref ", "").replace("!If ", ""))
    assert subs["WorkerMemoryMB"] == "MemorySize"
    assert subs["WorkerStorageMB"] == "EphemeralStorageMB"
    payload = json.loads(definition)["States"]["Initialize"]["Parameters"]["Payload"]
    assert payload["worker_memory_mb"] == "${WorkerMemoryMB}"
    assert payload["worker_storage_mb"] == "${WorkerStorageMB}"
    # ... and the bucket its workers may read partitions from in place.
    assert subs["InputBucket"] == "InputBucket"
    assert payload["input_bucket"] == "${InputBucket}"


def test_summarize_prices_the_children_the_stack_was_deployed_with():
    # A stack with STANDARD children was priced as EXPRESS: 3x the Step Functions cost.
    for name in ("Summarize", "SummarizeFailedMap"):
        payload = json.loads((INFRA / "statemachine.asl.json").read_text())["States"][name]["Parameters"]["Payload"]
        assert payload["child_execution_type"] == "${ChildExecutionType}", name
    ranks = json.loads((INFRA / "statemachine.asl.json").read_text())["States"]["Ranks"]
    assert ranks["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "${ChildExecutionType}"


def states():
    return json.loads((INFRA / "statemachine.asl.json").read_text())["States"]


def maps():
    return {name: s for name, s in states().items() if s["Type"] == "Map"}


def test_the_maps_take_concurrency_and_tolerance_from_initialize():
    assert set(maps()) == {"Ranks", "GpuRanks"}
    for ranks in maps().values():
        assert ranks["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert ranks["MaxConcurrencyPath"] == "$.initialize.output.max_concurrency"
        assert ranks["ToleratedFailurePercentagePath"] == "$.initialize.output.tolerated_failure_percentage"
    # Every Lambda task retries Lambda's own service errors.
    tasks = [s for s in states().values() if s.get("Resource") == "arn:aws:states:::lambda:invoke"]
    tasks.append(maps()["Ranks"]["ItemProcessor"]["States"]["Infer"])
    for task in tasks:
        assert any("Lambda.TooManyRequestsException" in r["ErrorEquals"] for r in task["Retry"])


def test_express_children_use_request_response_only():
    # "Express Workflows support Request Response, but they do not support Run a Job
    # (.sync) or Wait for Callback (.waitForTaskToken)" (Step Functions developer guide,
    # "Integrating services"). moto runs only STANDARD children, so it cannot tell.
    for name, m in maps().items():
        kind = m["ItemProcessor"]["ProcessorConfig"]["ExecutionType"]
        resources = [s.get("Resource", "") for s in m["ItemProcessor"]["States"].values()]
        waits = [r for r in resources if r.endswith(".sync") or ".sync:" in r or r.endswith(".waitForTaskToken")]
        if kind != "STANDARD":  # EXPRESS, or the template's choice (EXPRESS by default)
            assert not waits, f"{name}: {waits} under {kind} children"
    assert maps()["GpuRanks"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"


def test_an_express_rank_cannot_outlive_its_execution():
    # Express executions stop at 5 minutes ("Maximum execution time: 5 minutes",
    # Express workflow quotas); the Lambda call of a rank must time out before that.
    infer = maps()["Ranks"]["ItemProcessor"]["States"]["Infer"]
    assert 0 < infer["TimeoutSeconds"] < 300


def _retriers(states_):
    for name, s in states_.items():
        for r in s.get("Retry", []):
            yield name, r
        if "ItemProcessor" in s:
            yield from _retriers(s["ItemProcessor"]["States"])


def test_retries_are_jittered_and_an_express_rank_bounds_its_own_time():
    # Thousands of ranks throttled together would retry together without jitter
    # ("JitterStrategy": FULL, Step Functions developer guide, "Retrying after an error").
    for name, r in _retriers(states()):
        assert r.get("JitterStrategy") == "FULL", (name, r)
    infer = maps()["Ranks"]["ItemProcessor"]["States"]["Infer"]
    # A rank's waits between tries stay small next to the Express execution's 300 s.
    waits = 0
    for r in infer["Retry"]:
        delay = r["IntervalSeconds"]
        for _ in range(r["MaxAttempts"]):
            waits += min(delay, r.get("MaxDelaySeconds", delay))
            delay *= r["BackoffRate"]
    assert waits <= 60, waits
    # The throttled Lambda call's retries wait inside the rank's own window: a plan
    # bounds a rank 30 s short of where it stops itself (RANK_PLANNED_MAX_S in
    # engine/src/pipeline/rank_time.rs), and 5 s of those are left to the SDK's
    # retries of S3 calls. Step Functions' MaxAttempts counts retries, not calls.
    throttled = next(r for r in infer["Retry"] if "Lambda.TooManyRequestsException" in r["ErrorEquals"])
    delay, throttled_waits = throttled["IntervalSeconds"], 0
    for _ in range(throttled["MaxAttempts"]):
        throttled_waits += min(delay, throttled.get("MaxDelaySeconds", delay))
        delay *= throttled["BackoffRate"]
    assert throttled_waits <= 25, throttled_waits
    # The Task's timeout does not stop the Lambda call it made; the worker stops itself
    # from the state's entry time (lambda/src/lib.rs, RankDeadline), and that error is
    # not retried.
    assert infer["Parameters"]["Payload"]["entered_at.$"] == "$$.State.EnteredTime"
    # States.ALL and States.TaskFailed are wildcards that would catch it too.
    assert not any({"RankOutOfTime", "States.ALL", "States.TaskFailed"} & set(r["ErrorEquals"]) for r in infer["Retry"])


def test_summarize_reads_once_no_stopped_rank_can_write_and_is_retried():
    # A failed Map stops its Express children, not the Lambda calls they made
    # (Step Functions developer guide, "Stopping a Map Run"): a rank stops itself
    # RANK_STOP_S after its Infer state began (lambda/src/lib.rs), so the failed
    # path waits at least the Infer task's timeout before Summarize reads.
    s = states()
    catch = maps()["Ranks"]["Catch"][0]
    wait = s[catch["Next"]]
    infer = maps()["Ranks"]["ItemProcessor"]["States"]["Infer"]
    # A rank that passed its last check just before RANK_STOP_S still makes three
    # PUTs, each with the SDK's retries: 80 s are left for them.
    stop = _rust_const("engine/src/pipeline/rank_time.rs", "EXPRESS_RANK_TIMEOUT_S") - 10
    assert wait["Type"] == "Wait" and wait["Seconds"] >= stop + 80 >= infer["TimeoutSeconds"]
    assert wait["Next"] == "SummarizeFailedMap"
    assert _rust_const("engine/src/pipeline/rank_time.rs", "EXPRESS_RANK_TIMEOUT_S") == infer["TimeoutSeconds"]
    # Batch jobs are cancelled with their STANDARD children: no wait there.
    assert maps()["GpuRanks"]["Catch"][0]["Next"] == "SummarizeFailedMap"
    # Summarize after every rank was paid for: an S3 error past the SDK's retries
    # (StageFailed) is retried, never an invalid request.
    for name in ["Summarize", "SummarizeFailedMap"]:
        errors = [e for r in s[name]["Retry"] for e in r["ErrorEquals"]]
        assert "StageFailed" in errors and "InvalidRequest" not in errors, name


def test_no_state_carries_a_per_rank_list():
    # State input and output stop at 256 KiB ("States.DataLimitExceeded", a terminal
    # error that States.ALL does not catch). Items come from S3 (ItemReader) and results
    # go to S3 (ResultWriter); the Rust test state_payloads_stay_under_256_kib_at_40000_ranks
    # checks the sizes of what remains.
    for name, m in maps().items():
        assert "ItemsPath" not in m and "Items" not in m, name
        reader = m["ItemReader"]
        assert reader["Resource"] == "arn:aws:states:::s3:getObject"
        assert reader["ReaderConfig"]["InputType"] == "JSON"
        assert reader["Parameters"]["Key.$"] == "$.initialize.output.plan_key"
        writer = m["ResultWriter"]
        assert writer["Resource"] == "arn:aws:states:::s3:putObject"
        # Under the results prefix: the only place the state machine role may write.
        assert writer["Parameters"] == {"Bucket": "${DataBucketName}", "Prefix": "${ResultsPrefix}/map-results"}
        assert m["ResultPath"] is None


class Tagged(yaml.SafeLoader):
    """CloudFormation YAML with its short-form tags kept as {tag: value}."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


Tagged.add_multi_constructor("!", _tag)


def template():
    return yaml.load((INFRA / "template.yaml").read_text(), Loader=Tagged)


def statements(role):
    """A role's statements, each !If [condition, statement, NoValue] as its statement."""
    found = [s for p in role["Properties"]["Policies"] if isinstance(p, dict) and "PolicyDocument" in p
             for s in p["PolicyDocument"]["Statement"]]
    return [s["If"][1] if "If" in s else s for s in found]


def test_workers_write_only_under_the_results_prefix():
    resources = template()["Resources"]
    for role in ["FunctionRole", "GpuJobRole"]:
        for s in statements(resources[role]):
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            if any(a in ("s3:PutObject", "s3:*", "s3:DeleteObject") for a in actions):
                assert s["Resource"] == {"Sub": "${DataBucket.Arn}/${ResultsPrefix}/*"}, (role, s)
        # Results over 16 MiB go up in parts (engine/src/store/s3.rs), and a failed one is
        # aborted: AbortMultipartUpload is an action of its own, not covered by PutObject
        # (Amazon S3 User Guide, "Multipart upload API and permissions").
        writes = [s for s in statements(resources[role]) if "s3:PutObject" in s["Action"]]
        assert writes and all("s3:AbortMultipartUpload" in s["Action"] for s in writes), role
    env = resources["Function"]["Properties"]["Environment"]["Variables"]
    assert env["COSMICAI_RESULTS_PREFIX"] == {"Ref": "ResultsPrefix"}


def read_only_and_known_to_the_workers(parameter, variable):
    """Bucket `parameter` may be listed and read, not written, by the workers and the
    GPU jobs, and both are told its name in `variable`."""
    resources = template()["Resources"]
    bucket = [{"Sub": "arn:${AWS::Partition}:s3:::${%s}" % parameter},
              {"Sub": "arn:${AWS::Partition}:s3:::${%s}/*" % parameter}]
    for role in ["FunctionRole", "GpuJobRole"]:
        grants = [s for s in statements(resources[role]) if s["Resource"] == bucket]
        assert [sorted(s["Action"]) for s in grants] == [["s3:GetObject", "s3:ListBucket"]], role
    env = resources["Function"]["Properties"]["Environment"]["Variables"]
    assert env[variable] == {"Ref": parameter}
    gpu_env = resources["GpuJobDefinition"]["Properties"]["ContainerProperties"]["Environment"]
    assert {"Name": variable, "Value": {"Ref": parameter}} in gpu_env


def test_a_weights_bucket_is_read_only_and_known_to_the_workers():
    read_only_and_known_to_the_workers("WeightsBucket", "COSMICAI_WEIGHTS_BUCKET")


def test_an_input_bucket_is_read_only_and_known_to_the_workers():
    # A CAI user's data bucket, read in place (lambda/src/data.rs): Initialize refuses
    # any other by name rather than meet an AccessDenied.
    read_only_and_known_to_the_workers("InputBucket", "COSMICAI_INPUT_BUCKET")
    # The name the code reads is the one the template sets.
    root = INFRA.parents[1]
    code = (root / "lambda" / "src" / "initialize.rs").read_text() + (root / "lambda" / "src" / "infer.rs").read_text()
    assert code.count('"COSMICAI_INPUT_BUCKET"') == 2
    # A bucket name as S3 takes it, or none.
    parameters = template()["Parameters"]
    assert parameters["InputBucket"]["Default"] == ""
    assert parameters["InputBucket"]["AllowedPattern"] == parameters["WeightsBucket"]["AllowedPattern"]


def test_the_gpu_jobs_are_told_which_kernels_compute_astromae():
    # The Batch job runs `bootstrap run-event`, which reads COSMICAI_CUDA_KERNELS
    # (engine/src/gpu_astromae.rs): the template's choice must reach it, and name
    # only values the code reads.
    t = template()
    param = t["Parameters"]["GpuKernels"]
    assert (param["Default"], param["AllowedValues"]) == ("burn", ["burn", "fused"])
    gpu_env = t["Resources"]["GpuJobDefinition"]["Properties"]["ContainerProperties"]["Environment"]
    assert {"Name": "COSMICAI_CUDA_KERNELS", "Value": {"Ref": "GpuKernels"}} in gpu_env
    source = (INFRA.parents[1] / "engine" / "src" / "gpu_astromae.rs").read_text()
    assert 'KERNELS_VAR: &str = "COSMICAI_CUDA_KERNELS"' in source
    assert 'eq_ignore_ascii_case("fused")' in source


def _rust_const(path, name):
    source = (INFRA.parents[1] / path).read_text()
    return float(re.search(rf"pub const {name}: f64 = ([0-9.]+);", source).group(1))


def test_a_gpu_rank_cannot_wait_or_run_without_end():
    t = template()["Resources"]
    job = t["GpuJobDefinition"]["Properties"]
    attempt = job["Timeout"]["AttemptDurationSeconds"]
    vcpus = [r["Value"] for r in job["ContainerProperties"]["ResourceRequirements"] if r["Type"] == "VCPU"]
    # Initialize bounds a GPU rank's time and the Map's concurrency with these
    # (engine/src/pipeline/rank_time.rs): they must be the template's.
    assert attempt == _rust_const("engine/src/pipeline/rank_time.rs", "BATCH_ATTEMPT_S")
    assert [float(v) for v in vcpus] == [_rust_const("engine/src/pipeline/rank_time.rs", "BATCH_JOB_VCPUS")]
    env = t["Function"]["Properties"]["Environment"]["Variables"]
    assert env["COSMICAI_GPU_MAX_VCPUS"] == {"Ref": "GpuMaxVcpus"}
    # Initialize sends GpuMaxVcpus / BATCH_JOB_VCPUS jobs at once and prices them as
    # g5.xlarge time: instances of 4 vCPUs and one GPU only (a g5.2xlarge, 8 vCPUs and
    # one GPU, holds one job in twice the vCPUs; EC2's instance type table).
    assert t["GpuComputeEnvironment"]["Properties"]["ComputeResources"]["InstanceTypes"] == ["g5.xlarge"]
    # "Jobs can remain in this state [RUNNABLE] indefinitely when sufficient resources
    # are unavailable" (AWS Batch user guide, "Job states"): the queue cancels a job
    # stuck for a misconfiguration or capacity. JobStateTimeLimitAction: state
    # RUNNABLE only, action CANCEL, maxTimeSeconds 600 to 86,400 (Batch API reference).
    actions = t["GpuJobQueue"]["Properties"]["JobStateTimeLimitActions"]
    assert {a["Reason"] for a in actions} == {
        "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
        "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
    }
    for a in actions:
        assert (a["State"], a["Action"]) == ("RUNNABLE", "CANCEL")
        assert 600 <= a["MaxTimeSeconds"] <= 86400
    # The task gives up after every attempt could have run, plus the longest wait
    # the queue allows: never the STANDARD child's one-year limit.
    infer = maps()["GpuRanks"]["ItemProcessor"]["States"]["InferOnBatch"]
    attempts = job["RetryStrategy"]["Attempts"]
    longest_wait = max(a["MaxTimeSeconds"] for a in actions)
    assert attempts * attempt + longest_wait <= infer["TimeoutSeconds"] <= 6 * 3600


def test_nothing_is_granted_on_every_resource_that_can_be_scoped():
    # batch:DescribeJobs has no resource-level permissions (Service Authorization
    # Reference, AWS Batch); TerminateJob does, so it is scoped to jobs.
    gpu = template()["Resources"]["StateMachineRole"]["Properties"]["Policies"][1]
    for s in gpu["If"][1]["PolicyDocument"]["Statement"]:  # !If [WithGpu, policy, NoValue]
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if s["Resource"] == "*":
            assert actions == ["batch:DescribeJobs"], s


def test_the_bucket_takes_tls_only_and_aborts_stale_uploads():
    resources = template()["Resources"]
    policy = resources["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    deny = [s for s in policy if s["Effect"] == "Deny"]
    assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and s["Action"] == "s3:*" and s["Principal"] == "*"
               for s in deny)
    rules = resources["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r["Status"] == "Enabled" and r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation", 0) >= 1
               for r in rules)
    # The Map's ResultWriter records expire; the runs' own results never do.
    expiring = [r for r in rules if "ExpirationInDays" in r]
    assert [r["Prefix"] for r in expiring] == [{"Sub": "${ResultsPrefix}/map-results/"}]


def test_concurrency_is_reserved_and_bounds_the_map():
    resources = template()["Resources"]
    function = resources["Function"]["Properties"]
    # 0 reserves none (accounts whose quota is below 1,000 cannot reserve 900).
    assert function["ReservedConcurrentExecutions"] == {
        "If": ["Reserves", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    conditions = template()["Conditions"]
    assert conditions["Reserves"] == {"Not": [{"Equals": [{"Ref": "ReservedConcurrency"}, "0"]}]}
    # The Map's ceiling: the smaller of the two given, else 10 (lambda's cpu_ceiling,
    # unit-tested there); both reach the function.
    env = function["Environment"]["Variables"]
    assert env["COSMICAI_MAX_CONCURRENCY"] == {"Ref": "MaxConcurrency"}
    assert env["COSMICAI_RESERVED_CONCURRENCY"] == {"Ref": "ReservedConcurrency"}
    params = template()["Parameters"]["ReservedConcurrency"]
    assert params["MinValue"] == 0 and params["MaxValue"] <= 10000  # a Distributed Map runs at most 10,000 children at once
    most = template()["Parameters"]["MaxConcurrency"]
    assert (most["MinValue"], most["Default"]) == (0, 0) and most["MaxValue"] <= 10000
    # "Lambda reserves 100 units of concurrency for functions that don't use reserved
    # concurrency" (Lambda developer guide, "Configuring reserved concurrency"): with the
    # default quota of 1,000 a reservation above 900 fails the deploy. moto does not check.
    assert params["Default"] <= 1000 - 100
    # Lambda: ephemeral storage 512 to 10,240 MB, memory 128 to 10,240 MB, timeout at most 900 s.
    storage = template()["Parameters"]["EphemeralStorageMB"]
    assert (storage["MinValue"], storage["MaxValue"]) == (512, 10240)
    assert function["Timeout"] <= 900


def _resources(node):
    """Every statement Resource anywhere under node (policies, !If branches, bucket policies)."""
    if isinstance(node, dict):
        if "Effect" in node and "Resource" in node:
            value = node["Resource"]
            yield from (value if isinstance(value, list) else [value])
        for child in node.values():
            yield from _resources(child)
    elif isinstance(node, list):
        for child in node:
            yield from _resources(child)


def well_formed_arn(text):
    """arn:partition:service:region:account-id:resource (IAM User Guide, "IAM identifiers"),
    the partition from ${AWS::Partition}, or an attribute ARN with a path or qualifier."""
    if re.fullmatch(r"\$\{\w+\.Arn\}[/:][^\s\"']+", text):
        return True
    if not text.startswith("arn:${AWS::Partition}:"):
        return False
    plain = re.sub(r"\$\{[^}]*\}", "X", text)  # ${AWS::Region} holds colons of its own
    return re.fullmatch(r"arn:X:[a-z0-9-]+:[^:\s\"']*:[^:\s\"']*:[^\s\"']+", plain) is not None


def test_every_policy_resource_is_a_well_formed_arn():
    # A malformed ARN is accepted at deploy and then matches nothing, so the grant
    # silently does not work (a stray quote once left batch:TerminateJob matching no
    # job). cfn-lint and moto check neither.
    seen = 0
    for value in _resources(template()["Resources"]):
        seen += 1
        if value == "*" or set(value) <= {"GetAtt", "Ref"}:
            continue
        assert set(value) == {"Sub"}, value
        text = value["Sub"] if isinstance(value["Sub"], str) else value["Sub"][0]
        assert well_formed_arn(text), f"not a well-formed ARN: {text!r}"
    assert seen >= 20, seen


def test_the_arn_check_catches_a_stray_quote():
    assert well_formed_arn("arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:job/*")
    assert well_formed_arn("arn:${AWS::Partition}:s3:::bucket/*")
    assert well_formed_arn("${DataBucket.Arn}/${ResultsPrefix}/*")
    assert not well_formed_arn('arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:job/*"')
    assert not well_formed_arn("arn:aws:batch:us-east-1:1:job/*")  # the partition is not hard-coded
    assert not well_formed_arn("arn:${AWS::Partition}:states:${AWS::Region}:stateMachine")


def test_a_failed_first_deploy_leaves_no_bucket_and_gpu_logs_expire_with_the_stack():
    # CloudFormation: RetainExceptOnCreate keeps the resource on stack deletion
    # but deletes it when the create that made it rolls back ("DeletionPolicy
    # attribute"); UpdateReplacePolicy takes Retain only.
    t = template()
    bucket = t["Resources"]["DataBucket"]
    assert bucket["DeletionPolicy"] == "RetainExceptOnCreate"
    assert bucket["UpdateReplacePolicy"] == "Retain"
    # Batch: without awslogs-group a job logs to /aws/batch/job, which no stack
    # owns and which never expires (AWS Batch User Guide, "awslogs log driver").
    group = t["Resources"]["GpuLogGroup"]
    assert group["Condition"] == "WithGpu"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    logs = t["Resources"]["GpuJobDefinition"]["Properties"]["ContainerProperties"]["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs"
    assert logs["Options"]["awslogs-group"] == {"Ref": "GpuLogGroup"}
    # The instances send them: their managed role may write any group's streams.
    managed = t["Resources"]["GpuInstanceRole"]["Properties"]["ManagedPolicyArns"]
    assert any("AmazonEC2ContainerServiceforEC2Role" in str(m) for m in managed)


def test_a_gpu_queue_is_refused_at_deploy_without_its_image_and_security_groups():
    # Batch refuses a compute environment with no security group, and a job
    # definition with no image (Batch API, ComputeResource, ContainerProperties).
    rule = template()["Rules"]["GpuNeedsItsParameters"]
    assert rule["RuleCondition"] == {"Not": [{"Fn::EachMemberEquals": [{"Ref": "GpuSubnets"}, ""]}]}
    asserted = [a["Assert"] for a in rule["Assertions"]]
    assert {"Not": [{"Fn::EachMemberEquals": [{"Ref": "GpuSecurityGroups"}, ""]}]} in asserted
    assert {"Not": [{"Equals": [{"Ref": "GpuImage"}, ""]}]} in asserted


# The launcher's SDK calls (backend/src/aws, and the S3 store it uploads and
# copies results back with) and the IAM action each needs (Service
# Authorization Reference: Amazon S3, AWS Step Functions). A call not listed
# fails the test below until it is mapped and granted.
LAUNCHER_ACTIONS = {
    "put_object": ("s3:PutObject", "object"),
    "create_multipart_upload": ("s3:PutObject", "object"),
    "upload_part": ("s3:PutObject", "object"),
    "complete_multipart_upload": ("s3:PutObject", "object"),
    "abort_multipart_upload": ("s3:AbortMultipartUpload", "object"),
    "get_object": ("s3:GetObject", "object"),
    "head_object": ("s3:GetObject", "object"),
    "delete_object": ("s3:DeleteObject", "object"),
    "list_objects_v2": ("s3:ListBucket", "bucket"),
    # HeadBucket asks for s3:ListBucket (Amazon S3 API Reference, HeadBucket).
    "head_bucket": ("s3:ListBucket", "bucket"),
    "start_execution": ("states:StartExecution", "stateMachine"),
    "list_executions": ("states:ListExecutions", "stateMachine"),
    "describe_state_machine": ("states:DescribeStateMachine", "stateMachine"),
    "describe_execution": ("states:DescribeExecution", "execution"),
    "stop_execution": ("states:StopExecution", "execution"),
    "get_execution_history": ("states:GetExecutionHistory", "execution"),
    "describe_map_run": ("states:DescribeMapRun", "mapRun"),
}


def launcher_calls():
    root = INFRA.parents[1]
    files = sorted((root / "backend" / "src" / "aws").glob("*.rs")) + [root / "engine" / "src" / "store" / "s3.rs"]
    calls = set()
    for f in files:
        calls |= set(re.findall(r"(?:\bclient\b(?:\(\))?|\bsfn\b)\s*\.\s*([a-z_0-9]+)\(\)", f.read_text()))
    return calls - {"build"}


def test_the_launcher_policy_grants_every_call_the_launcher_makes():
    calls = launcher_calls()
    # The scan finds the calls (a changed spelling would make it find none).
    assert {"put_object", "start_execution", "describe_map_run", "list_objects_v2"} <= calls, calls
    unmapped = calls - LAUNCHER_ACTIONS.keys()
    assert not unmapped, f"map these SDK calls to their IAM actions: {unmapped}"
    t = template()
    policy = t["Resources"]["LauncherPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    resource_of = {
        "object": [{"Sub": "${DataBucket.Arn}/*"}],
        "bucket": [{"GetAtt": "DataBucket.Arn"}],
        "stateMachine": [{"Ref": "StateMachine"}],
        "execution": [
            {"Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${StateMachineName}:*"},
        ],
        "mapRun": [{"Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:mapRun:${StateMachineName}/*"}],
    }
    granted, conditional = [], []
    for s in policy:
        if "If" in s:
            # Only the input bucket's grants are conditional.
            assert s["If"][0] == "WithInputBucket" and s["If"][2] == {"Ref": "AWS::NoValue"}, s
            s = s["If"][1]
            conditional += [(a, str(s["Resource"])) for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
            continue
        assert s["Effect"] == "Allow"
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        granted += [(a, r) for a in actions for r in resources]
    for call in sorted(calls):
        action, kind = LAUNCHER_ACTIONS[call]
        for resource in resource_of[kind]:
            assert (action, resource) in granted, (call, action, resource)
    # Nothing beyond what the calls need.
    needed = {(LAUNCHER_ACTIONS[c][0], str(r)) for c in calls for r in resource_of[LAUNCHER_ACTIONS[c][1]]}
    assert {(a, str(r)) for a, r in granted} == needed
    # The input bucket (a CAI user's data, read in place): listed, its region asked
    # (HeadBucket) and its headers read (GetObject) while the launcher plans; never written.
    input_bucket = {"Sub": "arn:${AWS::Partition}:s3:::${InputBucket}"}
    input_objects = {"Sub": "arn:${AWS::Partition}:s3:::${InputBucket}/*"}
    reads = {"list_objects_v2", "head_bucket", "get_object"}
    assert reads <= calls, calls
    assert sorted(conditional) == sorted(
        {(LAUNCHER_ACTIONS[c][0], str(input_bucket if LAUNCHER_ACTIONS[c][1] == "bucket" else input_objects)) for c in reads}
    ), conditional
    assert t["Outputs"]["LauncherPolicyArn"]["Value"] == {"Ref": "LauncherPolicy"}
