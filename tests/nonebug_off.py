"""No-op stand-ins for nonebug's session-scoped autouse fixtures.

nonebug's pytest plugin initialises NoneBot (reading .env from the cwd) in session fixtures.
Test folders that never touch NoneBot in-process import these into their conftest to stay
hermetic.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _nonebot_init() -> None:
    return None


@pytest.fixture(scope="session")
def after_nonebot_init() -> None:
    return None


@pytest.fixture(scope="session")
def nonebug_init() -> None:
    return None
