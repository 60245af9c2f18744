"""rollback-bot: the rollback engine, its backends, the CLI and the app factory.

Nothing in this package imports Slack: `handlers/` adapts Slack to it.
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
