"""Where steppatch publishes itself: the channel recipe homes follow and the tool home's variable.

A module of its own (no imports) so that the CLI shows these defaults without loading the
self-update machinery.
"""

from __future__ import annotations

__all__ = ["DEFAULT_CHANNEL", "DEFAULT_REF", "TOOL_COMPONENT", "TOOL_HOME_VARIABLE"]

TOOL_COMPONENT = "steppatch"
DEFAULT_CHANNEL = "updates/steppatch/latest.spr"
DEFAULT_REF = f"to:{DEFAULT_CHANNEL}"
TOOL_HOME_VARIABLE = "STEPPATCH_TOOL_HOME"
