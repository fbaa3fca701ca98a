"""Cost of a checkpoint: time to write `checkpoint-{step}/` (adapters, optimizer state, trainer state, fsync'd,
renamed into place) against the time of a training step, on a tiny and a ~40M-parameter Llama shape.

    python bench/checkpoint_overhead.py
"""
import tempfile, time
import mlx.core as mx
from mlx.utils import tree_flatten
from mlxtune.adapters import load
from mlxtune.checkpoints import save_checkpoint
from mlxtune.data import DataArgs, load_split
from mlxtune.lora import LoraArgs, apply_lora
from mlxtune.tiny import build_tiny_model, tiny_chat_data
from mlxtune.trainer import TrainingArgs, train

def measure(name, **shape):
    d = build_tiny_model(tempfile.mkdtemp(), **shape)
    model, tok = load(d)
    cfg = apply_lora(model, LoraArgs(r=16, target_modules='all-linear'))
    ds = load_split(tiny_chat_data(), tok, DataArgs())
    run = tempfile.mkdtemp()
    args = TrainingArgs(batch_size=8, iters=20, learning_rate=1e-4, steps_per_report=20, save_every=1000, adapter_path=run)
    t = time.perf_counter(); train(model, ds, None, args, adapter_config=cfg, log=None); step_s = (time.perf_counter() - t) / 20
    from mlxtune.optim import make_optimizer
    opt = make_optimizer('adam', 1e-4); opt.init(model.trainable_parameters()); mx.eval(opt.state)
    n = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    ts = []
    for i in range(5):
        t = time.perf_counter(); save_checkpoint(run, 10_000 + i, model, opt, {'step': i}, cfg); ts.append(time.perf_counter() - t)
    save_s = sorted(ts)[len(ts) // 2]
    total = sum(v.size for _, v in tree_flatten(model.parameters()))
    print(f'| {name} | {total / 1e6:.1f}M | {n / 1e6:.2f}M | {1e3 * save_s:.1f} ms | {1e3 * step_s:.1f} ms | {save_s / step_s:.2f} |')

print('| model | parameters | trainable (LoRA r=16, all-linear) | checkpoint write (median of 5) | training step (batch 8, incl. compile) | write / step |')
print('|---|---|---|---|---|---|')
measure('tiny (2 x 64)')
measure('Llama shape 8 x 512', hidden_size=512, num_hidden_layers=8, intermediate_size=1408, num_attention_heads=8, num_key_value_heads=4)
