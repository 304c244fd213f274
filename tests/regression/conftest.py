import pytest


def pytest_addoption(parser):
    parser.addoption("--smoke-root", default=None,
                     help="folder where nbval executed the smoke chapters (build/nbval); without it the "
                          "smoke regression test is skipped (make test passes it after nbval)")
    parser.addoption("--goldens", default=None,
                     help="golden file to compare with (default: tests/goldens/smoke-<platform>.json, this "
                          "platform's; else another platform's at the cross-platform tolerance)")


@pytest.fixture(scope="session")
def smoke_root(request):
    root = request.config.getoption("--smoke-root", default=None)
    if not root:
        pytest.skip("smoke goldens: run by `make test` after nbval (pytest tests/regression --smoke-root build/nbval)")
    return root


@pytest.fixture(scope="session")
def golden_file(request):
    import goldens

    given = request.config.getoption("--goldens", default=None)
    return (given, True) if given else goldens.golden_file()
