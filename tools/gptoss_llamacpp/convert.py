# Runs llama.cpp's convert_hf_to_gguf.py on a directory without a tokenizer:
# the vocabulary step is skipped (pregate reads a GGUF without one).
import sys
import os
if "LLAMA_CPP" not in os.environ:
    sys.exit("set LLAMA_CPP to llama.cpp's checkout (run.sh does)")
sys.path.insert(0, os.environ["LLAMA_CPP"])
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[1:]
import convert_hf_to_gguf as c
from conversion.gpt_oss import GptOssModel
GptOssModel.set_vocab = lambda self: None
c.main()
