"""The AWS template and state machine: cfn-lint passes, and the definition's
placeholders are exactly the template's DefinitionSubstitutions."""

import json
import re
import subprocess
import sys
from pathlib import Path

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
    assert placeholders == {"FunctionArn", "ChildExecutionType", "GpuJobQueueArn", "GpuJobDefinitionArn"}


def test_the_map_takes_concurrency_and_tolerance_from_initialize():
    states = json.loads((INFRA / "statemachine.asl.json").read_text())["States"]
    ranks = states["Ranks"]
    assert ranks["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert ranks["MaxConcurrencyPath"] == "$.initialize.output.max_concurrency"
    assert ranks["ToleratedFailurePercentagePath"] == "$.initialize.output.tolerated_failure_percentage"
    # Every Lambda task retries Lambda's own service errors.
    tasks = [s for s in states.values() if s.get("Resource") == "arn:aws:states:::lambda:invoke"]
    tasks.append(ranks["ItemProcessor"]["States"]["Infer"])
    for task in tasks:
        assert any("Lambda.TooManyRequestsException" in r["ErrorEquals"] for r in task["Retry"])
