#!/usr/bin/env python3
"""Writes the small seed corpora of the libFuzzer targets into
tests/fuzz/corpus/<target>/ (run from anywhere; overwrites the seeds)."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- GGUF ----
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, t, payload):
    return gstr(key) + struct.pack("<I", t) + payload


def arr(elem_t, items):
    if elem_t == 8:
        body = b"".join(gstr(x) for x in items)
    else:
        fmt = {0: "B", 1: "b", 4: "I", 5: "i", 6: "f", 7: "?"}[elem_t]
        body = b"".join(struct.pack("<" + fmt, x) for x in items)
    return struct.pack("<IQ", elem_t, len(items)) + body


def gguf(kvs, tensors, version=3, align=32):
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    body = b"".join(kvs)
    tt = b""
    data = b""
    for name, ne, typ, raw in tensors:
        off = len(data)
        tt += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        tt += struct.pack("<IQ", typ, off)
        data += raw
        data += b"\0" * (-len(data) % align)
    blob = head + body + tt
    blob += b"\0" * (-len(blob) % align)
    return blob + data


f32 = lambda xs: b"".join(struct.pack("<f", x) for x in xs)
out("fuzz_gguf", "minimal.gguf", gguf([], []))
out("fuzz_gguf", "v2_scalars.gguf", gguf([
    kv("general.architecture", 8, gstr("llama")),
    kv("general.alignment", 4, struct.pack("<I", 32)),
    kv("llama.block_count", 4, struct.pack("<I", 1)),
    kv("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
    kv("x.u8", 0, b"\x07"), kv("x.i8", 1, b"\xff"), kv("x.u16", 2, b"\x01\x02"),
    kv("x.i16", 3, b"\xff\xff"), kv("x.i32", 5, struct.pack("<i", -3)),
    kv("x.bool", 7, b"\x01"), kv("x.u64", 10, struct.pack("<Q", 1 << 40)),
    kv("x.i64", 11, struct.pack("<q", -5)), kv("x.f64", 12, struct.pack("<d", 0.5)),
    kv("x.arr_f32", 9, arr(6, [1.0, 2.0])),
], [("token_embd.weight", [4, 2], 0, f32(range(8))),
    ("output_norm.weight", [4], 0, f32([1, 1, 1, 1]))], version=2))
# byte-level BPE tokenizer metadata (tokenizer.ggml.*)
toks = ["a", "b", "ab", "\u0120", "\u0120a", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
out("fuzz_gguf", "tok_gpt2.gguf", gguf([
    kv("general.architecture", 8, gstr("qwen3moe")),
    kv("tokenizer.ggml.model", 8, gstr("gpt2")),
    kv("tokenizer.ggml.pre", 8, gstr("qwen2")),
    kv("tokenizer.ggml.tokens", 9, arr(8, toks)),
    kv("tokenizer.ggml.token_type", 9, arr(5, [1, 1, 1, 1, 1, 3, 3, 3])),
    kv("tokenizer.ggml.merges", 9, arr(8, ["a b", "\u0120 a"])),
    kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 5)),
    kv("tokenizer.chat_template", 8, gstr("{% for message in messages %}<|im_start|>{{ message.role }}")),
], [("t", [2], 0, f32([0, 1]))]))
# SentencePiece (llama) tokenizer metadata
stoks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(256)] + ["\u2581", "a", "\u2581a", "b"]
out("fuzz_gguf", "tok_llama.gguf", gguf([
    kv("general.architecture", 8, gstr("llama")),
    kv("tokenizer.ggml.model", 8, gstr("llama")),
    kv("tokenizer.ggml.tokens", 9, arr(8, stoks)),
    kv("tokenizer.ggml.scores", 9, arr(6, [0.0] * 259 + [-1.0, -2.0, -0.5, -3.0])),
    kv("tokenizer.ggml.token_type", 9, arr(5, [2, 3, 3] + [6] * 256 + [1, 1, 1, 1])),
    kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)),
    kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2)),
    kv("tokenizer.ggml.add_bos_token", 7, b"\x01"),
], []))

# ---- safetensors ----
def st(tensors, meta=None):
    h = {}
    data = b""
    for name, dtype, shape, raw in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        h["__metadata__"] = meta
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


out("fuzz_safetensors", "empty.safetensors", st([]))
out("fuzz_safetensors", "tensors.safetensors", st([
    ("model.embed_tokens.weight", "F32", [2, 3], f32(range(6))),
    ("model.norm.weight", "F16", [4], b"\0\x3c" * 4),
    ("lm_head.weight", "BF16", [2, 2], b"\x80\x3f" * 4),
    ("ids", "I64", [1], struct.pack("<q", 7)),
], {"format": "pt"}))
out("fuzz_safetensors", "types.safetensors", st([
    ("a", "I32", [2], struct.pack("<ii", 1, 2)), ("b", "I8", [3], b"\1\2\3"),
    ("c", "F64", [1], struct.pack("<d", 1.0)), ("d", "F32", [], f32([3.0])),
    ("e", "F32", [0, 4], b""),
]))

# ---- config.json (the hyperparameters of a Hugging Face directory) ----
for fam in ("llama", "mixtral", "qwen2moe", "qwen3moe", "qwen3moe-sharded", "olmoe", "deepseek2", "deepseek2-lora",
            "deepseek3", "deepseek2-yarn", "gptoss", "switch"):
    with open(os.path.join(ROOT, "tests", "fixtures", fam, "config.json"), "rb") as f:
        out("fuzz_config", fam + ".json", f.read())
out("fuzz_config", "rope_scaling.json", json.dumps(
    {"model_type": "qwen3_moe", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
     "vocab_size": 512, "num_experts": 8, "num_experts_per_tok": 2, "mlp_only_layers": [1],
     "rope_scaling": {"rope_type": "yarn", "factor": 4.0}, "rope_parameters": {"rope_theta": 1e6}}))


# ---- tokenizer.json ----
def bpe_json(vocab, merges, added, pre, normalizer=None, **model):
    m = {"type": "BPE", "vocab": vocab, "merges": merges}
    m.update(model)
    return json.dumps({"version": "1.0", "added_tokens": added, "normalizer": normalizer,
                       "pre_tokenizer": pre, "model": m}, ensure_ascii=False)


bytelevel = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+|\\s+"},
     "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
v = {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120a": 4, "c": 5, "1": 6}
out("fuzz_tokenizer_json", "bytelevel.json", bpe_json(
    v, ["a b", ["\u0120", "a"]],
    [{"id": 7, "content": "<|endoftext|>", "special": True},
     {"id": 8, "content": "<|im_start|>", "special": True, "lstrip": True, "rstrip": False},
     {"id": 9, "content": "hello", "special": False, "single_word": True}],
    bytelevel, {"type": "NFC"}, ignore_merges=False))
sv = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581": 3, "a": 4, "\u2581a": 5, "b": 6}
sv.update({"<0x%02X>" % i: 7 + i for i in range(256)})
out("fuzz_tokenizer_json", "spm.json", bpe_json(
    sv, ["\u2581 a"],
    [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
     {"id": 2, "content": "</s>", "special": True}],
    {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
    {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                         {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    byte_fallback=True, unk_token="<unk>"))
out("fuzz_tokenizer_json", "digits.json", bpe_json(
    v, [], [], {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "Split", "pattern": {"String": "c"}, "behavior": "MergedWithPrevious", "invert": True},
        {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}]}))

# ---- tokenize ----
out("fuzz_tokenize", "prose.txt", "It is a truth universally acknowledged, that a single man in possession "
    "of a good fortune, must be in want of a wife.\n\n\"My dear Mr. Bennet,\" said his lady to him one day.")
out("fuzz_tokenize", "special.txt", "<|im_start|>user\nHello<|im_end|>\n<|endoftext|><|im_start|>assistant\n")
out("fuzz_tokenize", "mixed.bin", "caf\u00e9 \u00e9t\u00e9 \u2581x 12345 \t\t  \r\n\u4e2d\u6587 \U0001F600".encode()
    + b"\xff\xc3\x28\xe2\x82 \x00\x01")

# ---- chat (byte 0 = options; fields separated by 0x01: role, content, ...) ----
S = "\x01"
out("fuzz_chat", "basic.bin", "\x01" + S.join(["\x00", "You are terse.", "\x01", "Hi!", "\x02", "Hello.", "\x01", "Bye"]))
out("fuzz_chat", "think.bin", "\x03" + S.join(["user", "2+2?", "assistant", "<think>\nadd\n</think>\n\n4", "user", "ok"]))
out("fuzz_chat", "tool.bin", "\x15" + S.join(["developer", "Use tools.", "user", "weather?", "assistant", "call",
                                              "tool", "{\"t\": 20}", "tool", "second"]))
out("fuzz_chat", "template.bin", "\x00{%- if messages[0]['role'] == 'system' %}<|im_start|>system\n"
    "{{ messages[0]['content'] }}<|im_end|>{% endif %}<think>")

# ---- routing traces (src/experts/trace.h) ----
def trace(n_layer, n_expert, k, dim, n_pos, hidden):
    head = b"PGTR" + struct.pack("<6IQ", 1, n_layer, n_expert, k, dim, 1 if hidden else 0, n_pos)
    ids = b"".join(struct.pack("<h", ((p + l + j) % n_expert) if l else -1)
                   for p in range(n_pos) for l in range(n_layer) for j in range(k))
    w = f32([0.5] * (n_pos * n_layer * k))
    h = b"\x00\x3c" * (n_pos * n_layer * dim) if hidden else b""
    return head + ids + w + h


out("fuzz_trace", "small.trace", trace(3, 4, 2, 8, 3, True))
out("fuzz_trace", "nohidden.trace", trace(2, 8, 2, 4, 5, False))
out("fuzz_trace", "empty.trace", trace(1, 2, 1, 2, 0, False))

# ---- learned predictors (src/experts/predictor.h); fuzz_predictor's shape ----
pred_kv = [
    kv("general.architecture", 8, gstr("pregate-predictor")),
    kv("pregate.predictor.n_layer", 4, struct.pack("<I", 3)),
    kv("pregate.predictor.n_expert", 4, struct.pack("<I", 4)),
    kv("pregate.predictor.dim", 4, struct.pack("<I", 8)),
    kv("pregate.predictor.k", 4, struct.pack("<I", 2)),
    kv("pregate.predictor.model_fingerprint", 10, struct.pack("<Q", 0x5eed)),
]
heads = []
for t in (1, 2):
    heads.append(("pred.%d.weight" % t, [8, 4], 0, f32([(i % 7 - 3) * 0.1 for i in range(32)])))
    heads.append(("pred.%d.bias" % t, [4], 0, f32([0.0, 0.1, -0.1, 0.2])))
out("fuzz_predictor", "valid.gguf", gguf(pred_kv, heads))
out("fuzz_predictor", "one_head.gguf", gguf(pred_kv, heads[:2]))

# ---- openai (byte 0: bit 0 = chat; the rest is the request body) ----
out("fuzz_openai", "completion.json", "\x00" + json.dumps(
    {"model": "demo", "prompt": "It was", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "seed": 42,
     "stop": ["\n\n", "END"], "stream": True, "stream_options": {"include_usage": True}}))
out("fuzz_openai", "tokens.json", "\x00" + json.dumps({"prompt": [1, 2, 3], "n": 1, "return_token_ids": True,
                                                       "ignore_eos": True, "top_k": 40, "min_p": 0.05}))
out("fuzz_openai", "chat.json", "\x01" + json.dumps(
    {"model": "x", "messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                                {"role": "assistant", "content": None}], "max_completion_tokens": 5,
     "stop": "x"}))
out("fuzz_openai", "bad.json", b"\x01{\"messages\": [{\"role\": \"user\", \"content\": \"\xc3\"}], \"n\": 2,")
