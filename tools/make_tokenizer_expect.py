#!/usr/bin/env python3
"""Writes tokenizer test expectations computed with Hugging Face `tokenizers`.

    python tools/make_tokenizer_expect.py TOKENIZER_JSON CORPORA_DIR OUT.jsonl

Encodes ~200 strings (prose cut from the .txt files in CORPORA_DIR, plus
whitespace shapes, digits, punctuation runs, unicode and emoji) without
special tokens and writes one JSON object per line: {"text": ..., "ids": [...]}.
Every string is already NFC (pregate does not implement NFC for non-ASCII
text yet) and contains no added-token text. Deterministic (fixed seed).
"""
import json
import os
import random
import sys
import unicodedata

HAND = [
    # whitespace shapes
    " ", "  ", "   ", "\n", "\n\n", "\n\n\n", " \n ", "\t", "\t\t", " \t \n", "a  b", "a   b",
    "a    b", "  leading", "trailing  ", "trailing \n", "x\r\ny", "\r\n\r\n", "\r", "line1\n\n\nline2",
    "   \n\t  x", "tabs\t\tand spaces  ", "word \n  word", "end.\n", "\n start", " a b c d e ",
    "indented:\n    code()\n        more()", "a\u00a0b", "a\u2003b", "x\u3000y", "zero\u200bwidth",
    "a\u0085b", "a\u2028b", "\u00a0\u00a0lead",
    # digits
    "0", "12", "123", "1234", "1234567890", "3.14159", "1,000,000", "year 1811", "v2.0.1",
    "2+2=4", "phone: 555-0199", "12abc34", "x1y22z333", "\u0661\u0662\u0663", "\u00bd and \u00b2",
    # punctuation runs and contractions
    "!!!", "?!", "...", "\u2014", "--", "---", "\"quoted\"", "'single'", "it's", "IT'S", "We'LL",
    "we'll", "they've", "I'm", "you'd", "she's", "don't", "'s", "''", "(parens)", "[brackets]",
    "{braces}", "a,b;c:d", "#hashtag @mention", "https://example.com/path?q=1&r=2", "foo_bar-baz",
    "<html><body>", "C++ && C#", "~`^|\\", "$100.00 (approx.)", "50% off!!", "e-mail: a.b@c.org",
    "\u201csmart quotes\u201d and \u2018apostrophes\u2019", "\u00abguillemets\u00bb", "a/b\\c",
    "...and then?!", " !?", "?\n\n", "!\r\n", "*** END ***",
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
    "ok\U0001f44c.", " \U0001f680\n",
]


def prose(corpora, rng, n):
    text = ""
    for name in sorted(os.listdir(corpora)):
        if name.endswith(".txt"):
            with open(os.path.join(corpora, name), encoding="utf-8", newline="") as f:
                text = f.read()
            break  # the first corpus (austen_novels.txt) is enough
    if not text:
        sys.exit(f"{corpora}: no .txt corpus found")
    out = []
    while len(out) < n:
        start = rng.randrange(0, len(text) - 400)
        length = rng.choice([8, 20, 40, 80, 160, 300])
        s = text[start:start + length]
        if s.strip():
            out.append(s)
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    from tokenizers import Tokenizer

    tok_path, corpora, out_path = sys.argv[1:]
    tok = Tokenizer.from_file(tok_path)
    rng = random.Random(1234)
    strings = HAND + prose(corpora, rng, 200 - len(HAND))
    added = [a["content"] for a in json.load(open(tok_path, encoding="utf-8")).get("added_tokens", [])]
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    n = 0
    with open(out_path, "w", encoding="utf-8") as f:
        for s in strings:
            assert unicodedata.is_normalized("NFC", s), repr(s)
            if any(a in s for a in added):
                continue
            ids = tok.encode(s, add_special_tokens=False).ids
            f.write(json.dumps({"text": s, "ids": ids}, ensure_ascii=True) + "\n")
            n += 1
    print(f"{out_path}: {n} strings")


if __name__ == "__main__":
    main()
