# gpt-oss fixture variant that llama.cpp's GGUF can express: swiglu_limit 7
# (llama.cpp hard-codes it) and YaRN truncate true (ggml always truncates).
import json, os, shutil, sys, torch
from safetensors.torch import save_file
from transformers import GptOssForCausalLM
src, dst = sys.argv[1], sys.argv[2]
shutil.rmtree(dst, ignore_errors=True)
os.makedirs(dst)
for f in ("model.safetensors", "generation_config.json"):
    shutil.copy(os.path.join(src, f), os.path.join(dst, f))
c = json.load(open(os.path.join(src, "config.json")))
c["swiglu_limit"] = 7.0
c["rope_parameters"]["truncate"] = True
json.dump(c, open(os.path.join(dst, "config.json"), "w"), indent=2)
from safetensors.torch import load_file
ref = load_file(os.path.join(src, "reference.safetensors"))
m = GptOssForCausalLM.from_pretrained(dst, dtype=torch.float32, attn_implementation="eager").eval()
toks = ref["tokens"].long()
with torch.no_grad():
    logits = m(toks[None]).logits[0].float()
    out = m.generate(toks[None], do_sample=False, max_new_tokens=32, use_cache=True)
greedy = out[0, len(toks):]
save_file({"tokens": ref["tokens"], "logits": logits.contiguous(), "greedy": greedy.to(torch.int32).contiguous()},
          os.path.join(dst, "reference.safetensors"), metadata={"format": "pt"})
print("variant written; greedy", greedy.tolist()[:8], "...")
