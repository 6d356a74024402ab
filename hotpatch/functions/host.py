"""What every function invocation starts from, built at the first invocation and kept.

Importing the Function App reads nothing: the settings are read once, when the first function
runs (a cold start pays for it, not the host's indexing), the store is opened then and kept
open for the instance's life, and each invocation opens its own Azure clients (`target`).
Tests hand the app another host (`use`): a target aimed at a sandbox, their own telemetry
providers, a clock. Production code never looks for tests.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from hotpatch import bootstrap
from hotpatch.bootstrap import Target, World
from hotpatch.core.plan import RemediationPolicy
from hotpatch.ports import Clock, Store
from hotpatch.remediation import Remediation
from hotpatch.settings import Settings
from hotpatch.telemetry import Telemetry, configure

TargetOpener = Callable[[Settings], AbstractContextManager[Target]]


@dataclass
class FunctionHost:
    """The composition root as the Function App uses it: settings from `environ` (the app
    settings), Azure as the target, the wall clock, Application Insights when configured."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    target: TargetOpener = bootstrap.azure_target
    clock: Clock = bootstrap.system_clock
    telemetry_factory: Callable[[], Telemetry] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _world: World | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)
    _telemetry: Telemetry | None = field(default=None, repr=False)

    def world(self) -> World:
        """The settings and the rules they load, read at the first call only."""
        with self._lock:
            if self._world is None:
                self._world = bootstrap.build(Settings.from_env(self.environ), self.clock)
            return self._world

    def store(self) -> Store:
        """The store HOTPATCH_STORE names, opened at the first call and kept open."""
        world = self.world()
        with self._lock:
            if self._store is None:
                self._store = bootstrap.open_compliance_store(world.settings)
            return self._store

    def telemetry(self) -> Telemetry:
        with self._lock:
            if self._telemetry is None:
                if self.telemetry_factory is not None:
                    self._telemetry = self.telemetry_factory()
                else:
                    configure(self.environ)
                    self._telemetry = Telemetry()
            return self._telemetry

    def policy(self) -> RemediationPolicy | None:
        """The remediation policy file HOTPATCH_REMEDIATION_POLICY names (None: report mode),
        read at each call: an operator may change the file between runs."""
        from hotpatch.policy_file import load_policy

        path = self.world().settings.remediation_policy
        return load_policy(path) if path is not None else None

    @contextmanager
    def remediation(self, policy: RemediationPolicy) -> Iterator[Remediation]:
        """The remediation use case over the store and a target opened for the block."""
        world, store = self.world(), self.store()
        with self.target(world.settings) as target:
            yield bootstrap.remediation(world, target, store, policy, clock=self.clock)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


_current: FunctionHost | None = None
_current_lock = threading.Lock()


def current() -> FunctionHost:
    """The host of this process (the default one, made at the first call)."""
    global _current  # noqa: PLW0603 (one host per worker process)
    with _current_lock:
        if _current is None:
            _current = FunctionHost()
        return _current


def use(host: FunctionHost | None) -> FunctionHost | None:
    """Make `host` the host of the functions (None: the default one, made at the next call);
    the host it replaces is returned."""
    global _current
    with _current_lock:
        previous, _current = _current, host
        return previous
