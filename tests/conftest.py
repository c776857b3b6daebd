import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Parsed data sets are cached in a folder of this test session, not in the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DREAMFLOW_CACHE", str(tmp_path_factory.mktemp("data-cache")))
    yield
    mp.undo()
