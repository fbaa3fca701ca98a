"""A training run in its own process, for the kill -9 and data-parallel tests.

    python tests/train_worker.py MODEL_DIR RUN_DIR [--resume] [--iters N] [--batch-size B]
Writes RUN_DIR/history.json (losses only) when it finishes."""
import argparse, json
from pathlib import Path
import mlx.core as mx
from mlxtune.adapters import load
from mlxtune.data import DataArgs, load_split
from mlxtune.lora import LoraArgs, apply_lora
from mlxtune.tiny import tiny_chat_data
from mlxtune.trainer import TrainingArgs, train
from mlxtune.checkpoints import list_checkpoints

ap = argparse.ArgumentParser()
ap.add_argument('model'); ap.add_argument('run')
ap.add_argument('--resume', action='store_true')
ap.add_argument('--iters', type=int, default=40)
ap.add_argument('--batch-size', type=int, default=4)
ap.add_argument('--dropout', type=float, default=0.1)
a = ap.parse_args()
mx.random.seed(0)
model, tok = load(a.model)
cfg = apply_lora(model, LoraArgs(r=4, target_modules='all-linear', lora_dropout=a.dropout))
data = tiny_chat_data()
train_set, valid_set = load_split(data[:40], tok, DataArgs()), load_split(data[40:], tok, DataArgs())
resume = a.run if a.resume and list_checkpoints(a.run) else None
args = TrainingArgs(batch_size=a.batch_size, iters=a.iters, learning_rate=3e-3, steps_per_report=3, steps_per_eval=5, save_every=1,
                    keep_checkpoints=0, adapter_path=a.run, resume_from=resume)
h = train(model, train_set, valid_set, args, adapter_config=cfg, log=None)
if mx.distributed.init().rank() == 0:
    (Path(a.run)/'history.json').write_text(json.dumps({'train': [r['loss'] for r in h.train], 'val': [r['loss'] for r in h.val],
                                                        'resumed_from': str(resume)}))
