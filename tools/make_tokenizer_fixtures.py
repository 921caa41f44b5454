#!/usr/bin/env python3
"""Tokenizer and chat-template fixtures computed with Hugging Face
`tokenizers` / `transformers` (run by hand; neither the build nor the tests
need Python).

    python tools/make_tokenizer_fixtures.py [--shared ../shared/data]
        [--template gptoss=FILE.jinja] [--template mistral=FILE.jinja]
        [--bench]

Writes, under tests/fixtures/:

  tokenizer/corpus.jsonl    the test strings (one JSON string a line, >= 2,000)
  tokenizer/NAME.ids        for each tokenizer, one line per string: the ids
                            Hugging Face gives (`encode(s, add_special_tokens=
                            False)`: added/special tokens written in the text
                            are matched), separated by spaces, and, after a
                            tab, the JSON string of the decoded bytes where it
                            is not the string itself (NFC normalisation;
                            SentencePiece's space after a special token)
  tokenizer/added_flags.jsonl  {"text", "ids"} with the qwen3 tokenizer whose
                            added tokens get lstrip/rstrip/single_word flags
  tokenizer/split_variants.jsonl  the qwen3 vocabulary with other
                            pre-tokenizers (Split behaviours, invert, Digits):
                            a {"pre_tokenizers"} line, then {"text", "ids"} lines
  chat/NAME.jsonl           {"messages", "add_generation_prompt", "text", "ids"}
                            (+ "enable_thinking", "date" where they apply):
                            `apply_chat_template(..., tokenize=False)` with the
                            template of tokenizer_config.json, or --template
                            where that has none (gpt-oss and Mistral here: pass
                            the chat_template.jinja of openai/gpt-oss-20b and
                            the chat_template of Mixtral-8x7B-Instruct-v0.1;
                            llama2 / llama3: Llama-2-7b-chat-hf's and
                            Meta-Llama-3-8B-Instruct's, optional)

NAME: qwen3, deepseek_v3, gptoss, mistral (../shared/data/tokenizers/NAME/),
llama2 (the vocabulary of ../shared/data/models/llama-2-tiny-random.gguf,
loaded by transformers' GGUF reader, which converts it to a `tokenizers`
SentencePiece-BPE tokenizer with merges from the scores; its pre-tokenizer is
then replaced by Llama-2's legacy Prepend/Replace normalizer, as in Meta's
tokenizer.json) and demo-moe (models/demo-moe.tokenizer.json).

--bench encodes the Austen corpus with the qwen3 tokenizer single-threaded
(RAYON_NUM_THREADS=1, one `encode` call) and prints MB/s, to compare with
`test_tokenizer`'s line (PREGATE_TOK_BENCH=1).
"""
import argparse
import json
import os
import random
import sys
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

HAND = [
    # whitespace shapes
    "", " ", "  ", "   ", "\n", "\n\n", "\n\n\n", " \n ", "\t", "\t\t", " \t \n", "a  b", "a   b",
    "a    b", "  leading", "trailing  ", "trailing \n", "x\r\ny", "\r\n\r\n", "\r", "line1\n\n\nline2",
    "   \n\t  x", "tabs\t\tand spaces  ", "word \n  word", "end.\n", "\n start", " a b c d e ",
    "indented:\n    code()\n        more()", "a\u00a0b", "a\u2003b", "x\u3000y", "zero\u200bwidth",
    "a\u0085b", "a\u2028b", "\u00a0\u00a0lead", "\v\f", "a\x0bb\x0cc", " " * 40, "\n" * 17, "\t \t \t",
    # digits
    "0", "12", "123", "1234", "1234567890", "3.14159", "1,000,000", "year 1811", "v2.0.1",
    "2+2=4", "phone: 555-0199", "12abc34", "x1y22z333", "\u0661\u0662\u0663", "\u00bd and \u00b2",
    "\uff11\uff12\uff13", "\u0967\u0968\u0969", "1e-10", "-0.5", "0x1F", "12345678901234567890",
    # punctuation runs and contractions
    "!!!", "?!", "...", "\u2014", "--", "---", "\"quoted\"", "'single'", "it's", "IT'S", "We'LL",
    "we'll", "they've", "I'm", "you'd", "she's", "don't", "'s", "''", "(parens)", "[brackets]",
    "{braces}", "a,b;c:d", "#hashtag @mention", "https://example.com/path?q=1&r=2", "foo_bar-baz",
    "<html><body>", "C++ && C#", "~`^|\\", "$100.00 (approx.)", "50% off!!", "e-mail: a.b@c.org",
    "\u201csmart quotes\u201d and \u2018apostrophes\u2019", "\u00abguillemets\u00bb", "a/b\\c",
    "...and then?!", " !?", "?\n\n", "!\r\n", "*** END ***", "'S", "'Ll", "x'y", "''s", "'''",
    # unicode
    "caf\u00e9", "na\u00efve", "Z\u00fcrich", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u4e2d\u6587\u5b57\u7b26", "\ud55c\uad6d\uc5b4",
    "\u05e2\u05d1\u05e8\u05d9\u05ea", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\u0939\u093f\u0928\u094d\u0926\u0940", "\u00c0\u00c9\u00ce\u00d5\u00dc", "\u00df", "\ufb01",
    "Stra\u00dfe und Gr\u00f6\u00dfe", "\u00e9t\u00e9 \u00e0 Paris", "\u2603 snow", "\u00a9 2024",
    "math: \u2200x\u2208\u211d, x\u00b2\u22650", "\u2190\u2192\u2191\u2193", "\U0001d54f\U0001d56a",
    # emoji
    "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "\U0001f1ec\U0001f1e7", "hello \U0001f30d world", "\u2764\ufe0f", "\U0001f600\U0001f600\U0001f600",
    "ok\U0001f44c.", " \U0001f680\n", "1\ufe0f\u20e3", "\U0001f3f3\ufe0f\u200d\U0001f308",
    "\U0001f469\U0001f3fe\u200d\U0001f4bb", "\U0001f1fa\U0001f1f8\U0001f1eb\U0001f1f7\U0001f1ef\U0001f1f5",
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
]

SCRIPTS = {
    "cjk": "\u6625\u7720\u4e0d\u89c9\u6653\uff0c\u5904\u5904\u95fb\u557c\u9e1f\u3002\u591c\u6765\u98ce\u96e8\u58f0\uff0c\u82b1\u843d\u77e5\u591a\u5c11\u3002\u6211\u4eec\u4eca\u5929\u53bb\u5317\u4eac\u5927\u5b66\u53c2\u89c2\u3002",
    "ja": "\u543e\u8f29\u306f\u732b\u3067\u3042\u308b\u3002\u540d\u524d\u306f\u307e\u3060\u7121\u3044\u3002\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3001\u30b3\u30f3\u30d4\u30e5\u30fc\u30bf\u30fc\u3002",
    "ar": "\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0647\u064a \u0625\u062d\u062f\u0649 \u0623\u0643\u062b\u0631 \u0627\u0644\u0644\u063a\u0627\u062a \u0627\u0646\u062a\u0634\u0627\u0631\u0627\u064b \u0641\u064a \u0627\u0644\u0639\u0627\u0644\u0645\u060c \u0648\u064e\u0627\u0644\u0652\u0643\u0650\u062a\u064e\u0627\u0628\u064f.",
    "hi": "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0930\u0924 \u0915\u0940 \u0938\u092c\u0938\u0947 \u0905\u0927\u093f\u0915 \u092c\u094b\u0932\u0940 \u091c\u093e\u0928\u0947 \u0935\u093e\u0932\u0940 \u092d\u093e\u0937\u093e \u0939\u0948\u0964 \u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f \u0936\u094d\u0930\u0940",
    "ru": "\u0412 \u043d\u0430\u0447\u0430\u043b\u0435 \u0431\u044b\u043b\u043e \u0421\u043b\u043e\u0432\u043e, \u0438 \u0421\u043b\u043e\u0432\u043e \u0431\u044b\u043b\u043e \u0443 \u0411\u043e\u0433\u0430. \u0401\u043b\u043a\u0430 \u0438 \u0451\u0436\u0438\u043a! \u041c\u041e\u0421\u041a\u0412\u0410 2024",
    "el": "\u0395\u03bd \u03b1\u03c1\u03c7\u03ae \u03b7\u03bd \u03bf \u03bb\u03cc\u03b3\u03bf\u03c2, \u03ba\u03b1\u03b9 \u03bf \u03bb\u03cc\u03b3\u03bf\u03c2 \u03b7\u03bd \u03c0\u03c1\u03bf\u03c2 \u03c4\u03bf\u03bd \u03b8\u03b5\u03cc\u03bd. \u0391\u0398\u0397\u039d\u0391 \u1f08\u03b8\u1fc6\u03bd\u03b1\u03b9",
    "th": "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\u0e40\u0e1b\u0e47\u0e19\u0e20\u0e32\u0e29\u0e32\u0e23\u0e32\u0e0a\u0e01\u0e32\u0e23\u0e02\u0e2d\u0e07\u0e1b\u0e23\u0e30\u0e40\u0e17\u0e28\u0e44\u0e17\u0e22 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
    "ko": "\ud55c\uad6d\uc5b4\ub294 \ub300\ud55c\ubbfc\uad6d\uacfc \uc870\uc120\ubbfc\uc8fc\uc8fc\uc758\uc778\ubbfc\uacf5\ud654\uad6d\uc758 \uacf5\uc6a9\uc5b4\uc774\ub2e4. \uc548\ub155\ud558\uc138\uc694!",
    "he": "\u05d1\u05bc\u05b0\u05e8\u05b5\u05d0\u05e9\u05c1\u05b4\u05d9\u05ea \u05d1\u05bc\u05b8\u05e8\u05b8\u05d0 \u05d0\u05b1\u05dc\u05b9\u05d4\u05b4\u05d9\u05dd \u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "mix": "Hello \u4e16\u754c! \u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440. \u0645\u0631\u062d\u0628\u0627 123 \u0928\u092e\u0938\u094d\u0924\u0947 \u03b3\u03b5\u03b9\u03b1 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \uc548\ub155 \u3053\u3093\u306b\u3061\u306f",
}

EMOJI = ["\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
         "\U0001f1ec\U0001f1e7", "\U0001f1e9\U0001f1ea", "\u2764\ufe0f", "\U0001f3f3\ufe0f\u200d\U0001f308",
         "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1", "\U0001f469\U0001f3fe\u200d\U0001f4bb", "#\ufe0f\u20e3",
         "\U0001f63a", "\U0001f525", "\u2728", "\U0001f44b\U0001f3fb", "\U0001f1ef\U0001f1f5", "\U0001f937\u200d\u2642\ufe0f"]

COMBINING = ["e\u0301", "a\u0308\u0301", "o\u0302\u0323", "n\u0303", "\u1100\u1161\u11a8", "A\u030a",
             "\u0065\u0301\u0301\u0301", "i\u0307\u0301", "Z\u0335\u0321\u0327", "c\u0327a va", "\u212b", "\u2126",
             "\u0915\u093c", "\u00c5", "\u1e9b\u0323", "q\u0307\u0323", "u\u0308\u0304", "\u0300start", "\u05d1\u05bc"]

ODD = ["\ufffd", "\ufeffBOM", "\ufffe", "\ufdd0", "\ue000", "\U0010fffd", "\U000f0000", "\ud7ff", "\u00ad",
       "\x00", "nul\x00inside", "\x01\x02\x03", "\x1b[31mred\x1b[0m", "\x7f", "\u0080\u009f", "\u200e\u200f",
       "\u2060", "\u034f", "\u180e", "\U0001f000", "\U00020000\U0002a6d6", "\u0378", "\uffff"]

SPECIAL_TEXT = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
                "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>",
                "<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>", "<|start|>", "<|message|>", "<|end|>",
                "<|channel|>", "<|return|>", "<s>", "</s>", "<unk>", "[INST]", "<|im_sta", "<|im_start|",
                "<<|im_end|>>", "<s><s>", "< s>", "<|reserved_200000|>"]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\n\nint main(void) {\n\tprintf(\"hello, world\\n\");\n\treturn 0;\n}\n",
    "for (size_t i = 0; i < n; i++) { sum += a[i] * b[i]; }  // dot\n",
    "{\"name\": \"pregate\", \"version\": [1, 2, 3], \"ok\": true, \"x\": null}",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "if [ -f \"$HOME/.bashrc\" ]; then\n  . \"$HOME/.bashrc\"\nfi\nexport PATH=$PATH:/usr/local/bin",
    "const add = (a, b) => a + b;\nconsole.log(`sum=${add(1, 2)}`);\n",
    "    }\n  }\n}\n\n\n", "x=1;y=2;z=x**y//3%4", "<div class=\"a\">\n  <p>text</p>\n</div>",
    "fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![0; 16];\n    Ok(())\n}",
    "    # comment with trailing spaces   \n\tmixed\t indent\n", "a->b && c->d || !e", "__init__(self, *args, **kwargs)",
]


def load_corpora(shared):
    out = []
    for name in ("austen_novels.txt", "kjv.txt"):
        p = os.path.join(shared, "corpora", name)
        with open(p, encoding="utf-8", newline="") as f:
            out.append(f.read())
    return out


def build_strings(shared):
    rng = random.Random(20261122)
    texts = load_corpora(shared)
    S = list(HAND)
    # prose cut at random points (including mid-word), from both corpora
    for i in range(1000):
        text = texts[i % 2]
        a = rng.randrange(0, len(text) - 600)
        S.append(text[a:a + rng.choice([1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 400])])
    # code, cut at random points
    for i in range(120):
        c = rng.choice(CODE) + rng.choice(CODE)
        a = rng.randrange(0, len(c))
        S.append(c[a:a + rng.randrange(1, 120)])
    # whitespace shapes
    atoms = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "x", "ab", ".", "1", "\u00e9", "\u4e2d"]
    for i in range(200):
        S.append("".join(rng.choice(atoms) for _ in range(rng.randrange(1, 12))))
    # numbers
    for i in range(120):
        k = rng.randrange(6)
        if k == 0: s = str(rng.randrange(10 ** rng.randrange(1, 25)))
        elif k == 1: s = f"{rng.uniform(-1e6, 1e6):.{rng.randrange(0, 8)}f}"
        elif k == 2: s = f"{rng.randrange(1, 10**9):,}"
        elif k == 3: s = " ".join(str(rng.randrange(1000)) for _ in range(rng.randrange(2, 8)))
        elif k == 4: s = f"in {rng.randrange(1700, 2100)} there were {rng.randrange(100000)} of them"
        else: s = "".join(rng.choice("0123456789.,-+e ") for _ in range(rng.randrange(1, 30)))
        S.append(s)
    # punctuation runs
    punct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\u2014\u2013\u2026\u00bf\u00a1\u201c\u201d\u2018\u2019\u00ab\u00bb\u3002\uff0c"
    for i in range(120):
        s = "".join(rng.choice(punct) for _ in range(rng.randrange(1, 15)))
        if rng.random() < 0.5:
            s = rng.choice(["word", " word", "I", "it", "x"]) + s + rng.choice(["", " next", "s", "\n", "ll"])
        S.append(s)
    # scripts
    for i in range(240):
        t = SCRIPTS[rng.choice(sorted(SCRIPTS))]
        a = rng.randrange(0, len(t))
        S.append(t[a:a + rng.randrange(1, 60)])
    # emoji
    for i in range(100):
        parts = [rng.choice(EMOJI) for _ in range(rng.randrange(1, 5))]
        seps = ["", " ", "x", "\n", "!"]
        S.append("".join(p + rng.choice(seps) for p in parts))
    # combining marks (not NFC on purpose)
    for i in range(80):
        parts = [rng.choice(COMBINING) for _ in range(rng.randrange(1, 4))]
        S.append(rng.choice(["", "word ", " "]).join(parts) + rng.choice(["", " end", "s"]))
    # odd but valid UTF-8
    for i in range(60):
        S.append(rng.choice(["", "a", " ", "x "]) + rng.choice(ODD) + rng.choice(["", "b", " y", "\n"]))
    # special-token text inside prose
    for i in range(140):
        text = texts[0]
        a = rng.randrange(0, len(text) - 200)
        p = text[a:a + rng.randrange(5, 80)]
        for _ in range(rng.randrange(1, 3)):
            k = rng.randrange(len(p) + 1)
            sp = rng.choice(SPECIAL_TEXT)
            p = p[:k] + rng.choice(["", " ", "\n"]) + sp + rng.choice(["", " ", "\n"]) + p[k:]
        S.append(p)
    # 10 kB strings
    a = rng.randrange(0, len(texts[0]) - 20000)
    S.append(texts[0][a:a + 10240])
    a = rng.randrange(0, len(texts[1]) - 20000)
    S.append(texts[1][a:a + 10240])
    S.append("".join(rng.choice(list(SCRIPTS.values()) + CODE + EMOJI) for _ in range(200))[:10240])
    S.append(" " * 3000 + "\n" * 3000 + "\t" * 1000 + "x" * 3000)
    return S


def hf_bytes_bytelevel():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_bytes(tok, spm, u2b, special_ids):
    """id -> raw bytes the way pregate's pg_token_to_bytes gives them."""
    vocab = tok.get_vocab(with_added_tokens=True)
    out = {}
    for s, i in vocab.items():
        if i in special_ids:
            out[i] = s.encode("utf-8")
        elif spm:
            if len(s) == 6 and s.startswith("<0x") and s.endswith(">"):
                out[i] = bytes([int(s[3:5], 16)])
            else:
                out[i] = s.replace("\u2581", " ").encode("utf-8")
        else:
            out[i] = bytes(u2b[c] if c in u2b else 0 for c in s) if all(c in u2b for c in s) else s.encode("utf-8")
    return out


def load_tokenizers(args):
    from tokenizers import Tokenizer
    toks = {}
    base = os.path.join(args.shared, "tokenizers")
    for name in ("qwen3", "deepseek_v3", "gptoss", "mistral"):
        toks[name] = Tokenizer.from_file(os.path.join(base, name, "tokenizer.json"))
    demo = os.path.join(ROOT, "models", "demo-moe.tokenizer.json")
    if os.path.exists(demo):
        toks["demo-moe"] = Tokenizer.from_file(demo)
    gguf = os.path.join(args.shared, "models", "llama-2-tiny-random.gguf")
    if os.path.exists(gguf):
        from transformers import AutoTokenizer
        t = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
        # transformers' GGUF reader builds the BPE vocabulary and merges (from
        # the scores) but a Metaspace(prepend_scheme="first") pre-tokenizer;
        # Llama-2's own tokenizer.json (and sentencepiece, and llama.cpp) use
        # the legacy Prepend + Replace normalizer: put that one in.
        j = json.loads(t.backend_tokenizer.to_str())
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        j["pre_tokenizer"] = None
        toks["llama2"] = Tokenizer.from_str(json.dumps(j))
    return toks


def write_tokenizer_fixtures(args, strings):
    outdir = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for s in strings:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    u2b = hf_bytes_bytelevel()
    for name, tok in load_tokenizers(args).items():
        spm = "Metaspace" in tok.to_str()[:20000] or name in ("mistral", "llama2")
        special_ids = set(tok.get_added_tokens_decoder())
        tb = token_bytes(tok, spm, u2b, special_ids)
        n_rt = 0
        with open(os.path.join(outdir, name + ".ids"), "w", encoding="utf-8") as f:
            for s in strings:
                ids = tok.encode(s, add_special_tokens=False).ids
                dec = b"".join(tb[i] for i in ids)
                want = s.encode("utf-8")
                if spm and dec.startswith(b" ") and s:
                    dec = dec[1:]
                line = " ".join(map(str, ids))
                if dec != want:
                    line += "\t" + json.dumps(dec.decode("utf-8", errors="surrogateescape"), ensure_ascii=True)
                    n_rt += 1
                f.write(line + "\n")
        print(f"tokenizer/{name}.ids: {len(strings)} strings, {n_rt} decode to other text")


# Added-token flags, on the qwen3 tokenizer with flags changed (the test
# makes the same change): <think> lstrip, </think> rstrip, <tool_call>
# single_word, <|im_start|> lstrip+rstrip.
FLAGS = {"<think>": ("lstrip",), "</think>": ("rstrip",), "<tool_call>": ("single_word",),
         "<|im_start|>": ("lstrip", "rstrip")}
FLAG_TEXTS = ["a <think> b", "a  \n<think>\n b", "x</think>  \n y", "x </think>y", "word<tool_call>",
              "word <tool_call> x", "<tool_call>x", "_<tool_call>", "\u00e9<tool_call>", "1<tool_call>",
              "<tool_call>", " <tool_call> ", "!<tool_call>!", "a <|im_start|> b", "  <|im_start|>  ",
              "<think><think>", " \u3000<think>", "a\u00a0<think>", "<think>\u2003</think> \t", "<tool_call><tool_call>",
              "x<tool_call><think>", "<tool_call><think> y"]


# Pre-tokenizer variants on the qwen3 vocabulary: Split behaviours, invert,
# Digits (each replaces the Split before ByteLevel; the test does the same).
QWEN_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
           "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
SPLIT_VARIANTS = [
    [{"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False}],
    [{"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False}],
    [{"type": "Split", "pattern": {"Regex": "\\s"}, "behavior": "Contiguous", "invert": False}],
    [{"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Isolated", "invert": True}],
    [{"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": True}],
    [{"type": "Split", "pattern": {"Regex": "[.,!?]"}, "behavior": "MergedWithPrevious", "invert": True}],
    [{"type": "Split", "pattern": {"Regex": "[.,!?]"}, "behavior": "MergedWithNext", "invert": True}],
    [{"type": "Split", "pattern": {"Regex": "\\d"}, "behavior": "Contiguous", "invert": True}],
    [{"type": "Digits", "individual_digits": True},
     {"type": "Split", "pattern": {"Regex": QWEN_RE}, "behavior": "Isolated", "invert": False}],
    [{"type": "Digits", "individual_digits": False},
     {"type": "Split", "pattern": {"Regex": QWEN_RE}, "behavior": "Isolated", "invert": False}],
]


def write_split_fixture(args, strings):
    from tokenizers import Tokenizer
    with open(os.path.join(args.shared, "tokenizers", "qwen3", "tokenizer.json"), encoding="utf-8") as f:
        j = json.load(f)
    texts = [x for x in strings if len(x) < 300][:400:4]
    path = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "split_variants.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for v in SPLIT_VARIANTS:
            j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": v + [
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
            tok = Tokenizer.from_str(json.dumps(j))
            f.write(json.dumps({"pre_tokenizers": v}) + "\n")
            for s in texts:
                f.write(json.dumps({"text": s, "ids": tok.encode(s, add_special_tokens=False).ids}) + "\n")
    print(f"tokenizer/split_variants.jsonl: {len(SPLIT_VARIANTS)} variants x {len(texts)} strings")


def write_flag_fixture(args):
    from tokenizers import Tokenizer
    with open(os.path.join(args.shared, "tokenizers", "qwen3", "tokenizer.json"), encoding="utf-8") as f:
        j = json.load(f)
    for a in j["added_tokens"]:
        for fl in FLAGS.get(a["content"], ()):
            a[fl] = True
    tok = Tokenizer.from_str(json.dumps(j))
    path = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "added_flags.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for s in FLAG_TEXTS:
            f.write(json.dumps({"text": s, "ids": tok.encode(s, add_special_tokens=False).ids}) + "\n")
    print(f"tokenizer/added_flags.jsonl: {len(FLAG_TEXTS)} strings")


CONVS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"},
     {"role": "assistant", "content": "Green."}, {"role": "user", "content": "And one more, in \u65e5\u672c\u8a9e"}],
    [{"role": "user", "content": "  spaces around  \n"}, {"role": "assistant", "content": "\nok\n"}],
    [{"role": "user", "content": "Multi\nline\n\ncontent with <b>tags</b> and \"quotes\" \U0001f600"}],
    [{"role": "user", "content": "Think first."},
     {"role": "assistant", "content": "<think>\nreasoning here\n</think>\n\nThe answer is 4."},
     {"role": "user", "content": "Why?"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "empty system"}],
    [{"role": "user", "content": ""}],
]


def write_chat_fixtures(args):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    extra = dict(t.split("=", 1) for t in args.template)
    today = time.strftime("%Y-%m-%d")
    outdir = os.path.join(ROOT, "tests", "fixtures", "chat")
    os.makedirs(outdir, exist_ok=True)
    for name in ("qwen3", "deepseek_v3", "gptoss", "mistral", "llama2", "llama3"):
        if name in ("llama2", "llama3") and name not in extra:
            continue
        # llama2: Llama-2-chat's template (--template llama2=FILE) with Mistral's
        # tokenizer files, which have the same <s> and </s>
        # llama3: Meta-Llama-3-8B-Instruct's template, rendered with qwen3's
        # files and bos_token="<|begin_of_text|>" (text only: no Llama-3 vocabulary here)
        tdir = os.path.join(args.shared, "tokenizers", {"llama2": "mistral", "llama3": "qwen3"}.get(name, name))
        kw = {"bos_token": "<|begin_of_text|>"} if name == "llama3" else {}
        tok = AutoTokenizer.from_pretrained(tdir)
        # ids: the rendered text through `tokenizers` with the shipped
        # tokenizer.json (what apply_chat_template(tokenize=True) gives, except
        # for Mistral: transformers 5 swaps its legacy Prepend/Replace
        # normalizer for Metaspace(prepend_scheme="always"), which drops the
        # extra U+2581 after <s>)
        raw = Tokenizer.from_file(os.path.join(tdir, "tokenizer.json"))
        tpl = None
        if name in extra:
            with open(extra[name], encoding="utf-8") as f:
                tpl = f.read()
        elif not tok.chat_template:
            print(f"chat/{name}: no chat template (pass --template {name}=FILE)")
            continue
        n = 0
        with open(os.path.join(outdir, name + ".jsonl"), "w", encoding="utf-8") as f:
            for conv in CONVS:
                for agp in (False, True):
                    if name in ("mistral", "llama2") and agp:
                        continue  # the template has no generation prompt: same text
                    if agp and conv[-1]["role"] != "user":
                        continue
                    try:
                        text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=agp,
                                                       chat_template=tpl, **kw)
                    except Exception as ex:  # a template that refuses the conversation
                        print(f"chat/{name}: skipped: {ex}")
                        continue
                    row = {"messages": conv, "add_generation_prompt": agp, "text": text}
                    if name not in ("llama2", "llama3"):
                        row["ids"] = raw.encode(text, add_special_tokens=False).ids
                    if name == "gptoss":
                        row["date"] = today  # the template prints strftime_now("%Y-%m-%d")
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    n += 1
                    if name == "qwen3" and agp:
                        text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True,
                                                       enable_thinking=False)
                        row = {"messages": conv, "add_generation_prompt": True, "enable_thinking": False,
                               "text": text, "ids": raw.encode(text, add_special_tokens=False).ids}
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                        n += 1
        print(f"chat/{name}.jsonl: {n} conversations")


def bench(args):
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(args.shared, "tokenizers", "qwen3", "tokenizer.json"))
    with open(os.path.join(args.shared, "corpora", "austen_novels.txt"), encoding="utf-8", newline="") as f:
        text = f.read()
    nb = len(text.encode("utf-8"))
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        ids = tok.encode(text, add_special_tokens=False).ids
        best = min(best, time.perf_counter() - t0)
    print(f"HF tokenizers {__import__('tokenizers').__version__} qwen3 encode, 1 thread, whole text: {nb / 1e6:.2f} MB in "
          f"{best:.3f} s = {nb / 1e6 / best:.2f} MB/s, {len(ids)} tokens")
    paras = text.split("\n\n")
    paras = [p + "\n\n" for p in paras[:-1]] + paras[-1:]
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        enc = tok.encode_batch(paras, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
    print(f"HF tokenizers qwen3 encode_batch by paragraph ({len(paras)}), 1 thread: {nb / 1e6 / best:.2f} MB/s, "
          f"{sum(len(e.ids) for e in enc)} tokens")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--template", action="append", default=[], help="NAME=chat_template.jinja")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--only", choices=["tokenizer", "chat"])
    args = ap.parse_args()
    if args.bench:
        bench(args)
        return
    if args.only != "chat":
        strings = build_strings(args.shared)
        write_tokenizer_fixtures(args, strings)
        write_flag_fixture(args)
        write_split_fixture(args, strings)
    if args.only != "tokenizer":
        write_chat_fixtures(args)


if __name__ == "__main__":
    main()
