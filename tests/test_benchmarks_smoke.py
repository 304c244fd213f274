"""The benchmarks' core functions run end to end on tiny random models (1 step), so they do not rot.

Only that they run and return sane numbers is checked: speed targets live in ``benchmarks/``, never in tests.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_step():
    return _load("train_step")


@pytest.fixture(scope="module")
def generation():
    return _load("generation")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny_llama(vocab: int = 64, dtype: torch.dtype = torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    m = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                     bos_token_id=vocab - 1, eos_token_id=vocab - 1, pad_token_id=vocab - 1,
                                     attn_implementation="eager"))
    return m.to(dtype).requires_grad_(False).eval()


def _finite_positive(r: dict, keys) -> None:
    for k in keys:
        assert math.isfinite(r[k]) and r[k] > 0, (k, r[k])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_train_step_compare_orders_tiny_llama(train_step, dtype):
    backbone = _tiny_llama(dtype=dtype)
    batch = train_step.make_batch(64, 2, 6, 4, 2)
    batch["attention_mask"][0, :2] = 0  # one left-padded row, as the collator writes them
    r = train_step.compare_orders(backbone, train_step.TableStandIn(train_step.N_ENTITIES, 16), batch,
                                  pad_token_id=63, n_entity_prompt=2, n_task_prompt=3, max_entities=4, steps=1,
                                  warmup=0)
    _finite_positive(r, ("prefix", "suffix_cached", "suffix_uncached", "suffix_layers", "bank_fill", "trainable"))


def test_train_step_overhead_tiny_llama(train_step):
    r = train_step.overhead_times(_tiny_llama(), train_step.TableStandIn(train_step.N_ENTITIES, 16),
                                  train_step.make_batch(64, 2, 6, 4, 2), n_entity_prompt=2, n_task_prompt=3,
                                  max_entities=4, steps=1, warmup=0)
    _finite_positive(r, ("bare", "prompted", "full", "trainable"))


@pytest.mark.parametrize("mode", [[], ["--orders", "--no-uncached"]])
def test_train_step_main_default_tiny_backbone(train_step, mode, capsys):
    r = train_step.main(mode + ["--graph", "embedding", "--batch", "2", "--seq", "6", "--max-entities", "4",
                                "--entities", "2", "--n-task-prompt", "2", "--steps", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert ("ratio prefix / cached suffix" in out) == bool(mode)
    assert ("ratio layer prompt / input prompt" in out) == bool(mode)
    assert r["trainable"] > 0


def test_generation_plain_greedy_tiny_llama(generation):
    from mscrs_core.models.tiny_dialogpt import build_gpt2_tokenizer

    tok = build_gpt2_tokenizer()
    backbone = _tiny_llama(vocab=len(tok), dtype=torch.bfloat16)
    prompts, source = generation.dialog_prompts(3, tok.eos_token, "builtin")
    assert source == "built-in dialogs" and all(p.endswith("System:") for p in prompts)
    tps, tps_cpu, prompt_len = generation.plain_greedy_tps(backbone, tok, prompts, new_tokens=3, repeats=1,
                                                           device="cpu", max_context=16)
    assert tps > 0 and tps_cpu > 0 and 0 < prompt_len <= 16


def test_generation_main_tiny_backbone(generation, capsys):
    r = generation.main(["--batch", "2", "--new-tokens", "2", "--beams", "2", "--repeats", "1",
                         "--plain-backbone", "none", "--device", "cpu"])
    assert "greedy" in capsys.readouterr().out
    _finite_positive(r, ("greedy_mscrs_tok_s", "greedy_bare_tok_s", "beam2_mscrs_tok_s", "beam2_bare_tok_s"))


def test_context_states_compare_tiny_llama():
    bench = _load("context_states")
    torch.manual_seed(3)
    rows = [tuple(torch.randint(0, 60, (n,)).tolist()) for n in (9, 2, 5, 12, 3)]
    r = bench.compare(_tiny_llama(), rows, 12, 63, 2, 1)
    _finite_positive(r, ("baseline_s", "new_s", "ratio", "baseline_positions", "new_positions"))
    assert r["baseline_positions"] == 5 * 12 and r["new_positions"] == 2 * 3 + 2 * 9 + 12  # (2,3) (5,9) (12)
    assert r["max_abs_gap"] < 1e-5  # fp32: the same states on every real position


@pytest.mark.slow
def test_attention_benchmark_decodes_inspired_turns_under_both_attentions(tmp_path):
    """benchmarks/attention.py on two real INSPIRED test turns, SmolLM2, a few tokens: both attentions decode them
    and (being the same attention) give the same responses."""
    from mscrs_core.data.files import default_data_root

    root = default_data_root()
    if root is None or not (root / "inspired").is_dir():
        pytest.skip("INSPIRED is not under the data root")
    r = _load("attention").main(["--turns", "2", "--new-tokens", "4", "--min-new-tokens", "2",
                                 "--cache-dir", str(tmp_path)])
    _finite_positive(r, ("grouped_s", "copying_s", "ratio"))
    assert r["turns"] == 2 and r["identical"] == 2


def test_layer_prompt_backward_compare_tiny_llama():
    bench = _load("layer_prompt_backward")
    r = bench.compare(_tiny_llama(), batch=2, width=6, n_prompt=3, n_response=4, repeats=1)
    _finite_positive(r, ("baseline_s", "new_s", "ratio"))
    assert r["identical"]  # the two ways give the prompt the same gradient, bit for bit


def test_allocator_compares_two_processes_on_a_tiny_llama():
    bench = _load("allocator")
    r = bench.compare(bench.parse(["--backbone", "tiny", "--batch", "2", "--width", "8", "--prompt", "2",
                                   "--response", "3", "--steps", "1"]))
    _finite_positive(r, ("ratio",))
    for name in ("default", "tunables"):
        _finite_positive(r[name], ("step_s", "peak_rss_mb"))
    assert r["same_gradients"]  # the allocator changes no number


def test_warm_kernel_compares_fresh_and_kept_kernels_on_smoke_points():
    bench = _load("warm_kernel")
    r = bench.compare(bench.parse(["--points", "2", "--profile", "smoke"]))
    _finite_positive(r, ("ratio",))
    for name in ("fresh", "kept"):
        _finite_positive(r[name], ("per_point_s", "run_s"))
    assert r["same_numbers"]  # keeping the kernel changes no number
