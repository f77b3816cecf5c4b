"""The live HTTP API against its own OpenAPI document, with schemathesis: no
5xx, status codes and content types as documented, bodies matching the schemas.

Twice: once as a caller without the token (the server listens off loopback with
one it does not have, so the endpoints that start or cancel work answer 401, as
documented), and once as a caller holding it, over those endpoints (POST): their
bodies are fuzzed past the token into validation, admission and started runs,
one at a time (`--max-runs 1`), on the bundled catalog."""
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COSMICAI = os.environ.get("COSMICAI_BIN", str(ROOT / "target" / "debug" / "cosmicai"))
TOKEN = "the-token-holders-token"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def serve(data, token, *extra):
    """`cosmicai serve` off loopback on a free port with `token`; yields its URL,
    then stops it as systemd would (SIGTERM), so its runs' workers end with it."""
    env = dict(os.environ, COSMICAI_TOKEN=token)
    proc = subprocess.Popen(
        [COSMICAI, "serve", "--addr", "0.0.0.0:0", "--data-dir", str(data), "--assets", str(ROOT / "assets"),
         "--frontend", str(data / "no-frontend"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = ""
    for line in proc.stdout:
        if line.startswith("listening on "):
            break
    assert line.startswith("listening on "), "serve did not start"
    port = line.strip().rsplit(":", 1)[1]
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory.mktemp("serve"), "not-for-the-fuzzer")


@pytest.fixture(scope="module")
def server_for_token_holders(tmp_path_factory):
    yield from serve(tmp_path_factory.mktemp("serve-token"), TOKEN, "--max-runs", "1")


def schemathesis(url, *extra):
    cli = Path(sys.executable).parent / "schemathesis"
    return subprocess.run(
        [str(cli), "run", f"{url}/api/openapi.json", "--checks", CHECKS, "--max-examples", "25", "--seed", "1",
         *extra],
        capture_output=True, text=True, timeout=600)


def test_api_conforms_to_its_openapi_document(server):
    out = schemathesis(server)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "Tested: 24" in out.stdout, out.stdout[-3000:]


def test_what_starts_or_cancels_work_conforms_for_a_token_holder(server_for_token_holders):
    out = schemathesis(server_for_token_holders, "--include-method", "POST",
                       "--header", f"Authorization: Bearer {TOKEN}")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    # Runs, estimate, sweeps, selections, an object's fetch, both cancels, and a run's resume.
    assert "Tested: 8" in out.stdout, out.stdout[-3000:]
    # The fuzzed launches got past the token and the checks: a run started.
    with urllib.request.urlopen(f"{server_for_token_holders}/api/runs", timeout=30) as reply:
        runs = json.load(reply)
    assert runs, "no fuzzed launch started a run: the fuzzer never got past validation"
    # The server is still up, and answers as before.
    with urllib.request.urlopen(f"{server_for_token_holders}/api/health", timeout=30) as reply:
        assert json.load(reply)["objects"] > 0
