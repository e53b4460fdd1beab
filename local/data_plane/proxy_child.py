"""The RDS Proxy stand-in as a supervised child: it dies with ``serve`` (PR_SET_PDEATHSIG) and reports its exit."""

from __future__ import annotations

import subprocess

from local.data_plane.rdsproxy import ProxyProcess
from local.processes import die_with_parent
from modules.project import REPO_ROOT


class SupervisedProxy(ProxyProcess):
    """`ProxyProcess` whose child gets SIGKILL when the thread that started it ends (kill -9 of serve included).

    It runs in its own process group, so a Ctrl-C in the terminal reaches only ``serve``, which stops it in order.
    """

    def start(self, timeout: float = 30) -> SupervisedProxy:
        from local.data_plane.rdsproxy.__main__ import build_command

        command, read_ports = build_command(self.config, self._python)
        self._process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            preexec_fn=die_with_parent,
            process_group=0,  # no terminal Ctrl-C: serve stops it in order (else the supervisor restarts it)
        )
        try:
            self.port, self.stats_port = read_ports(self._process, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        """True while the child runs; reaps it once it has exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None
