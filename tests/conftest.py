import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def inspired():
    from mscrs_core.data import load_dataset
    return load_dataset("inspired")


@pytest.fixture(scope="session")
def redial():
    from mscrs_core.data import load_dataset
    return load_dataset("redial")
