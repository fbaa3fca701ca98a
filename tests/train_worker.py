"""A training run in its own process, for the kill -9, Ctrl-C and data-parallel tests.

    python tests/train_worker.py MODEL_DIR RUN_DIR [--resume] [--iters N] [--batch-size B] [--keep K] [--slow-delete S] [--pause-after-save S]
                                 [--loss dpo|ipo|orpo|simpo] (preference pairs instead of the chat set) [--pack] [--accum N] [--bits 4]
Writes RUN_DIR/history.json (losses only) when it finishes; RUN_DIR/interrupted.json and exit status 3 when Ctrl-C stops it.
--slow-delete and --pause-after-save widen two moments for a kill to land in: a rotation's deletion, and the time right
after the step-0 checkpoint."""
import argparse, json, shutil, sys, time
from pathlib import Path
import mlx.core as mx
from mlxtune.adapters import load
from mlxtune.data import DataArgs, load_split
from mlxtune.lora import LoraArgs, apply_lora
from mlxtune.tiny import tiny_chat_data
from mlxtune.preference import PreferenceArgs, load_preference_datasets, preference_loss
from mlxtune.trainer import TrainingArgs, TrainingInterrupted, train
from mlxtune import checkpoints
from mlxtune.checkpoints import list_checkpoints

ap = argparse.ArgumentParser()
ap.add_argument('model'); ap.add_argument('run')
ap.add_argument('--resume', action='store_true')
ap.add_argument('--iters', type=int, default=20)
ap.add_argument('--batch-size', type=int, default=4)
ap.add_argument('--dropout', type=float, default=0.1)
ap.add_argument('--keep', type=int, default=0)
ap.add_argument('--slow-delete', type=float, default=0.0)
ap.add_argument('--pause-after-save', type=float, default=0.0)
ap.add_argument('--loss', default='cross_entropy')
ap.add_argument('--pack', action='store_true')
ap.add_argument('--accum', type=int, default=1)
ap.add_argument('--bits', type=int, default=0)
a = ap.parse_args()
if a.slow_delete:
    rmtree = shutil.rmtree
    def slow_rmtree(p, *args, **kw):
        if '.del-' in Path(p).name: time.sleep(a.slow_delete)
        return rmtree(p, *args, **kw)
    shutil.rmtree = slow_rmtree
if a.pause_after_save:
    save = checkpoints.save_checkpoint
    def pausing_save(run_dir, step, *args, **kw):
        p = save(run_dir, step, *args, **kw)
        if step == 0: time.sleep(a.pause_after_save)
        return p
    checkpoints.save_checkpoint = pausing_save
mx.random.seed(0)
model, tok = load(a.model)
if a.bits:
    import mlx.nn as nn
    nn.quantize(model, group_size=32, bits=a.bits)   # QLoRA: a quantized base
cfg = apply_lora(model, LoraArgs(r=4, target_modules='all-linear', lora_dropout=a.dropout))
data, loss = tiny_chat_data(), preference_loss(PreferenceArgs(loss=a.loss))
if loss is None: train_set, valid_set = load_split(data[:40], tok, DataArgs()), load_split(data[40:], tok, DataArgs())
else:   # the chat set's answers, each preferred to a refusal
    pairs = [{'prompt': r['messages'][-2]['content'], 'chosen': r['messages'][-1]['content'], 'rejected': 'I cannot say.'}
             for r in data[:24]]
    splits = load_preference_datasets(tok, DataArgs(data={'train': pairs[:16], 'valid': pairs[16:]}), ('train', 'valid'))
    train_set, valid_set = splits['train'], splits['valid']
resume = a.run if a.resume and list_checkpoints(a.run) else None
args = TrainingArgs(batch_size=a.batch_size, iters=a.iters, learning_rate=3e-3, steps_per_report=3, steps_per_eval=5, save_every=1,
                    keep_checkpoints=a.keep, adapter_path=a.run, resume_from=resume, pack=a.pack,
                    grad_accumulation_steps=a.accum)
try: h = train(model, train_set, valid_set, args, adapter_config=cfg, log=None, **({'loss_fn': loss} if loss else {}))
except TrainingInterrupted as e:
    (Path(a.run)/'interrupted.json').write_text(json.dumps({'step': e.step, 'checkpoint': str(e.checkpoint)}))
    sys.exit(3)
if mx.distributed.init().rank() == 0:
    (Path(a.run)/'history.json').write_text(json.dumps({'train': [r['loss'] for r in h.train], 'val': [r['loss'] for r in h.val],
                                                        'val_margin': [r.get('reward_margin') for r in h.val],
                                                        'resumed_from': str(resume)}))
