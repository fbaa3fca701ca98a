"""Where a training step's time and memory go, mlxtune vs mlx-lm's tuner: a companion to bench/tuner_vs_mlxlm.py.

    python bench/profile_tuner.py --model 50m --batch-size 4 ab --length 256 --steps 8 --rounds 3
    python bench/profile_tuner.py --model 50m --batch-size 4 step --length 256 --rounds 3 --steps 4
    python bench/profile_tuner.py --model 50m --batch-size 1 compile --lengths 32 64 96 128 160 192 224 256
    python bench/profile_tuner.py --model 50m --batch-size 4 memory --length 1024 --chunks 256 --steps 1
    python bench/profile_tuner.py --model 50m --batch-size 4 --dtype bfloat16 memory --length 128 --chunks 32 64 --basic
    python bench/profile_tuner.py --model 50m --batch-size 4 dropout --length 256 --steps 8 --rounds 2
    python bench/profile_tuner.py host --samples 500 10000 100000

- `ab`: each tool's own `train` on the same fixed-length rows (same padded shape in both), alternating in one
  process: the steady-state step time of the two training loops, without process-to-process variation.
- `step`: one model and batch through four step structures, round-robin: mlxtune's (a compiled loss-and-gradient
  call, an eval, `.item()`, a compiled update, an eval), one compiled call that keeps the update only where the loss
  is finite (what mlxtune used for one micro-batch in its 2026-11-23 13:30 version), one compiled call with mlxtune's loss and no such select, one
  with mlx-lm's.
- `compile`: one run of each tool's own `train` over batches of several distinct lengths, a few batches of each,
  in the tool's own random order; the first step at a shape traces and compiles the step for it, the later ones
  reuse it, so `first - median(later)` is the cost of one more distinct batch shape (mlxtune pads inputs to a
  multiple of 8, mlx-lm to a multiple of 32: up to max_len/8 vs max_len/32 shapes on variable-length data).
- `memory`: peak memory (`mx.get_peak_memory`) of each tool's training steps at (batch, length); of mlxtune with
  `loss_chunk_size`, with its loss computed in the logits' dtype, with whole-block gradient checkpointing, with half
  the batch; and, as experiments that are not mlxtune features, with each block's attention recomputed in the
  backward pass, or computed in query chunks each under `mx.checkpoint`. It prints the sizes of the arrays that
  dominate: the logits (B, L, V) and every block's attention scores (B, heads, L, L), which MLX's CPU attention
  keeps for the backward pass.
- `dropout`: mlxtune's `train` with and without gradient checkpointing, each with and without the adapters'
  dropout (whose masks the checkpointed blocks replay), round-robin.
- `host`: what mlxtune's trainer does per step outside the model: `batch_order` (recomputed for every step) and
  `make_batch`, against the dataset size.
"""
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
import mlxtune   # noqa: F401  (first: OpenBLAS under MLX)
import numpy as np
import mlx.core as mx

sys.path.insert(0, str(Path(__file__).parent))
import tuner_vs_mlxlm as B

DTYPE = ['float32']   # both tools' model dtype (--dtype)

class _null:
    def __enter__(self): return self
    def __exit__(self, *exc): pass

def model_dir(name, seed=0):
    a = argparse.Namespace(cache_dir='~/.cache/mlxtune/bench', seed=seed, tokens='auto', dtype=DTYPE[0])
    return B.prepare_model(name, a)[0]

def fixed_rows(vocab, n, length, seed=0):
    return np.random.default_rng(seed).integers(3, vocab, size=(n, length)).tolist()

def recompute_attention(model):
    "Experiment (not in mlxtune): every block's attention runs under mx.checkpoint, so that its (B, heads, L, L) scores are recomputed in the backward pass instead of kept."
    import mlx.nn as nn
    for blk in model.layers:
        att, cls = blk.self_attn, type(blk.self_attn)
        def call(self, x, mask=None, cache=None, _cls=cls):
            def inner(params, x):
                self.update(params)
                return _cls.__call__(self, x, mask, cache)
            return mx.checkpoint(inner)(self.trainable_parameters(), x)
        att.__class__ = type(cls.__name__, (cls,), {'__call__': call})

class chunked_attention:
    "Experiment (not in mlxtune): causal attention of llama-family mlx-lm models in query chunks of `chunk`, each under mx.checkpoint, so that at most (B, heads, chunk, L) scores exist at a time, forward and backward."
    def __init__(self, chunk): self.chunk = chunk
    def __enter__(self):
        import mlx_lm.models.llama as llama, mlx_lm.models.qwen2 as qwen2
        self.mods = [m for m in (llama, qwen2)]
        self.saved = [m.scaled_dot_product_attention for m in self.mods]
        C, orig = self.chunk, self.saved[0]
        def sdpa(q, k, v, cache, scale, mask, sinks=None):
            L = q.shape[2]
            if cache is not None or not isinstance(mask, str) or L <= C: return orig(q, k, v, cache=cache, scale=scale, mask=mask, sinks=sinks)
            outs = []
            for s in range(0, L, C):
                e = min(s + C, L)
                m = mx.arange(s, e)[:, None] >= mx.arange(e)[None, :]
                f = mx.checkpoint(lambda qc, kc, vc, m=m: mx.fast.scaled_dot_product_attention(qc, kc, vc, scale=scale, mask=m))
                outs.append(f(q[:, :, s:e], k[:, :, :e], v[:, :, :e]))
            return mx.concatenate(outs, axis=2)
        for m in self.mods: m.scaled_dot_product_attention = sdpa
        return self
    def __exit__(self, *exc):
        for m, f in zip(self.mods, self.saved): m.scaled_dot_product_attention = f

def ce_in_logits_dtype(model, inputs, targets, mask):
    "Experiment (not in mlxtune): the masked mean cross-entropy computed on the logits' own dtype, as mlx-lm's `default_loss` does (no float32 copy of the logits)."
    import mlx.nn as nn
    ce = nn.losses.cross_entropy(model(inputs), targets, reduction='none') * mask
    n = mask.sum()
    return ce.astype(mx.float32).sum() / mx.maximum(n, 1), n

def run_mlxtune(path, rows, batch, steps, keys, attention_recompute=False, attention_chunk=0, loss_fn=None, lora_dropout=0.0, **extra):
    "Train with mlxtune on `rows` (every token trained); per-step times and the peak memory."
    from mlxtune.adapters import load
    from mlxtune.lora import LoraArgs, apply_lora
    from mlxtune.data import TokenizedDataset
    import mlxtune.trainer as T
    from mlxtune.callbacks import Callback
    model, _ = load(str(path), dtype=DTYPE[0])
    apply_lora(model, LoraArgs(r=8, lora_alpha=16, target_modules=keys, lora_dropout=lora_dropout))
    if attention_recompute: recompute_attention(model)
    ds = TokenizedDataset(rows, [[True] * len(r) for r in rows], [''] * len(rows), 'text')
    ts, shapes, orig = [], [], T.make_batch
    def mb(*a, **k):
        b = orig(*a, **k); shapes.append(tuple(b.inputs.shape)); return b
    T.make_batch = mb
    class Rec(Callback):
        def on_train_begin(self, st): ts.append(time.perf_counter())
        def on_step(self, st, loss, n): ts.append(time.perf_counter())
    mx.reset_peak_memory()
    args = T.TrainingArgs(batch_size=batch, iters=steps, learning_rate=1e-4, steps_per_eval=10 ** 9, save_every=10 ** 9,
                          steps_per_report=steps, **extra)
    try:
        with chunked_attention(attention_chunk) if attention_chunk else _null():
            T.train(model, ds, None, args, callbacks=[Rec()], log=None, **({'loss_fn': loss_fn} if loss_fn else {}))
    finally: T.make_batch = orig
    return np.diff(ts), shapes, mx.get_peak_memory() / 1e9

def run_mlxlm(path, rows, batch, steps, keys, exact=False):
    "Train with mlx-lm's tuner on `rows` (offset 0: every token trained); per-step times and the peak memory."
    import mlx.optimizers as optim
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.tuner.trainer import TrainingArgs, train, iterate_batches
    from mlx_lm.tuner.callbacks import TrainingCallback
    model, _ = load(str(path))
    model.set_dtype(getattr(mx, DTYPE[0]))   # as mlxtune.load casts it
    model.freeze()
    linear_to_lora_layers(model, len(model.layers), {'rank': 8, 'scale': 2.0, 'dropout': 0.0, 'keys': keys})
    ts, shapes = [], []
    def batches(*a, **k):
        ts.append(time.perf_counter())
        for b, l in iterate_batches(*a, **k):
            if shapes: ts.append(time.perf_counter())
            shapes.append((b.shape[0], b.shape[1] - 1)); yield b, l
    class Rec(TrainingCallback):
        def on_train_loss_report(self, info): ts.append(time.perf_counter())
    mx.reset_peak_memory()
    tmp = tempfile.mkdtemp()
    np.random.seed(0)
    train(model, optim.Adam(1e-4, bias_correction=True), [(r, 0) for r in rows], None,
          TrainingArgs(batch_size=batch, iters=steps, steps_per_report=steps, steps_per_eval=10 ** 9, steps_per_save=10 ** 9,
                       max_seq_length=max(len(r) for r in rows) + (0 if exact else 64), adapter_file=f'{tmp}/a.safetensors'),
          iterate_batches=batches, training_callback=Rec())
    return np.diff(ts), shapes, mx.get_peak_memory() / 1e9

def cmd_compile(a):
    "One run of each tool over batches of `len(lengths)` distinct lengths, `a.per_length` batches of each, in random order."
    path = model_dir(a.model)
    keys = B.block_linear_keys(path)
    vocab = B.model_dims(path)['vocab']
    rows = []
    for j, L in enumerate(a.lengths): rows += fixed_rows(vocab, a.batch_size * a.per_length, L + 1, seed=j)
    steps = len(a.lengths) * a.per_length
    print(f'{a.model}: {steps} steps, batch {a.batch_size}, inputs of {a.lengths} tokens, {a.per_length} batches of each\n')
    print('| tool | distinct shapes | total (s) | first step of a new shape, median (s) | step of a seen shape, median (s) | '
          'cost of a new shape (s) | share of the run spent on new shapes |')
    print('|---|---|---|---|---|---|---|')
    for tool, f in (('mlxtune', run_mlxtune), ('mlx-lm', run_mlxlm)):
        dt, shapes, _ = f(path, rows, a.batch_size, steps, keys)
        seen, extra = set(), []
        by = {}
        for t, s in zip(dt, shapes): by.setdefault(s, []).append(t)
        for t, s in zip(dt[1:], shapes[1:]):   # the run's very first step also warms up the rest: left out
            first = s not in seen and s != shapes[0]
            seen.add(s)
            if first: extra.append(t - statistics.median(by[s][1:]))
        firsts = [by[s][0] for s in by if s != shapes[0]]
        rest = [t for s in by for t in by[s][1:]]
        cost = statistics.median(extra)
        print(f'| {tool} | {len(by)} | {dt.sum():.2f} | {statistics.median(firsts):.3f} | {statistics.median(rest):.3f} | '
              f'{cost:.3f} | {cost * len(by) / dt.sum():.1%} |', flush=True)

def cmd_memory(a):
    path = model_dir(a.model)
    keys = B.block_linear_keys(path)
    cfg = json.loads((path/'config.json').read_text())
    V, H, nl = cfg['vocab_size'], cfg['num_attention_heads'], cfg['num_hidden_layers']
    Bz, L = a.batch_size, a.length
    rows = fixed_rows(V, Bz * a.steps, L + 1)
    print(f'{a.model} ({a.dtype}): batch {Bz} x {L} inputs; logits (B, L, V) float32 = {Bz * L * V * 4 / 1e9:.3f} GB; attention scores '
          f'(B, heads, L, L) float32 = {Bz * H * L * L * 4 / 1e9:.3f} GB per block, {nl} blocks = {nl * Bz * H * L * L * 4 / 1e9:.3f} GB\n')
    print('| run | peak memory (GB) | median step (s) |\n|---|---|---|')
    S, C = a.steps, a.attention_chunk
    run = lambda **k: (lambda: run_mlxtune(path, rows, k.pop('batch', Bz), S, keys, **k))
    runs = [('mlx-lm', lambda: run_mlxlm(path, rows, Bz, S, keys, exact=True)), ('mlxtune', run())]
    runs += [(f'mlxtune loss_chunk_size={c}', run(loss_chunk_size=c)) for c in a.chunks]
    runs += [("mlxtune, cross-entropy in the logits' dtype (experiment)", run(loss_fn=ce_in_logits_dtype))]
    if not a.basic:
        runs += [('mlxtune, attention recomputed in backward (experiment)', run(attention_recompute=True))]
        runs += [(f'mlxtune, attention recomputed + loss_chunk_size={c} (experiment)', run(attention_recompute=True, loss_chunk_size=c)) for c in a.chunks]
        runs += [(f'mlxtune, attention in query chunks of {C}, each recomputed (experiment)', run(attention_chunk=C))]
        runs += [(f'mlxtune, attention chunks of {C} + loss_chunk_size={c} (experiment)', run(attention_chunk=C, loss_chunk_size=c)) for c in a.chunks]
        runs += [('mlxtune grad_checkpoint (whole blocks)', run(grad_checkpoint=True))]
        runs += [(f'mlxtune, batch {Bz // 2} (half the tokens per step)', run(batch=Bz // 2))]
    for name, f in runs:
        dt, _, peak = f()
        print(f'| {name} | {peak:.3f} | {statistics.median(dt):.2f} |', flush=True)
        mx.clear_cache()

def cmd_step(a):
    """The same model and batch through four step structures, round-robin in one process: mlxtune's (a compiled
    loss-and-gradient call, an eval, `.item()`, a second compiled call for the update, an eval), one call with the
    update kept only where the loss is finite (what mlxtune used for one micro-batch in its 2026-11-23 13:30 version), one compiled call
    doing both with mlxtune's loss without that select, and one with mlx-lm's loss (its `default_loss` over
    `(offset, length)` pairs)."""
    from functools import partial
    import mlx.nn as nn, mlx.optimizers as optim
    from mlx.utils import tree_map
    from mlxtune.adapters import load
    from mlxtune.lora import LoraArgs, apply_lora
    from mlxtune.losses import cross_entropy_loss
    from mlx_lm.tuner.trainer import default_loss
    path = model_dir(a.model)
    model, _ = load(str(path), dtype=DTYPE[0])
    apply_lora(model, LoraArgs(r=8, lora_alpha=16, target_modules=B.block_linear_keys(path)))
    V = B.model_dims(path)['vocab']
    x = mx.random.randint(3, V, (a.batch_size, a.length + 1), key=mx.random.key(0))
    inputs, targets, mask = x[:, :-1], x[:, 1:], mx.ones((a.batch_size, a.length))
    lengths = mx.array([[0, a.length + 1]] * a.batch_size)
    opt = optim.Adam(1e-4, bias_correction=True); opt.init(model.trainable_parameters()); mx.eval(opt.state)
    state = [model.state, opt.state, mx.random.state]
    def sum_loss(m, i, t, k):
        l, n = cross_entropy_loss(m, i, t, k); return l * n, n
    lg = nn.value_and_grad(model, sum_loss)
    @partial(mx.compile, inputs=state, outputs=state)
    def micro(i, t, k):
        (l, n), g = lg(model, i, t, k); return l, n, g
    @partial(mx.compile, inputs=state, outputs=state)
    def update(g, n):
        opt.update(model, tree_map(lambda v: v / mx.maximum(n, 1), g))
    def two_calls():
        l, n, g = micro(inputs, targets, mask); mx.eval(l, n, g); l.item(); n.item()
        update(g, mx.array(n.item(), dtype=mx.float32)); mx.eval(state)
    @partial(mx.compile, inputs=state, outputs=state)
    def fused(i, t, k):
        (l, n), g = lg(model, i, t, k)
        opt.update(model, tree_map(lambda v: v / mx.maximum(n, 1), g)); return l, n
    def one_call():
        l, n = fused(inputs, targets, mask); mx.eval(state, l, n)
    @partial(mx.compile, inputs=state, outputs=state)
    def guarded(i, t, k):
        (l, n), g = lg(model, i, t, k)
        before = tree_map(lambda v: v, (model.trainable_parameters(), opt.state))
        opt.update(model, tree_map(lambda v: v / mx.maximum(n, 1), g))
        keep = lambda new, old: mx.where(mx.isfinite(l), new, old)
        model.update(tree_map(keep, model.trainable_parameters(), before[0])); opt.state.update(tree_map(keep, dict(opt.state), before[1]))
        return l, n
    def guarded_call():
        l, n = guarded(inputs, targets, mask); mx.eval(state, l, n); l.item(); n.item()
    lg2 = nn.value_and_grad(model, default_loss)
    @partial(mx.compile, inputs=state, outputs=state)
    def fused_peer(b, le):
        (l, n), g = lg2(model, b, le); opt.update(model, g); return l, n
    def peer_call():
        l, n = fused_peer(x, lengths); mx.eval(state, l, n)
    variants = [("2 compiled calls, 2 evals (mlxtune's)", two_calls),
                ("one compiled call with the finite-loss select (mlxtune's in its 2026-11-23 13:30 version)", guarded_call),
                ('one compiled call, mlxtune loss', one_call), ("one compiled call, mlx-lm's default_loss", peer_call)]
    times = {k: [] for k, _ in variants}
    for k, f in variants: f(); f()   # compile and warm up
    for _ in range(a.rounds):
        for k, f in variants:
            for _ in range(a.steps):
                t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
    print(f'{a.model} ({DTYPE[0]}), batch {a.batch_size} x {a.length}: {a.rounds} rounds of {a.steps} steps per variant\n')
    print('| step structure | median step (s) | vs mlxtune |\n|---|---|---|')
    base = statistics.median(times[variants[0][0]])
    for k, _ in variants:
        m = statistics.median(times[k]); print(f'| {k} | {m:.4f} | {m / base:.3f} |')

def cmd_ab(a):
    "Each tool's own `train` on the same fixed-length rows, alternating in one process; per-step times after the first two steps of each run."
    path = model_dir(a.model)
    keys = B.block_linear_keys(path)
    rows = fixed_rows(B.model_dims(path)['vocab'], a.batch_size * a.steps, a.length + 1)
    times = {'mlxtune': [], 'mlx-lm': []}
    for r in range(a.rounds):
        for tool, f in (('mlxtune', run_mlxtune), ('mlx-lm', run_mlxlm)):
            dt, shapes, _ = f(path, rows, a.batch_size, a.steps, keys, **({'exact': True} if tool == 'mlx-lm' else {}))
            assert set(shapes) == {(a.batch_size, a.length)}, shapes   # the same inputs in both
            times[tool] += list(dt[2:])
            print(f'round {r + 1} {tool}: median step {statistics.median(dt[2:]):.4f} s', flush=True)
    m = {t: statistics.median(v) for t, v in times.items()}
    print(f"\n{a.model}, batch {a.batch_size} x {a.length}: median step mlxtune {m['mlxtune']:.4f} s, mlx-lm {m['mlx-lm']:.4f} s, "
          f"mlxtune / mlx-lm speed {m['mlx-lm'] / m['mlxtune']:.3f}x")

def cmd_dropout(a):
    "mlxtune's `train` with and without gradient checkpointing, with and without the adapters' dropout, round-robin: what replaying the masks costs."
    path = model_dir(a.model)
    keys = B.block_linear_keys(path)
    rows = fixed_rows(B.model_dims(path)['vocab'], a.batch_size * a.steps, a.length + 1)
    variants = [(ck, p) for ck in (False, True) for p in (0.0, a.p)]
    times, peaks = {v: [] for v in variants}, {v: [] for v in variants}
    for _ in range(a.rounds):
        for ck, p in variants:
            dt, _, peak = run_mlxtune(path, rows, a.batch_size, a.steps, keys, lora_dropout=p, grad_checkpoint=ck)
            times[(ck, p)] += list(dt[2:]); peaks[(ck, p)].append(peak)
    print(f'{a.model} ({DTYPE[0]}), batch {a.batch_size} x {a.length}: {a.rounds} rounds of {a.steps} steps per variant\n')
    print('| grad_checkpoint | lora_dropout | median step (s) | peak GB |\n|---|---|---|---|')
    for v in variants: print(f'| {v[0]} | {v[1]} | {statistics.median(times[v]):.4f} | {max(peaks[v]):.3f} |')

def cmd_host(a):
    from mlxtune.data import TokenizedDataset, batch_order, make_batch
    print('| samples | batch_order per call (ms) | make_batch 8 x ~512 (ms) |\n|---|---|---|')
    rng = np.random.default_rng(0)
    for n in a.samples:
        lengths = rng.integers(50, 1000, size=n)
        t = time.perf_counter(); k = 0
        while time.perf_counter() - t < 2: batch_order(lengths, 8, 0, 0); k += 1
        bo = (time.perf_counter() - t) / k * 1e3
        ids = [list(range(int(l))) for l in lengths[:64]]
        ds = TokenizedDataset(ids, [[True] * len(x) for x in ids], [''] * len(ids), 'text')
        t = time.perf_counter(); k = 0
        while time.perf_counter() - t < 1: make_batch(ds, np.arange(8)); k += 1
        print(f'| {n:,} | {bo:.2f} | {(time.perf_counter() - t) / k * 1e3:.2f} |', flush=True)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default='tiny')
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'], help='both tools\' model dtype')
    sub = ap.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('compile'); c.add_argument('--lengths', type=int, nargs='+', default=[64 + 32 * i for i in range(12)])
    c.add_argument('--per-length', type=int, default=4)
    m = sub.add_parser('memory'); m.add_argument('--length', type=int, default=1024); m.add_argument('--chunks', type=int, nargs='*', default=[256])
    m.add_argument('--steps', type=int, default=2); m.add_argument('--attention-chunk', type=int, default=128)
    m.add_argument('--basic', action='store_true', help="only mlx-lm, mlxtune, mlxtune with each loss_chunk_size, and with the loss in the logits' dtype")
    st = sub.add_parser('step'); st.add_argument('--length', type=int, default=256); st.add_argument('--steps', type=int, default=5)
    st.add_argument('--rounds', type=int, default=3)
    ab = sub.add_parser('ab'); ab.add_argument('--length', type=int, default=256); ab.add_argument('--steps', type=int, default=8)
    ab.add_argument('--rounds', type=int, default=3)
    d = sub.add_parser('dropout'); d.add_argument('--length', type=int, default=256); d.add_argument('--steps', type=int, default=8)
    d.add_argument('--rounds', type=int, default=2); d.add_argument('--p', type=float, default=0.1)
    h = sub.add_parser('host'); h.add_argument('--samples', type=int, nargs='+', default=[500, 10_000, 100_000])
    a = ap.parse_args()
    DTYPE[0] = a.dtype
    {'compile': cmd_compile, 'memory': cmd_memory, 'host': cmd_host, 'step': cmd_step, 'ab': cmd_ab, 'dropout': cmd_dropout}[a.cmd](a)

if __name__ == '__main__': main()
