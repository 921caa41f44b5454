# convert.py IN.cu OUT.cpp - dev_cuda.cu for the CUDA emulation (emu.cpp):
# kernel<<<grid, block, shared, stream>>>(args) becomes
# emu_launch(grid, block, shared, stream, [&] { kernel(args); }), and a
# dynamic __shared__ array points into the emulation's shared memory.
import re, sys
s = open(sys.argv[1]).read()
# kernel<<<grid, block, shared, stream>>>(args);  ->  emu_launch(grid, block, shared, stream, [&] { kernel(args); });
pat = re.compile(r'([A-Za-z_][A-Za-z0-9_]*(?:<[^<>;]*?(?:<[^<>]*>[^<>;]*)*>)?)<<<(.*?)>>>\((.*?)\);', re.S)
n = 0
def rep(m):
    global n; n += 1
    return 'emu_launch(%s, [&] { %s(%s); });' % (m.group(2), m.group(1), m.group(3))
s = pat.sub(rep, s)
s = re.sub(r'extern __shared__ float (\w+)\[\];', r'float *\1 = (float *)emu_dyn_shared;', s)
open(sys.argv[2], 'w').write(s)
print(n, 'launches rewritten', file=sys.stderr)
