#!/usr/bin/env python3
"""Writes a sentence-transformers BERT model (a folder with config.json,
model.safetensors, tokenizer.json and 1_Pooling/config.json) as a GGUF file
that llama.cpp runs as an embedding model.

    bert-gguf.py MODEL_DIR OUT.gguf [--name NAME] [--outtype f32|f16]

What sentence-transformers does around the transformer is carried over
into metadata: its pooling (mean, CLS or last token) and its window
(`max_seq_length` in sentence_bert_config.json), which becomes the model's
context; the position embeddings are cut to that window, since llama.cpp
sizes them by the context. The WordPiece vocabulary is written in
llama.cpp's convention: a word-initial piece starts with U+2581, a
continuation (`##x`) loses its `##`.

Needs the `gguf` and `numpy` packages.
"""
import argparse
import json
import struct
import sys
from pathlib import Path

import gguf
import numpy as np

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def read_safetensors(path):
    """Name -> array, read with numpy alone (the format is a JSON header
    followed by raw little-endian tensors)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start : base + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<"))
        tensors[name] = arr.reshape(info["shape"])
    return tensors


def tensor_names(n_layer):
    """Hugging Face BertModel names -> llama.cpp's BERT names."""
    names = {
        "embeddings.word_embeddings.weight": "token_embd.weight",
        "embeddings.token_type_embeddings.weight": "token_types.weight",
        "embeddings.position_embeddings.weight": "position_embd.weight",
        "embeddings.LayerNorm.weight": "token_embd_norm.weight",
        "embeddings.LayerNorm.bias": "token_embd_norm.bias",
    }
    per_layer = {
        "attention.self.query": "attn_q",
        "attention.self.key": "attn_k",
        "attention.self.value": "attn_v",
        "attention.output.dense": "attn_output",
        "attention.output.LayerNorm": "attn_output_norm",
        "intermediate.dense": "ffn_up",
        "output.dense": "ffn_down",
        "output.LayerNorm": "layer_output_norm",
    }
    for i in range(n_layer):
        for hf, ll in per_layer.items():
            for part in ("weight", "bias"):
                names[f"encoder.layer.{i}.{hf}.{part}"] = f"blk.{i}.{ll}.{part}"
    return names


def phantom(token):
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def pooling_of(model_dir):
    cfg = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    if cfg.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if cfg.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    if cfg.get("pooling_mode_lasttoken"):
        return gguf.PoolingType.LAST
    sys.exit(f"unsupported pooling in {model_dir}/1_Pooling/config.json: {cfg}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--name", default=None)
    ap.add_argument("--outtype", choices=("f32", "f16"), default="f32")
    args = ap.parse_args()
    d = args.model_dir

    cfg = json.loads((d / "config.json").read_text())
    if cfg.get("model_type") != "bert":
        sys.exit(f"{d}: model_type {cfg.get('model_type')!r} is not bert")
    st_cfg_path = d / "sentence_bert_config.json"
    st_cfg = json.loads(st_cfg_path.read_text()) if st_cfg_path.exists() else {}
    window = min(int(st_cfg.get("max_seq_length", cfg["max_position_embeddings"])), cfg["max_position_embeddings"])
    n_layer = cfg["num_hidden_layers"]

    tok = json.loads((d / "tokenizer.json").read_text())
    if tok["model"]["type"] != "WordPiece":
        sys.exit(f"{d}: tokenizer {tok['model']['type']} is not WordPiece")
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        sys.exit(f"{d}: vocabulary ids are not 0..n-1")
    special = {t["id"] for t in tok.get("added_tokens", []) if t.get("special")}
    tokens = [phantom(t) for t, _ in vocab]
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in vocab]
    lowercase = bool(tok.get("normalizer", {}).get("lowercase", True))
    strip_accents = tok.get("normalizer", {}).get("strip_accents")

    ids = {t: i for t, i in vocab}
    w = gguf.GGUFWriter(str(args.out), "bert")
    w.add_name(args.name or d.name)
    w.add_context_length(window)
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(n_layer)
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(pooling_of(d))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if args.outtype == "f16" else gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_type_count(cfg.get("type_vocab_size", 1))
    w.add_bool("tokenizer.ggml.normalizer.lowercase", lowercase)
    if strip_accents is not None:
        w.add_bool("tokenizer.ggml.normalizer.strip_accents", bool(strip_accents))
    for name, add in (
        ("[CLS]", w.add_bos_token_id),
        ("[SEP]", w.add_sep_token_id),
        ("[UNK]", w.add_unk_token_id),
        ("[PAD]", w.add_pad_token_id),
        ("[MASK]", w.add_mask_token_id),
    ):
        if name in ids:
            add(ids[name])

    names = tensor_names(n_layer)
    tensors = read_safetensors(d / "model.safetensors")
    for hf, arr in tensors.items():
        if hf.startswith("pooler.") or hf == "embeddings.position_ids":
            continue  # sentence-transformers does not use them
        if hf not in names:
            sys.exit(f"unexpected tensor {hf}")
        arr = arr.astype(np.float32)
        if hf == "embeddings.position_embeddings.weight":
            arr = arr[:window]
        if args.outtype == "f16" and arr.ndim == 2 and not names[hf].startswith(("token_types", "position_embd")):
            arr = arr.astype(np.float16)
        w.add_tensor(names[hf], np.ascontiguousarray(arr))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
