"""`python -m bot.cli …` is `rollback-bot …`."""

from __future__ import annotations

import sys

from bot.cli import main

sys.exit(main())
