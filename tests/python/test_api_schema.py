"""The live HTTP API against its own OpenAPI document, with schemathesis: no
5xx, status codes and content types as documented, bodies matching the schemas.

The server listens off loopback with a token the fuzzer does not have, so the
endpoints that start or cancel runs answer 401 (documented) and no fuzzed run
starts thousands of workers."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COSMICAI = os.environ.get("COSMICAI_BIN", str(ROOT / "target" / "debug" / "cosmicai"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("serve")
    env = dict(os.environ, COSMICAI_TOKEN="not-for-the-fuzzer")
    proc = subprocess.Popen(
        [COSMICAI, "serve", "--addr", "0.0.0.0:0", "--data-dir", str(data), "--assets", str(ROOT / "assets"),
         "--frontend", str(data / "no-frontend")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = ""
    for line in proc.stdout:
        if line.startswith("listening on "):
            break
    assert line.startswith("listening on "), "serve did not start"
    port = line.strip().rsplit(":", 1)[1]
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def test_api_conforms_to_its_openapi_document(server):
    cli = Path(sys.executable).parent / "schemathesis"
    out = subprocess.run(
        [str(cli), "run", f"{server}/api/openapi.json",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
         "--max-examples", "25", "--seed", "1"],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "Tested: 23" in out.stdout, out.stdout[-3000:]
