"""The RDS Proxy stand-in as a supervised child: it dies with ``serve`` (PR_SET_PDEATHSIG) and reports its exit."""

from __future__ import annotations

from typing import Any

from local.common.processes import die_with_parent
from local.data_plane.rdsproxy import ProxyProcess


class SupervisedProxy(ProxyProcess):
    """`ProxyProcess` whose child gets SIGKILL when the thread that started it ends (kill -9 of serve included).

    It runs in its own process group, so a Ctrl-C in the terminal reaches only ``serve``, which stops it in order.
    """

    def _popen_options(self) -> dict[str, Any]:
        return {
            "preexec_fn": die_with_parent,
            "process_group": 0,  # no terminal Ctrl-C: serve stops it in order (else the supervisor restarts it)
        }

    @property
    def running(self) -> bool:
        """True while the child runs; reaps it once it has exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None
