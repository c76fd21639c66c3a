"""
A LocalStack Lambda runtime executor that runs each execution environment as local processes
instead of a Docker container (selected with LAMBDA_RUNTIME_EXECUTOR=cairn-process).

LocalStack's own `docker` executor copies its Go `lambda-runtime-init` into a container; that
binary speaks LocalStack's executor protocol (POST /invoke from LocalStack; callbacks to
`<LOCALSTACK_RUNTIME_ENDPOINT>/status/<id>/ready|error` and
`/invocations/<request id>/logs|response|error` on LocalStack's gateway) and serves the Lambda
Runtime API to the language runtime. Here `init.mjs` (Node.js) plays that part, and
`runtime.mjs` is the Node.js runtime client that loads the function's handler from its
unzipped code. Each environment gets its own two ports on 127.0.0.1.

Written against localstack-core 4.9.2 (services/lambda_/invocation/docker_runtime_executor.py,
executor_endpoint.py, runtime_executor.py).
"""

import logging
import os
import shutil
import signal
import subprocess
import threading
from collections import deque
from pathlib import Path

from localstack import config
from localstack.services.lambda_.invocation.executor_endpoint import ExecutorEndpoint
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)
from localstack.utils.net import get_free_tcp_port

LOG = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
INIT = HERE / "init.mjs"
RUNTIME = HERE / "runtime.mjs"
# Inherited from LocalStack's own environment; everything else comes from LocalStack's env_vars.
PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "NODE_EXTRA_CA_CERTS")
MAX_LOG_LINES = 2000


def _node() -> str:
    node = os.environ.get("CAIRN_LAMBDA_NODE") or shutil.which("node")
    if not node:
        raise LambdaRuntimeException("cairn-process executor: no `node` on PATH (set CAIRN_LAMBDA_NODE)")
    return node


class ProcessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.invoke_port = get_free_tcp_port()
        self.runtime_api_port = get_free_tcp_port()
        self.executor_endpoint = ExecutorEndpoint(self.id, container_address="127.0.0.1", container_port=self.invoke_port)
        self.process: subprocess.Popen | None = None
        self.log_lines: deque[str] = deque(maxlen=MAX_LOG_LINES)
        self.log_file: Path | None = None

    def start(self, env_vars: dict[str, str]) -> None:
        package_type = getattr(self.function_version.config.package_type, "value", self.function_version.config.package_type)
        if package_type != "Zip" or not self.function_version.config.runtime:
            raise LambdaRuntimeException("cairn-process executor runs zip functions only")
        runtime = str(getattr(self.function_version.config.runtime, "value", self.function_version.config.runtime))
        if not runtime.startswith("nodejs"):
            raise LambdaRuntimeException(f"cairn-process executor runs Node.js functions only, not {runtime}")
        self.executor_endpoint.start()
        code_dir = str(self.function_version.config.code.get_unzipped_code_location())
        env = {name: os.environ[name] for name in PASS_THROUGH if name in os.environ}
        env.update({key: str(value) for key, value in env_vars.items()})
        env.update(
            {
                "LAMBDA_TASK_ROOT": code_dir,
                "LAMBDA_RUNTIME_DIR": str(HERE),
                "CAIRN_INIT_INVOKE_PORT": str(self.invoke_port),
                "CAIRN_INIT_RUNTIME_API_PORT": str(self.runtime_api_port),
                "CAIRN_INIT_RUNTIME": str(RUNTIME),
                "CAIRN_INIT_NODE": _node(),
            }
        )
        log_dir = Path(os.environ.get("CAIRN_LAMBDA_LOG_DIR") or Path(config.dirs.tmp) / "cairn-lambda")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = log_dir / f"{self.function_version.id.function_name}-{self.id}.log"
        LOG.debug("cairn-process: starting %s (%s) on ports %s/%s", self.function_version.qualified_arn, self.id, self.invoke_port, self.runtime_api_port)
        self.process = subprocess.Popen(
            [_node(), str(INIT)],
            cwd=code_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # In LocalStack's own process group: stopping LocalStack's group stops every function.
        )
        threading.Thread(target=self._pump_output, name=f"cairn-lambda-{self.id}", daemon=True).start()
        self.executor_endpoint.wait_for_startup()

    def _pump_output(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        with open(self.log_file, "ab") as sink:
            for raw in iter(process.stdout.readline, b""):
                sink.write(raw)
                sink.flush()
                self.log_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        code = process.wait()
        if code not in (0, -signal.SIGTERM, -signal.SIGKILL):
            LOG.warning("cairn-process: init of %s exited with %s (log: %s)", self.id, code, self.log_file)
        future = self.executor_endpoint.startup_future
        if future is not None and not future.done():
            from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException

            future.set_exception(StatusErrorException(f"init exited with {code}", payload=b""))

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            # init.mjs kills its runtime on SIGTERM.
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        try:
            self.executor_endpoint.shutdown()
        except Exception as e:  # noqa: BLE001 (as the docker executor: best effort)
            LOG.debug("cairn-process: error stopping the endpoint of %s: %s", self.id, e)

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}{self.executor_endpoint.get_endpoint_prefix()}"

    def invoke(self, payload: dict[str, str]):
        return self.executor_endpoint.invoke(payload)

    def get_logs(self) -> str:
        return "\n".join(self.log_lines)

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        if not (os.environ.get("CAIRN_LAMBDA_NODE") or shutil.which("node")):
            LOG.warning("cairn-process executor: no `node` on PATH; Lambda functions cannot run")
            return False
        return True
