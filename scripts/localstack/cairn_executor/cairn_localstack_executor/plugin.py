from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class CairnProcessExecutorPlugin(RuntimeExecutorPlugin):
    """`LAMBDA_RUNTIME_EXECUTOR=cairn-process`: see executor.py."""

    name = "cairn-process"

    def load(self, *args, **kwargs):
        from cairn_localstack_executor.executor import ProcessRuntimeExecutor

        return ProcessRuntimeExecutor
