"""A local cluster: one OS process per node, owned by a supervisor.

`layout` says where the cluster keeps its files, `supervisor` runs the nodes and serves
the control socket, `client` sends it one request. The `kraftboard cluster` commands
live in `broker.supervisor`.
"""


class ClusterError(Exception):
    """A failure to report to the user as it is; exit_code is the CLI's exit status."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
