"""Peak memory and speed of mlxtune's training step under different options, one fresh process per configuration
(model shapes with random weights, as in `tuner_vs_mlxlm.py`): where does a step's memory go?

Each update's peak is measured alone (MLX's peak is read and reset after every update): the first update's, the
highest one's, and the run's (what `mx.get_peak_memory()` says over the whole training). A configuration is
TrainingArgs KEY=VALUE items; an upper-case NAME=VALUE item is an environment variable of its process (for example
MLX_MAX_MB_PER_BUFFER=200). `--bits 4` trains on a quantized base (QLoRA, group size 64).

    python bench/memory_probe.py --model llama-3.2-1b --data chat --configs "pack=True pack_length=1024" "pack=True pack_length=1024 grad_checkpoint=True"
    python bench/memory_probe.py --model llama-3.1-8b --bits 4 --batch-size 2 --length 1024 --configs "" "memory_budget_gb=8"
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

def parse_kv(items):
    "KEY=VALUE strings -> dict (numbers, True/False, strings)."
    out = {}
    for kv in items:
        k, v = kv.split('=', 1)
        out[k] = {'True': True, 'False': False}.get(v, v)
        if isinstance(out[k], str):
            try: out[k] = json.loads(v)
            except ValueError: pass
    return out

def worker(spec):
    import mlxtune
    import mlx.core as mx, mlx.nn as nn, numpy as np
    from mlx_lm.models import llama, qwen2
    from tuner_vs_mlxlm import SHAPES
    from mlxtune.data import TokenizedDataset
    from mlxtune.lora import LoraArgs, apply_lora
    from mlxtune.trainer import TrainingArgs, train
    from mlxtune.callbacks import Callback
    cfg = dict(SHAPES[spec['model']]); cfg.setdefault('vocab_size', 49152)
    mod = {'llama': llama, 'qwen2': qwen2}[cfg['model_type']]
    mx.random.seed(0)
    model = mod.Model(mod.ModelArgs.from_dict(cfg))
    model.set_dtype(getattr(mx, spec['dtype']))
    if spec['bits']: nn.quantize(model, group_size=64, bits=spec['bits'])
    mx.eval(model.parameters())
    apply_lora(model, LoraArgs(r=8, lora_alpha=16, target_modules='all-linear'))
    rng = np.random.default_rng(0)
    B, S = spec['train_args'].get('batch_size', spec['batch_size']), spec['steps']
    lens = rng.integers(50, spec['length'] + 1, 4 * B * S) if spec['data'] == 'chat' else [spec['length'] + 1] * (B * S)
    ids = [rng.integers(0, cfg['vocab_size'], int(n)).tolist() for n in lens]
    ds = TokenizedDataset(ids, [[True] * len(x) for x in ids], ['probe'] * len(ids), 'text')
    times, peaks = [], []
    class Rec(Callback):
        def on_step(self, st, loss, n_tok):
            times.append((time.perf_counter(), n_tok))
            peaks.append(mx.get_peak_memory()); mx.reset_peak_memory()   # this update's, and what came before it
    weights_gb = mx.get_active_memory() / 1e9
    mx.clear_cache(); mx.reset_peak_memory()
    lines = []
    train(model, ds, None, TrainingArgs(**{'iters': S, 'batch_size': B, 'learning_rate': 1e-4, **spec['train_args']}), adapter_config=None, callbacks=[Rec()], log=lines.append)
    w = spec['warmup']
    dt = times[-1][0] - times[w - 1][0]
    top = int(np.argmax(peaks))
    return {'trained_tok_s': sum(n for _, n in times[w:]) / dt, 'first_gb': peaks[0] / 1e9, 'top_gb': peaks[top] / 1e9,
            'top_step': top + 1, 'peak_gb': max(peaks + [mx.get_peak_memory()]) / 1e9, 'weights_gb': weights_gb,
            'said': [x for x in lines if x.startswith('memory_budget_gb')]}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='llama-3.2-1b')
    ap.add_argument('--data', default='fixed', choices=['fixed', 'chat'], help='fixed rows of --length, or lengths 50..--length')
    ap.add_argument('--length', type=int, default=1024)
    ap.add_argument('--batch-size', type=int, default=4)
    ap.add_argument('--steps', type=int, default=15)
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--configs', nargs='+', default=[''], help='each a space-separated list of TrainingArgs KEY=VALUE')
    ap.add_argument('--dtype', default=None, help='model dtype (default: bfloat16 on a GPU, float32 on a CPU, where 16-bit products do not go through BLAS)')
    ap.add_argument('--bits', type=int, default=0, help='quantize the base to this many bits (group size 64): QLoRA')
    ap.add_argument('--worker', default=None)
    a = ap.parse_args()
    if a.worker: print(json.dumps(worker(json.loads(a.worker)))); return
    import mlx.core as mx
    a.dtype = a.dtype or ('bfloat16' if mx.default_device().type == mx.gpu else 'float32')
    print(f'# {a.model}, {a.data} data, batch {a.batch_size}, length {a.length}, {a.steps} steps ({a.warmup} warm-up), {a.dtype} on {mx.default_device()}, mlx {mx.__version__}')
    print(f'command: python bench/memory_probe.py {" ".join(sys.argv[1:])}\n')
    print('| settings | trained tokens/s | first update GB | highest update GB (which) | run peak GB | weights GB |\n|---|---|---|---|---|---|')
    for c in a.configs:
        items = c.split()
        env = {k: v for k, v in (x.split('=', 1) for x in items) if k.isupper()}
        spec = dict(model=a.model, data=a.data, length=a.length, batch_size=a.batch_size, steps=a.steps, warmup=a.warmup, dtype=a.dtype,
                    bits=a.bits, train_args=parse_kv([x for x in items if not x.split('=', 1)[0].isupper()]))
        out = subprocess.run([sys.executable, __file__, '--worker', json.dumps(spec)], capture_output=True, text=True,
                             env={**os.environ, **env})
        if out.returncode: print(f'| {c} | failed: {out.stderr.strip().splitlines()[-1][:200]} | | | | |', flush=True); continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {c or '(defaults)'} | {r['trained_tok_s']:,.0f} | {r['first_gb']:.2f} | {r['top_gb']:.2f} ({r['top_step']}) "
              f"| {r['peak_gb']:.2f} | {r['weights_gb']:.2f} |", flush=True)
        for x in r['said']: print(f'  {x}')

if __name__ == '__main__':
    main()
