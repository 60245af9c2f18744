"""Backends: one module per tool (git, pg_dump, boto3, a flag vendor's API), behind the Protocols in base.py.

A backend knows its tool and nothing about Slack, the CLI or the engine's step order.
"""

from __future__ import annotations
