"""Checking the home's ``config.properties`` against what installed components no longer accept.

Pure: the text of the file and the components' declarations in, findings out.
"""

from __future__ import annotations

from collections.abc import Mapping

from steppatch import _record as record
from steppatch.model import ConfigChecks

__all__ = ["ConfigFinding", "check_config", "property_keys"]


@record.frozen
class ConfigFinding:
    """One setting to correct: where it is and what to do."""

    component: str
    key: str
    line: int
    instruction: str

    def __str__(self) -> str:
        return f"config.properties line {self.line}: {self.key}: {self.instruction}"


def property_keys(text: str) -> dict[str, int]:
    """The keys a Java-style properties text sets, with the line each first appears on.

    Comments (``#``, ``!``), blank lines and continuation lines are skipped; ``key=value``,
    ``key: value`` and ``key value`` are understood.
    """
    keys: dict[str, int] = {}
    continued = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        was_continued = continued
        continued = line.endswith("\\") and not line.endswith("\\\\")
        if was_continued or not line or line[0] in "#!":
            continue
        end = len(line)
        for i, char in enumerate(line):
            if char in "=: \t" and (i == 0 or line[i - 1] != "\\"):
                end = i
                break
        key = line[:end].replace("\\", "")
        if key:
            keys.setdefault(key, number)
    return keys


def check_config(text: str, checks: Mapping[str, ConfigChecks]) -> list[ConfigFinding]:
    """Every setting in ``text`` that a component (name -> its checks) deprecates or renamed.

    Sorted by line. Cost: O(lines + declared keys).
    """
    keys = property_keys(text)
    findings = []
    for component, declared in sorted(checks.items()):
        for key in declared.deprecated:
            if key in keys:
                instruction = f"deprecated by {component}: remove it"
                findings.append(ConfigFinding(component, key, keys[key], instruction))
        for old, new in sorted(declared.renamed.items()):
            if old in keys:
                findings.append(
                    ConfigFinding(
                        component, old, keys[old], f"renamed by {component}: rename it to {new}"
                    )
                )
    return sorted(findings, key=lambda f: (f.line, f.key, f.component))
