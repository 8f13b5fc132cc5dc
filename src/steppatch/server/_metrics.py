"""Counters and gauges rendered in the Prometheus text format (version 0.0.4), no dependency."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Metrics"]

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class Metrics:
    """A registry: ``inc`` counters, ``set`` gauges, ``gauge_fn`` gauges read at render time.

    Thread-safe (fills update it from worker threads).
    """

    def __init__(self, prefix: str = "steppatch_server_") -> None:
        self.prefix = prefix
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[Labels, float]] = {}
        self._fns: dict[str, Callable[[], float]] = {}
        self._lock = threading.Lock()

    def describe(self, name: str, kind: str, text: str) -> None:
        """Declare metric ``name`` (``counter`` or ``gauge``) with its help text."""
        with self._lock:
            self._help[name] = (kind, text)
            self._values.setdefault(name, {})

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to a counter."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values.setdefault(name, {})
            series[key] = series.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values.setdefault(name, {})[key] = value

    def replace(self, name: str, series: dict[Labels, float]) -> None:
        """Set every series of gauge ``name`` at once (those not given are dropped)."""
        with self._lock:
            self._values[name] = dict(series)

    def gauge_fn(self, name: str, fn: Callable[[], float]) -> None:
        """A gauge whose value ``fn`` gives when rendered."""
        with self._lock:
            self._fns[name] = fn

    def get(self, name: str, **labels: str) -> float:
        """The current value of one series (0 if never set)."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            return self._values.get(name, {}).get(key, 0)

    def total(self, name: str) -> float:
        """The sum over all label sets of ``name``."""
        with self._lock:
            return sum(self._values.get(name, {}).values())

    def render(self) -> str:
        """The text exposition format."""
        with self._lock:
            values = {n: dict(s) for n, s in self._values.items()}
            fns = dict(self._fns)
            helps = dict(self._help)
        for name, fn in fns.items():
            values.setdefault(name, {})[()] = fn()
        lines: list[str] = []
        for name in sorted(values):
            full = self.prefix + name
            kind, text = helps.get(name, ("gauge" if name in fns else "counter", name))
            lines.append(f"# HELP {full} {text}")
            lines.append(f"# TYPE {full} {kind}")
            for labels, value in sorted(values[name].items()):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                shown = int(value) if float(value).is_integer() else value
                lines.append(f"{full}{{{label_text}}} {shown}" if labels else f"{full} {shown}")
        return "\n".join(lines) + "\n"
