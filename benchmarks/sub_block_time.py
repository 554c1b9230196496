"""Where the time of a dense and a DyT model goes: seconds in the attention and MLP modules of every block (forward
hooks) and the rest, one batch of random images, random weights, keep rate 0.5 calibrated on 8 of them.

    OMP_NUM_THREADS=2 python benchmarks/sub_block_time.py eva02_base_patch14_224 32
"""
import torch, timm, dytune, time, sys, collections
torch.manual_seed(0); torch.set_num_threads(2)
name, b = sys.argv[1], int(sys.argv[2])
x = torch.randn(b, 3, 224, 224)
dense = timm.create_model(name, pretrained=False).eval()
dyt = dytune.convert(timm.create_model(name, pretrained=False), dytune.DyTConfig()).eval()
dytune.calibrate(dyt, x[:8], keep_rate=0.5)
def timed(model):
    acc = collections.Counter(); start = {}
    def pre(key):
        def f(m, a): start[key] = time.perf_counter()
        return f
    def post(key):
        def f(m, a, o): acc[key] += time.perf_counter() - start[key]
        return f
    hs = []
    for blk in model.blocks:
        for key in ("attn", "mlp"):
            mod = getattr(blk, key)
            hs += [mod.register_forward_pre_hook(pre(key)), mod.register_forward_hook(post(key))]
    with torch.no_grad():
        model(x); acc.clear()
        s = time.perf_counter(); model(x); total = time.perf_counter() - s
    for h in hs: h.remove()
    return total, acc
for label, m in (("dense", dense), ("dyt", dyt)):
    total, acc = timed(m)
    print(name, label, f"total {total:.2f}s attn {acc['attn']:.2f}s mlp {acc['mlp']:.2f}s rest {total-acc['attn']-acc['mlp']:.2f}s")
