"""QLoRA vs 16-bit LoRA in mlxtune, side by side: the same model shape (random weights), data and settings; the base
either bfloat16 or quantized (affine, `--bits`, `--group-size`). Each run in a fresh subprocess (clean peak memory),
alternating; real tokens/s over the steps after the warm-up, MLX peak memory, final loss; and per variant, the
weights' bytes and what the step adds to them. `--head16` adds QLoRA with the embedding and output head in bfloat16.

    python bench/qlora_vs_bf16.py --model llama-3.2-1b llama-3.1-8b --bits 4 --steps 20 --repeats 2
"""
import argparse, json, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

def worker(spec):
    import mlxtune
    import mlx.core as mx, mlx.nn as nn, numpy as np
    from mlx_lm.models import llama, qwen2
    from tuner_vs_mlxlm import SHAPES
    from mlxtune.data import TokenizedDataset
    from mlxtune.lora import LoraArgs, apply_lora
    from mlxtune.trainer import TrainingArgs, train
    from mlxtune.callbacks import Callback
    import mlxtune.lora as L
    from mlx.utils import tree_flatten
    if spec.get('qmm'): L.DEQUANTIZE_ROWS = 10**12   # MLX's quantized_matmul for every product (mlxtune before base_product)
    cfg = dict(SHAPES[spec['model']]); cfg.setdefault('vocab_size', 49152)
    mod = {'llama': llama, 'qwen2': qwen2}[cfg['model_type']]
    mx.random.seed(0)
    model = mod.Model(mod.ModelArgs.from_dict(cfg))
    model.set_dtype(mx.bfloat16)
    if spec['bits']:
        keep = spec.get('head16') and (lambda path, m: isinstance(m, (nn.Linear, nn.Embedding)) and not path.endswith(('embed_tokens', 'lm_head')))
        nn.quantize(model, group_size=spec['group_size'], bits=spec['bits'], class_predicate=keep or None)
    mx.eval(model.parameters())
    weights_gb = sum(v.nbytes for _, v in tree_flatten(model.parameters())) / 1e9
    apply_lora(model, LoraArgs(r=8, lora_alpha=16, target_modules='all-linear'))
    rng = np.random.default_rng(0)
    n = spec['steps'] * spec['batch_size']
    ids = [rng.integers(0, cfg['vocab_size'], spec['length'] + 1).tolist() for _ in range(n)]
    ds = TokenizedDataset(ids, [[True] * len(x) for x in ids], ['bench'] * n, 'text')
    mx.clear_cache(); mx.reset_peak_memory()   # the peak of training, not of building the model (float32 before the cast)
    times = []
    class Rec(Callback):
        def on_step(self, st, loss, n_tok): times.append((time.perf_counter(), loss))
    t0 = time.perf_counter()
    train(model, ds, None, TrainingArgs(iters=spec['steps'], batch_size=spec['batch_size'], learning_rate=1e-4, **spec['train_args']),
          adapter_config=None, callbacks=[Rec()], log=None)
    w = spec['warmup']
    dt = times[-1][0] - times[w - 1][0]
    real = (len(times) - w) * spec['batch_size'] * spec['length']
    return {'tok_s': real / dt, 'peak_gb': mx.get_peak_memory() / 1e9, 'loss': float(np.mean([l for _, l in times[-5:]])),
            'weights_gb': weights_gb, 'warmup_s': times[w - 1][0] - t0}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', nargs='+', default=['llama-3.2-1b'])
    ap.add_argument('--bits', type=int, default=4)
    ap.add_argument('--group-size', type=int, default=64)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--batch-size', type=int, default=4)
    ap.add_argument('--length', type=int, default=512)
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--train-args', nargs='*', default=[], metavar='KEY=VALUE', help="TrainingArgs fields for every run, e.g. grad_checkpoint=True")
    ap.add_argument('--no-qmm', action='store_true', help='leave out the quantized_matmul variant')
    ap.add_argument('--head16', action='store_true', help='also: QLoRA with the embedding and output head left in bfloat16')
    ap.add_argument('--worker', default=None)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker)))); return
    import mlx.core as mx
    from memory_probe import parse_kv
    train_args = parse_kv(a.train_args)
    print(f'# QLoRA ({a.bits}-bit, group {a.group_size}) vs bf16 LoRA, mlxtune, {a.batch_size}x{a.length}, '
          f'{a.steps} steps ({a.warmup} warm-up), device {mx.default_device()}, mlx {mx.__version__}')
    if train_args: print(f'TrainingArgs for every run: {train_args}')
    print(f'command: python bench/qlora_vs_bf16.py {" ".join(sys.argv[1:])}\n')
    print('| model | bf16 tok/s | QLoRA tok/s | ratio | QLoRA via quantized_matmul tok/s | ratio | bf16 peak GB | QLoRA peak GB | ratio | qmm peak GB | bf16 / QLoRA / qmm loss |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    variants = {'bf16': dict(bits=0), 'q': dict(bits=a.bits), 'qmm': dict(bits=a.bits, qmm=True)}
    if a.no_qmm: del variants['qmm']
    if a.head16: variants['head16'] = dict(bits=a.bits, head16=True)
    for m in a.model:
        res = {k: [] for k in variants}
        for _ in range(a.repeats):
            for k, v in variants.items():
                spec = dict(model=m, group_size=a.group_size, steps=a.steps, warmup=a.warmup, batch_size=a.batch_size, length=a.length, train_args=train_args, **v)
                out = subprocess.run([sys.executable, __file__, '--worker', json.dumps(spec)], capture_output=True, text=True)
                if out.returncode: print(out.stderr[-2000:]); raise SystemExit(f'{m} {k} failed')
                res[k].append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = lambda k, f: sorted(r[f] for r in res[k])[len(res[k]) // 2] if k in res else float('nan')
        print(f"| {m} | {med('bf16', 'tok_s'):,.0f} | {med('q', 'tok_s'):,.0f} | {med('q', 'tok_s') / med('bf16', 'tok_s'):.2f}x | "
              f"{med('qmm', 'tok_s'):,.0f} | {med('qmm', 'tok_s') / med('bf16', 'tok_s'):.2f}x | "
              f"{med('bf16', 'peak_gb'):.2f} | {med('q', 'peak_gb'):.2f} | {med('q', 'peak_gb') / med('bf16', 'peak_gb'):.2f}x | "
              f"{med('qmm', 'peak_gb'):.2f} | {med('bf16', 'loss'):.3f} / {med('q', 'loss'):.3f} / {med('qmm', 'loss'):.3f} |", flush=True)
        for k in res:   # where the memory goes: the model's weights, and the rest of the peak
            print(f"  {m} {k}: weights {med(k, 'weights_gb'):.2f} GB, peak {med(k, 'peak_gb'):.2f} GB (the step: {med(k, 'peak_gb') - med(k, 'weights_gb'):.2f} GB), "
                  f"{med(k, 'tok_s'):,.0f} tok/s", flush=True)

if __name__ == '__main__':
    main()
