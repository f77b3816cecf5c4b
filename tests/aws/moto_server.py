"""moto's AWS server for the tests, with Lambda invocations run by a real function.

moto executes our state machine itself (`execute_state_machine`), but without
Docker its Lambda only echoes payloads. Given `--lambda-url`, every Invoke is
forwarded to that Lambda invoke API instead: `cargo lambda watch` serving the
real `bootstrap` binary. Prints `PORT <n>` once it listens; runs until killed.

Faults for the tests: `POST /cosmicai-faults {"DescribeExecution": 3}` makes the
next 3 calls of that Step Functions action fail with a ThrottlingException (as
real Step Functions does under load, which moto never does); `GET` tells how many
are left. S3, which speaks REST, is named by method and part of the path:
`{"S3 PUT part-000002": 1}` answers the next PUT of such a key with 503 SlowDown.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import ThreadedMotoServer

FAULTS = {}
FAULTS_LOCK = threading.Lock()


def with_faults(call):
    """Wraps moto's WSGI app: the fault endpoint, and throttling by JSON action."""

    def wrapped(self, environ, start_response):
        def reply(status, body, content_type="application/json", headers=()):
            start_response(
                status,
                [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers],
            )
            return [body]

        if environ.get("PATH_INFO") == "/cosmicai-faults":
            with FAULTS_LOCK:
                if environ["REQUEST_METHOD"] == "POST":
                    length = int(environ.get("CONTENT_LENGTH") or 0)
                    FAULTS.update(json.loads(environ["wsgi.input"].read(length) or b"{}"))
                return reply("200 OK", json.dumps(FAULTS).encode())
        action = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
        if not action:
            # S3 speaks REST: "S3 PUT <part of the path>" names its calls.
            method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
            with FAULTS_LOCK:
                action = next(
                    (
                        k
                        for k, left in FAULTS.items()
                        if left > 0 and k.startswith(f"S3 {method} ") and k.split(" ", 2)[2] in path
                    ),
                    "",
                )
                if action:
                    FAULTS[action] -= 1
            if action:
                body = (
                    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                    b"<Message>Reduce your request rate (injected by the test)</Message></Error>"
                )
                return reply("503 Slow Down", body, "application/xml")
        with FAULTS_LOCK:
            throttled = FAULTS.get(action, 0) > 0
            if throttled:
                FAULTS[action] -= 1
        if throttled:
            body = json.dumps(
                {"__type": "ThrottlingException", "message": "Rate exceeded (injected by the test)"}
            ).encode()
            return reply(
                "400 Bad Request",
                body,
                "application/x-amz-json-1.0",
                [("x-amzn-ErrorType", "ThrottlingException")],
            )
        return call(self, environ, start_response)

    return wrapped


DomainDispatcherApplication.__call__ = with_faults(DomainDispatcherApplication.__call__)


def forwarding_invoke(lambda_url, function):
    def invoke(self, function_name, qualifier, body, headers, response_headers):
        # cargo lambda serves one function, whatever the ARN names.
        url = f"{lambda_url}/2015-03-31/functions/{function}/invocations"
        request = urllib.request.Request(
            url, data=body if isinstance(body, bytes) else str(body).encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=900) as response:
                payload = response.read()
                error = response.headers.get("X-Amz-Function-Error")
        except urllib.error.HTTPError as e:
            payload, error = e.read(), "Unhandled"
        if not error:
            # A handler error arrives as {"errorType", "errorMessage"}.
            try:
                parsed = json.loads(payload or b"null")
                if isinstance(parsed, dict) and "errorType" in parsed and "errorMessage" in parsed:
                    error = "Unhandled"
            except ValueError:
                pass
        if error:
            response_headers["x-amz-function-error"] = error
        return payload

    return invoke


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lambda-url", default=None)
    # `cargo lambda watch --only-lambda-apis` names the function it serves `_`.
    parser.add_argument("--lambda-function", default="_")
    args = parser.parse_args()
    if args.lambda_url:
        LambdaSimpleBackend.invoke = forwarding_invoke(args.lambda_url.rstrip("/"), args.lambda_function)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's state machine interpreter calls the other services through this port.
    os.environ["MOTO_PORT"] = str(port)
    config = json.dumps(
        {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    ).encode()
    urllib.request.urlopen(
        urllib.request.Request(f"http://{host}:{port}/moto-api/config", data=config, method="POST")
    ).read()
    print(f"PORT {port}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
