from __future__ import annotations

import pytest

from tests.unit.trust.trust_simulator import RepositorySimulator


@pytest.fixture
def repo() -> RepositorySimulator:
    return RepositorySimulator()
