"""What LoRA's own products cost in a training step, and what computing them in other ways would save.

    python bench/lora_cost.py --model llama-3.2-1b --batch-size 4 --length 512 --device gpu     # GPU machine
    python bench/lora_cost.py --model 50m --batch-size 4 --length 256 --steps 3 --rounds 2       # this CPU

One model (a named shape of `tuner_vs_mlxlm.py` with random weights, or a model directory) and one batch of random
tokens; every variant is one compiled call (loss and gradients of the adapters, as the trainer's `micro_step`),
timed round-robin over `--rounds` rounds of `--steps` calls each (medians), with the peak memory of one call;
gradients and loss are compared with `lora`'s, or with `--reference` with those of the same model and adapters in
float32 (the truth that both 16-bit ways of computing approximate). The variants swap the class of every
`LoRALinear` for the run (an experiment here, not in the library):

- `lora`: mlxtune's `LoRALinear` (float32 adapters, products in bfloat16 beside a bfloat16 model: `lora.factors`).
- `lora32`: the products in float32, as mlx-lm's LoRA layer computes them (`x @ A` promotes a 16-bit input).
- `qkv`: `lora`, and the q/k/v adapters of each block share one `x @ [A_q A_k A_v]` product (so do gate/up):
  fewer and wider thin products.
- `floor`: only the first block's q_proj adapter computes its product (the others give the base product), so the
  backward pass still runs through every block: the time a step would take if LoRA's products were free.
- `forward`: `lora`'s loss without gradients.

Also printed: the GEMM rate (in the model's dtype) of the model's MLP product at this batch (the ceiling of any step).
"""
import argparse, json, statistics, sys, time
from pathlib import Path
import mlxtune   # noqa: F401  (first: OpenBLAS under MLX)
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

sys.path.insert(0, str(Path(__file__).parent))
import tuner_vs_mlxlm as B
from mlxtune.adapters import load
from mlxtune.lora import LoraArgs, LoRALinear, apply_lora, factors
from mlxtune.losses import cross_entropy_loss

class Float32Products(LoRALinear):
    "The products as mlx-lm's LoRA layer (and mlxtune's before) computes them: a 16-bit input promoted to float32."
    def __call__(self, x):
        z = (x @ self.lora_a) @ self.lora_b
        return self.linear(x) + (self.scale * z).astype(x.dtype)

SHARED = {'self_attn': ('q_proj', 'k_proj', 'v_proj'), 'mlp': ('gate_proj', 'up_proj')}

class SharedInput(LoRALinear):
    "One of several adapters on the same input: its `x @ A` comes from the block's joint product (set by `joint_products`)."
    def __call__(self, x):
        a, b = factors(self, x.dtype)
        z = self._z.pop(0) if self._z else x @ a
        return self.linear(x) + (self.scale * (z @ b)).astype(x.dtype)

class Skipped(LoRALinear):
    "The base product only (the `floor` variant): the adapter's gradients are zeros."
    def __call__(self, x): return self.linear(x)

def joint_products(model, on:bool):
    "Wrap (or unwrap) each block's attention and MLP so that their sibling adapters' `x @ A` is one product."
    for blk in model.layers:
        for part, names in SHARED.items():
            mod = getattr(blk, part)
            cls = getattr(type(mod), '_plain', type(mod))
            if not on: mod.__class__ = cls; continue
            kids = [getattr(mod, n) for n in names]
            for k in kids: k.__class__, k._z = SharedInput, []
            def call(self, x, *a, _cls=cls, _kids=kids, **kw):
                z = x @ mx.concatenate([factors(k, x.dtype)[0] for k in _kids], axis=1)
                r = [k.lora_a.shape[1] for k in _kids]
                parts = mx.split(z, [sum(r[:i + 1]) for i in range(len(r) - 1)], axis=-1)
                for k, p in zip(_kids, parts): k._z = [p]
                return _cls.__call__(self, x, *a, **kw)
            mod.__class__ = type(cls.__name__, (cls,), {'__call__': call, '_plain': cls})

def configure(model, variant):
    "Set every adapter's class (and the blocks' wrappers) for `variant`."
    adapters = [m for _, m in model.named_modules() if isinstance(m, LoRALinear)]
    first = model.model.layers[0].self_attn.q_proj
    for m in adapters:
        m.__class__ = {'lora32': Float32Products, 'floor': LoRALinear if m is first else Skipped}.get(variant, LoRALinear)
    joint_products(model.model, variant == 'qkv')

def step_fn(model, variant):
    def loss(m, x, y, mask): return cross_entropy_loss(m, x, y, mask)[0]
    if variant == 'forward':
        return mx.compile(lambda x, y, mask: (loss(model, x, y, mask), {}), inputs=model.state, outputs=model.state)
    vg = nn.value_and_grad(model, loss)
    return mx.compile(lambda x, y, mask: vg(model, x, y, mask), inputs=model.state, outputs=model.state)

def gemm_rate(n_tokens, d_in, d_out, dtype, reps=20):
    a, w = mx.random.normal((n_tokens, d_in)).astype(dtype), mx.random.normal((d_out, d_in)).astype(dtype)
    mx.eval(a, w)
    for _ in range(3): mx.eval(a @ w.T)
    t = time.perf_counter()
    for _ in range(reps): mx.eval(a @ w.T)
    return 2 * n_tokens * d_in * d_out * reps / (time.perf_counter() - t) / 1e12

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default='llama-3.2-1b')
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--length', type=int, default=512)
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--device', choices=['cpu', 'gpu'], default=None)
    p.add_argument('--dtype', default=None, help='model dtype (default: bfloat16 on the GPU, float32 on the CPU)')
    p.add_argument('--variants', nargs='+', default=['lora', 'lora32', 'qkv', 'floor', 'forward'])
    p.add_argument('--reference', action='store_true', help='compare the gradients with float32 ones (else with `lora`)')
    p.add_argument('--cache-dir', default='~/.cache/mlxtune/bench')
    a = p.parse_args()
    if a.device: mx.set_default_device(getattr(mx, a.device))
    on_gpu = mx.default_device().type == mx.gpu
    a.dtype = a.dtype or ('bfloat16' if on_gpu else 'float32')
    path, _ = B.prepare_model(a.model, argparse.Namespace(cache_dir=a.cache_dir, seed=0, tokens='random', dtype=a.dtype))
    cfg = json.loads((path/'config.json').read_text())
    cfg = {**cfg, **cfg.get('text_config', {})}
    vocab = cfg['vocab_size']
    x = mx.random.randint(3, vocab, (a.batch_size, a.length + 1), key=mx.random.key(0))
    inputs, targets, mask = x[:, :-1], x[:, 1:], mx.ones((a.batch_size, a.length))
    def adapted(dtype):
        model, _ = load(str(path), dtype=dtype)
        mx.random.seed(0)
        apply_lora(model, LoraArgs(target_modules='all-linear'))
        for _, m in model.named_modules():   # non-zero B, so that A's gradients are compared too
            if isinstance(m, LoRALinear): m.lora_b = 0.01 * mx.random.normal(m.lora_b.shape, key=mx.random.key(1))
        return model
    def flat(g): return {k: v.astype(mx.float32) for k, v in tree_flatten(g)}
    ref = None
    if a.reference:   # the same weights and adapters in float32: the gradients every variant is compared with
        m32 = adapted('float32')
        loss, g = step_fn(m32, 'lora')(inputs, targets, mask); mx.eval(loss, g)
        ref = (loss.item(), flat(g))
        del m32, g
    model = adapted(a.dtype)
    runs, peaks = {}, {}
    for v in a.variants:   # each variant is traced (with its classes) at its first call; the later calls reuse that graph
        configure(model, v)
        f = step_fn(model, v)
        mx.eval(f(inputs, targets, mask))
        mx.reset_peak_memory()
        loss, g = f(inputs, targets, mask); mx.eval(loss, g)
        peaks[v] = mx.get_peak_memory() / 1e9
        if ref is None and v == 'lora': ref = (loss.item(), flat(g))
        if ref is not None and v not in ('floor', 'forward'):
            gf = flat(g)
            num = sum((mx.sum((gf[k] - r) ** 2)).item() for k, r in ref[1].items())
            den = sum((mx.sum(r ** 2)).item() for r in ref[1].values())
            print(f'{v}: loss {loss.item():.5f} vs {ref[0]:.5f}; |gradient - reference| / |reference| = {(num / den) ** 0.5:.2e}', flush=True)
        runs[v] = (f, [])
    tokens = a.batch_size * a.length
    for _ in range(a.rounds):
        for v, (f, times) in runs.items():
            mx.eval(f(inputs, targets, mask))
            t = time.perf_counter()
            for _ in range(a.steps): mx.eval(f(inputs, targets, mask))
            times.append((time.perf_counter() - t) / a.steps)
    print(f'\n{a.model}, {a.batch_size} x {a.length}, {a.dtype} on {mx.default_device()}; medians of {a.rounds} rounds of {a.steps} calls')
    print(f'| variant | ms per step | tokens/s | vs lora | peak memory, GB |\n|---|---|---|---|---|')
    base = statistics.median(runs['lora'][1]) if 'lora' in runs else None
    for v, (_, times) in runs.items():
        t = statistics.median(times)
        print(f'| {v} | {t * 1e3:.1f} | {tokens / t:,.0f} | {base / t if base else float("nan"):.2f}x | {peaks[v]:.2f} |')
    d, i = cfg['hidden_size'], cfg['intermediate_size']
    print(f'\n{a.dtype} GEMM rate at ({tokens} x {d}) @ ({d} x {i}): {gemm_rate(tokens, d, i, getattr(mx, a.dtype)):.1f} TFLOP/s')

if __name__ == '__main__':
    main()
