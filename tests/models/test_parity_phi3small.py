"""Phi-3-small parity. transformers has no Phi-3-small class (it is remote code), so the oracle is an
independent float64 numpy implementation of the documented math (docs/phi_family.md §3.3, §4.2):
muP multipliers, grouped fused qkv, interleaved clamped gegelu, tied embedding, dense/blocksparse
layers and the masked dummy-token logits. The checkpoint is written in the Hugging Face layout."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import phi_forward, record, relative_error  # noqa: E402

safetensors_numpy = pytest.importorskip("safetensors.numpy")
TOLERANCE = 1e-4
VOCAB = 100352  # the real padded vocabulary, so that the dummy-token mask is exercised
MASKED = [100256, 100258, 100259, 100260, 100264, 100265] + list(range(100267, 100352))


def make_config(long_rope=False):
    config = {
        "model_type": "phi3small", "architectures": ["Phi3SmallForCausalLM"],
        "vocab_size": VOCAB, "hidden_size": 32, "ff_intermediate_size": 48,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 256, "layer_norm_epsilon": 1e-5, "rope_embedding_base": 1e6,
        "rope_position_scale": 1.0, "gegelu_limit": 2.0, "hidden_act": "gegelu",
        "mup_use_scaling": True, "mup_attn_multiplier": 1.0, "mup_embedding_multiplier": 10.0,
        "mup_width_multiplier": 8.0, "blocksparse_block_size": 8, "blocksparse_num_local_blocks": 2,
        "blocksparse_vert_stride": 3, "blocksparse_homo_head_pattern": False,
        "blocksparse_triton_kernel_block_size": 8, "dense_attention_every_n_layers": 2,
        "bos_token_id": 100257, "eos_token_id": 100257, "torch_dtype": "float32",
        "embedding_dropout_prob": 0.1, "attention_dropout_prob": 0.0, "ffn_dropout_prob": 0.1,
        "pad_sequence_to_multiple_of_64": True, "initializer_range": 0.02,
    }
    if long_rope:
        rng = np.random.default_rng(11)
        config["rope_scaling"] = {"type": "longrope", "original_max_position_embeddings": 32,
                                  "short_factor": (1 + rng.random(4)).tolist(),
                                  "long_factor": (1 + 6 * rng.random(4)).tolist()}
    return config


def make_weights(config, seed=0):
    rng = np.random.default_rng(seed)
    H, I = config["hidden_size"], config["ff_intermediate_size"]
    nh, nkv = config["num_attention_heads"], config["num_key_value_heads"]
    D = H // nh
    qkv_rows = (nh + 2 * nkv) * D

    def normal(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = {"model.embed_tokens.weight": normal(VOCAB, H, scale=0.1)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + normal(H, scale=0.1)
        w[p + "input_layernorm.bias"] = normal(H, scale=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + normal(H, scale=0.1)
        w[p + "post_attention_layernorm.bias"] = normal(H, scale=0.1)
        w[p + "self_attn.query_key_value.weight"] = normal(qkv_rows, H)
        w[p + "self_attn.query_key_value.bias"] = normal(qkv_rows, scale=0.1)
        w[p + "self_attn.dense.weight"] = normal(H, nh * D)
        w[p + "self_attn.dense.bias"] = normal(H, scale=0.1)
        w[p + "mlp.up_proj.weight"] = normal(2 * I, H, scale=0.5)  # large enough to hit the clamps
        w[p + "mlp.up_proj.bias"] = normal(2 * I, scale=0.1)
        w[p + "mlp.down_proj.weight"] = normal(H, I)
        w[p + "mlp.down_proj.bias"] = normal(H, scale=0.1)
    w["model.final_layernorm.weight"] = 1 + normal(H, scale=0.1)
    w["model.final_layernorm.bias"] = normal(H, scale=0.1)
    return w


# ---- the float64 oracle ---------------------------------------------------------------------------

def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def rope_tables(config, T):
    D = config["hidden_size"] // config["num_attention_heads"]
    base = config["rope_embedding_base"]
    inv = 1.0 / base ** (np.arange(0, D, 2) / D)
    mscale = 1.0
    scaling = config.get("rope_scaling")
    if scaling:
        orig = scaling["original_max_position_embeddings"]
        if T > orig:
            inv = inv / np.array(scaling["long_factor"])
            s = config["max_position_embeddings"] / orig
            mscale = math.sqrt(1 + math.log(s) / math.log(orig))
        else:
            inv = inv / np.array(scaling["short_factor"])
    freqs = np.arange(T)[:, None] * inv[None, :]
    emb = np.concatenate([freqs, freqs], -1)
    return np.cos(emb) * mscale, np.sin(emb) * mscale


def rotate(x, cos, sin):  # x [heads, T, D]
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def blocksparse_visible(config, head, T):
    B = config["blocksparse_block_size"]
    local = config["blocksparse_num_local_blocks"]
    stride = config["blocksparse_vert_stride"]
    step = max(1, int(stride / config["num_attention_heads"]))
    if config["blocksparse_homo_head_pattern"]:
        step = 0
    visible = np.zeros((T, T), dtype=bool)
    for p in range(T):
        for s in range(p + 1):
            qb, kb = p // B, s // B
            visible[p, s] = (qb - kb < local) or ((kb + head * step + 1) % stride == 0)
    return visible


def oracle_logits(config, w, ids):
    H = config["hidden_size"]
    nh, nkv = config["num_attention_heads"], config["num_key_value_heads"]
    D, per = H // nh, nh // nkv
    L = config["gegelu_limit"]
    eps = config["layer_norm_epsilon"]
    T = len(ids)
    f = {k: v.astype(np.float64) for k, v in w.items()}
    x = f["model.embed_tokens.weight"][ids] * config["mup_embedding_multiplier"]
    cos, sin = rope_tables(config, T)
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = layer_norm(x, f[p + "input_layernorm.weight"], f[p + "input_layernorm.bias"], eps)
        qkv = h @ f[p + "self_attn.query_key_value.weight"].T + f[p + "self_attn.query_key_value.bias"]
        groups = qkv.reshape(T, nkv, per + 2, D)
        q = groups[:, :, :per].reshape(T, nh, D).transpose(1, 0, 2)  # head 4g+j = group g, slot j
        k = groups[:, :, per].transpose(1, 0, 2)
        v = groups[:, :, per + 1].transpose(1, 0, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        dense = (i + 1) % config["dense_attention_every_n_layers"] == 0
        out = np.zeros((nh, T, D))
        for head in range(nh):
            g = head // per
            scores = q[head] @ k[g].T * (config["mup_attn_multiplier"] / D)
            visible = causal if dense else blocksparse_visible(config, head, T)
            scores = np.where(visible, scores, -np.inf)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            out[head] = probs @ v[g]
        attn = out.transpose(1, 0, 2).reshape(T, nh * D)
        x = x + attn @ f[p + "self_attn.dense.weight"].T + f[p + "self_attn.dense.bias"]
        h = layer_norm(x, f[p + "post_attention_layernorm.weight"], f[p + "post_attention_layernorm.bias"], eps)
        up = h @ f[p + "mlp.up_proj.weight"].T + f[p + "mlp.up_proj.bias"]
        a_gelu, a_lin = up[:, 0::2], up[:, 1::2]
        a_gelu = np.minimum(a_gelu, L)
        a_lin = np.clip(a_lin, -L, L)
        act = a_gelu / (1 + np.exp(-1.702 * a_gelu)) * (a_lin + 1)
        x = x + act @ f[p + "mlp.down_proj.weight"].T + f[p + "mlp.down_proj.bias"]
    x = layer_norm(x, f["model.final_layernorm.weight"], f["model.final_layernorm.bias"], eps)
    logits = x @ f["model.embed_tokens.weight"].T / config["mup_width_multiplier"]
    logits[:, MASKED] = np.finfo(np.float32).min
    return logits


def write_model(tmp_path, config, weights, name="model", with_lm_head=False):
    model_dir = tmp_path / name
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config))
    tensors = dict(weights)
    if with_lm_head:
        tensors["lm_head.weight"] = weights["model.embed_tokens.weight"]
    safetensors_numpy.save_file(tensors, str(model_dir / "model.safetensors"))
    return model_dir


def unmasked(logits):
    keep = np.ones(logits.shape[-1], dtype=bool)
    keep[MASKED] = False
    return logits[..., keep]


def test_blocksparse_pattern_matters_at_this_length():
    config = make_config()
    for head in range(config["num_attention_heads"]):
        visible = blocksparse_visible(config, head, 64)
        assert not np.array_equal(visible, np.tril(np.ones((64, 64), dtype=bool)))


@pytest.mark.parametrize("with_lm_head", [False, True])
def test_phi3small_matches_float64_oracle(tmp_path, with_lm_head):
    config = make_config()
    weights = make_weights(config)
    model_dir = write_model(tmp_path, config, weights, with_lm_head=with_lm_head)
    rng = np.random.default_rng(7)
    sequences = [rng.integers(0, 100000, n).tolist() for n in (64, 23, 1)]
    ours = phi_forward(model_dir, sequences, tmp_path)
    worst = 0.0
    for b, seq in enumerate(sequences):
        ref = oracle_logits(config, weights, seq)
        got = ours[b, : len(seq)]
        assert np.all(got[:, MASKED] == np.finfo(np.float32).min), "dummy tokens must be masked"
        err = relative_error(unmasked(got), unmasked(ref))
        worst = max(worst, err)
        assert err <= TOLERANCE, f"length {len(seq)}: relative error {err}"
    record("phi3small", f"blocksparse, lm_head in file={with_lm_head}", worst)


def test_phi3small_longrope_matches_oracle(tmp_path):
    config = make_config(long_rope=True)
    weights = make_weights(config, seed=1)
    model_dir = write_model(tmp_path, config, weights)
    rng = np.random.default_rng(8)
    worst = 0.0
    for i, n in enumerate((20, 72)):  # within and beyond original_max_position_embeddings = 32
        seq = rng.integers(0, 100000, n).tolist()
        ours = phi_forward(model_dir, [seq], tmp_path, name=f"s{i}")[0]
        err = relative_error(unmasked(ours), unmasked(oracle_logits(config, weights, seq)))
        worst = max(worst, err)
        assert err <= TOLERANCE, f"length {n}: relative error {err}"
    record("phi3small", "longrope short+long", worst)
