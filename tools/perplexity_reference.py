"""Reference perplexity of a Hugging Face model on a text file, computed the
way `pregate perplexity` does (src/perplexity.h): the token sequence is cut
into consecutive windows of N tokens, each evaluated from an empty context,
every token but a window's first scored. Writes a JSON file that
tests/test_perplexity.c compares against.

    python3 tools/perplexity_reference.py HF_DIR TEXT_FILE OUT.json [--ctx 256]

Needs torch + transformers (the versions pinned in tools/train_demo_moe.py).
"""
import argparse
import json
import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("text")
    ap.add_argument("out")
    ap.add_argument("--ctx", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(a.hf_dir)
    model = AutoModelForCausalLM.from_pretrained(a.hf_dir, torch_dtype=torch.float32).eval()
    text = open(a.text, encoding="utf-8").read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    nll, n = 0.0, 0
    with torch.no_grad():
        for w0 in range(0, len(ids), a.ctx):
            w = ids[w0:w0 + a.ctx]
            if len(w) < 2:
                break
            logits = model(torch.tensor([w])).logits[0].double()
            lp = torch.log_softmax(logits, dim=-1)
            nll -= lp[torch.arange(len(w) - 1), torch.tensor(w[1:])].sum().item()
            n += len(w) - 1
    ref = {"text": a.text, "ctx": a.ctx, "tokens": len(ids), "scored": n, "nll_mean": nll / n,
           "perplexity": math.exp(nll / n)}
    json.dump(ref, open(a.out, "w"), indent=1)
    print(ref)


if __name__ == "__main__":
    main()
