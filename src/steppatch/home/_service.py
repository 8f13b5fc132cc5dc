"""Starting and stopping the application a home runs, with the commands its config names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Protocol

from steppatch.config import ServiceConfig
from steppatch.errors import ServiceError

__all__ = ["Service", "ShellService"]


class Service(Protocol):
    """The application's lifecycle. Every method raises :class:`ServiceError` on failure."""

    def stop(self) -> None:
        """Stop the application (a no-op when no stop command is configured)."""
        ...

    def start(self) -> None:
        """Start the application (a no-op when no start command is configured)."""
        ...

    def running(self) -> bool | None:
        """Whether it runs; ``None`` when no status command is configured."""
        ...


class ShellService:
    """Runs the configured commands with ``/bin/sh -c`` in the home, bounded by ``timeout``."""

    def __init__(self, config: ServiceConfig, home: Path, timeout: float) -> None:
        self.config = config
        self.home = home
        self.timeout = timeout

    def _run(self, action: str, command: str) -> int:
        env = {**os.environ, "STEPPATCH_HOME": str(self.home)}
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", command], cwd=self.home, env=env, capture_output=True,
                text=True, timeout=self.timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            raise ServiceError(action, command, None, f"no answer in {self.timeout:g} s") from None
        except OSError as e:
            raise ServiceError(action, command, None, str(e)) from e
        if action != "status" and done.returncode != 0:
            output = (done.stderr or done.stdout).strip().splitlines()
            raise ServiceError(action, command, done.returncode, output[-1] if output else "")
        return done.returncode

    def stop(self) -> None:
        if self.config.stop:
            self._run("stop", self.config.stop)

    def start(self) -> None:
        if self.config.start:
            self._run("start", self.config.start)

    def running(self) -> bool | None:
        if not self.config.status:
            return None
        return self._run("status", self.config.status) == 0
