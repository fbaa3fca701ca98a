"""mlxtune's DPO vs TRL's DPOTrainer (PEFT LoRA): training speed and peak memory on the same preference pairs.

One DPO setting, side by side: the same random-weight model (one set of weights on disk, loaded in `--dtype` by both
tools), the same LoRA (rank `--rank`, lora_alpha `--alpha`, every linear layer of every block), the same synthetic
pairs, the same number of pairs per step, steps, learning rate and optimizer (Adam, bias-corrected, no weight decay,
constant rate, no gradient clipping, no gradient checkpointing), the same beta (0.1) and the sigmoid DPO loss. The
reference is the model with its adapters off in both: mlxtune's `adapters_off`, and TRL's own choice when it is
given a `peft_config` and no `ref_model`.

    python bench/dpo_vs_trl.py --model tiny --prompt-len 32 --answer-len 32 --steps 4 --warmup 1   # CPU check
    python bench/dpo_vs_trl.py --model llama-3.2-1b --device gpu --json out.json                    # GPU machine
    python bench/dpo_vs_trl.py --model llama-3.2-1b smollm2-135m --device gpu --runs mlxtune-dpo trl-precomputed
    python bench/dpo_vs_trl.py --model llama-3.2-1b --device gpu --loss-chunk-size 512   # logits 512 positions at a time

Data: `steps x --pairs` pairs (one epoch, each pair seen once), each a prompt of `--prompt-len` random token ids and
two answers (chosen, rejected) of `--answer-len` random ids each; fixed lengths, so neither tool pads anything it
would not pad anyway (a row is prompt + answer tokens; mlxtune pads its `len - 1` model inputs to a multiple of 64 on
a GPU, 8 on a CPU: with 256 + 256 both tools run 512 positions a row). Both tools get the token ids directly: TRL's
dataset holds `prompt_ids`, `chosen_ids` and `rejected_ids` and its own tokenization step is skipped (it has nothing
to add: no EOS appended, no truncation). Only answer tokens are trained (each row has `--answer-len` targets).

Runs, each in a fresh subprocess (`--runs`, in this order by default):
- `mlxtune-dpo`: `train(..., loss_fn=PreferenceLoss('dpo'))`, reference 'cached': the pairs are scored once with the
  adapters off before the first step (timed apart: "reference pass").
- `mlxtune-dpo-otf`: the same with reference='on_the_fly' (a no-gradient forward of the base model every step).
- `mlxtune-sft`: mlxtune's cross-entropy step on the same rows (every pair's chosen and rejected answer as two rows:
  batches of 2 x `--pairs` rows, the same trained tokens per step): what a DPO step costs next to supervised tuning.
- `trl`: TRL's DPOTrainer as configured by default for the reference (precompute_ref_log_probs=False: a reference
  forward with the adapters disabled in every step).
- `trl-precomputed`: precompute_ref_log_probs=True (scored once before training, at the training batch size; timed
  apart), the match of mlxtune's 'cached'.
TRL's DPOConfig defaults to gradient_checkpointing=True; it is turned off here (as in mlxtune) unless
`--trl-grad-checkpoint`. TRL logs every step (`logging_steps=1`, to record the loss); mlxtune also reads every
step's loss. Both run their own per-step measures (rewards, accuracies; TRL also entropy and logit means).

Measures, per run, over the steps after `--warmup` warm-up steps (the first compilation, allocator growth): trained
(answer) tokens/s, pairs/s, milliseconds per step (a step's end is taken after its work is finished on the device:
mlxtune evaluates every step, the TRL callback synchronises CUDA); the reference pass's time where there is one;
peak memory of the whole process (`mx.get_peak_memory()`, `torch.cuda.max_memory_allocated()`; on the CPU, max RSS);
the first step's loss (log 2 = 0.693 in both: LoRA starts as the identity, so the policy equals the reference) and
the mean loss of the last `--warmup` steps. Ratios mlxtune / TRL are given for the two matching pairs of runs (cached
vs precomputed, on the fly vs TRL's default), and the step costs of DPO relative to the SFT step on the same rows.

Models: `tiny` (mlxtune.tiny), `50m`, `qwen2.5-0.5b`, `llama-3.2-1b`, `llama-3.1-8b` (bench/tuner_vs_mlxlm.py's
table) and `smollm2-135m` (SmolLM2-135M's published shape): random weights written once to `--cache-dir` in
`--dtype` (default bfloat16 on the GPU, float32 on the CPU), with the tiny tokenizer (the ids are random anyway).
Output: a markdown table per model, printed with the machine, versions and command line; `--json` writes every
run's numbers.
"""
import argparse, datetime, json, os, shlex, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import tuner_vs_mlxlm as tv   # noqa: E402  (the model table and random-weight writer; it imports nothing heavy)

RUNS = ('mlxtune-dpo', 'mlxtune-dpo-otf', 'mlxtune-sft', 'trl', 'trl-precomputed')
SHAPES = {**tv.SHAPES,
          'smollm2-135m': dict(model_type='llama', architectures=['LlamaForCausalLM'], hidden_size=576,
                               intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                               num_key_value_heads=3, head_dim=64, vocab_size=49152, rms_norm_eps=1e-5,
                               rope_theta=100000.0, max_position_embeddings=8192, tie_word_embeddings=True,
                               hidden_act='silu', attention_bias=False, mlp_bias=False)}

# ----------------------------------------------------------------------------------------------- model and data
def prepare_model(name:str, a)->Path:
    "The model directory for `name`: bench/tuner_vs_mlxlm.py's (random weights written to the cache the first time)."
    tv.SHAPES.update(SHAPES)   # its table, and SmolLM2-135M's shape
    return tv.prepare_model(name, argparse.Namespace(cache_dir=a.cache_dir, seed=a.seed, dtype=a.dtype, tokens='random'))[0]

def make_pairs(n:int, prompt_len:int, answer_len:int, vocab:int, seed:int)->list[dict]:
    "`n` pairs of random token ids (3 and up: the tiny tokenizer's special tokens are left out)."
    import numpy as np
    rng = np.random.default_rng(seed)
    ids = lambda k: rng.integers(3, vocab, size=k).tolist()
    return [dict(prompt_ids=ids(prompt_len), chosen_ids=ids(answer_len), rejected_ids=ids(answer_len)) for _ in range(n)]

# ---------------------------------------------------------------------------------------------------- workers
def worker_mlxtune(spec:dict)->dict:
    import mlxtune   # noqa: F401  (before mlx)
    import mlx.core as mx
    mx.set_default_device(mx.gpu if spec['device'] == 'gpu' else mx.cpu)
    import mlxtune.trainer as T
    from mlxtune.adapters import load
    from mlxtune.lora import LoraArgs, apply_lora
    from mlxtune.callbacks import Callback
    from mlxtune.data import TokenizedDataset
    from mlxtune.preference import PreferenceDataset, PreferenceLoss
    from mlx.utils import tree_flatten
    model, _ = load(spec['model_dir'], dtype=spec['dtype'])
    mx.random.seed(spec['seed'])
    apply_lora(model, LoraArgs(r=spec['rank'], lora_alpha=spec['alpha'], target_modules=spec['keys']))
    lora = tree_flatten(model.trainable_parameters())
    pairs = json.loads(Path(spec['pairs']).read_text())
    ids, trained = [], []
    for p in pairs:   # interleaved rows: chosen, rejected
        for ans in (p['chosen_ids'], p['rejected_ids']):
            ids.append(p['prompt_ids'] + ans); trained.append([False] * len(p['prompt_ids']) + [True] * len(ans))
    rows = TokenizedDataset(ids, trained, [f'pair {i // 2}' for i in range(len(ids))], 'preference')
    kind = spec['run']
    t = {'ref_s': None}
    if kind == 'mlxtune-sft':
        ds, loss_fn, bs = rows, T.cross_entropy_loss, 2 * spec['pairs_per_step']
    else:
        ds, bs = PreferenceDataset(rows), spec['pairs_per_step']
        loss_fn = PreferenceLoss('dpo', beta=spec['beta'], reference='cached' if kind == 'mlxtune-dpo' else 'on_the_fly')
        prepare = loss_fn.prepare
        def timed_prepare(*args, **kw):
            t0 = time.perf_counter()
            out = prepare(*args, **kw)
            if loss_fn.reference == 'cached': t['ref_s'] = time.perf_counter() - t0
            return out
        loss_fn.prepare = timed_prepare
    steps = []
    class Rec(Callback):
        def on_train_begin(self, st): t['t0'] = time.perf_counter()
        def on_step(self, st, loss, n_tokens): steps.append(dict(t=time.perf_counter(), loss=float(loss), trained=int(n_tokens)))
    args = T.TrainingArgs(batch_size=bs, iters=spec['steps'], learning_rate=spec['lr'], optimizer='adam',
                          steps_per_report=spec['steps'], steps_per_eval=10 ** 9, save_every=10 ** 9, seed=spec['seed'],
                          loss_chunk_size=spec.get('loss_chunk_size', 0))
    t['call'] = time.perf_counter()
    T.train(model, ds, None, args, adapter_config=None, loss_fn=loss_fn, callbacks=[Rec()], log=None)
    return dict(t0=t['t0'], setup_s=t['t0'] - t['call'], ref_s=t['ref_s'], steps=steps,
                peak_memory_gb=mx.get_peak_memory() / 1e9, max_rss_gb=tv.rss_gb(),
                n_lora=sum(v.size for _, v in lora), lora_dtype=str(lora[0][1].dtype), rows_per_step=2 * spec['pairs_per_step'])

def worker_trl(spec:dict)->dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer
    cuda = spec['device'] == 'gpu'
    torch.manual_seed(spec['seed'])
    dtype = getattr(torch, spec['dtype'])
    tok = AutoTokenizer.from_pretrained(spec['model_dir'])
    if tok.pad_token is None: tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec['model_dir'], dtype=dtype, attn_implementation='sdpa')
    if cuda: model = model.to('cuda')
    pairs = json.loads(Path(spec['pairs']).read_text())
    data = Dataset.from_list(pairs)
    t = {'ref_s': None}

    class PreTokenized(DPOTrainer):
        "DPOTrainer on a dataset that already holds prompt_ids/chosen_ids/rejected_ids (tokenization skipped)."
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name): return dataset
        def _precompute_ref_logps(self, dataset, name, batch_size):
            t0 = time.perf_counter()
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            if cuda: torch.cuda.synchronize()
            t['ref_s'] = time.perf_counter() - t0
            return out

    steps, losses = [], {}
    class Rec(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if cuda: torch.cuda.synchronize()
            t['t0'] = time.perf_counter()
        def on_step_end(self, args, state, control, **kw):
            if cuda: torch.cuda.synchronize()
            steps.append(dict(t=time.perf_counter()))
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and 'loss' in logs: losses[state.global_step] = float(logs['loss'])

    peft_config = LoraConfig(r=spec['rank'], lora_alpha=spec['alpha'], lora_dropout=0.0, bias='none',
                             target_modules=spec['keys'], task_type='CAUSAL_LM')
    bf16 = spec['dtype'] == 'bfloat16'
    cfg = DPOConfig(output_dir=str(Path(spec['run_dir'])/'out'), per_device_train_batch_size=spec['pairs_per_step'],
                    max_steps=spec['steps'], learning_rate=spec['lr'], lr_scheduler_type='constant', warmup_steps=0,
                    optim='adamw_torch', weight_decay=0.0, max_grad_norm=0.0, beta=spec['beta'], loss_type=['sigmoid'],
                    bf16=bf16, fp16=False, use_cpu=not cuda, gradient_checkpointing=spec['trl_grad_checkpoint'],
                    precompute_ref_log_probs=spec['run'] == 'trl-precomputed', max_length=None,
                    logging_steps=1, save_strategy='no', report_to='none', disable_tqdm=True, seed=spec['seed'],
                    dataloader_num_workers=0)
    trainer = PreTokenized(model=model, args=cfg, train_dataset=data, processing_class=tok, peft_config=peft_config,
                           callbacks=[Rec()])
    lora = [p for p in trainer.model.parameters() if p.requires_grad]
    trainer.train()
    base = trainer.model.get_base_model()   # read after train(), which turns checkpointing on when asked
    checkpointing = bool(getattr(base, 'is_activation_checkpointing', getattr(base, 'is_gradient_checkpointing', False)))
    for i, s in enumerate(steps): s['loss'] = losses.get(i + 1)
    import peft, trl, transformers, accelerate, datasets
    return dict(t0=t['t0'], ref_s=t['ref_s'], steps=steps, grad_checkpointing=checkpointing,
                peak_memory_gb=(torch.cuda.max_memory_allocated() / 1e9 if cuda else None), max_rss_gb=tv.rss_gb(),
                n_lora=sum(p.numel() for p in lora), lora_dtype=str(lora[0].dtype),
                versions=dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                              trl=trl.__version__, accelerate=accelerate.__version__, datasets=datasets.__version__))

# --------------------------------------------------------------------------------------------------- analysis
def summarise(res:dict, warmup:int, pairs:int, answer_len:int)->dict:
    st = res['steps']
    w = min(warmup, len(st) - 1)
    dt = st[-1]['t'] - (st[w - 1]['t'] if w else res['t0'])
    n = len(st) - w
    losses = [s['loss'] for s in st if s.get('loss') is not None]
    k = max(1, min(warmup, len(losses)))
    return dict(tokens_per_s=n * 2 * pairs * answer_len / dt, pairs_per_s=n * pairs / dt, step_ms=1000 * dt / n,
                warmup_s=(st[w - 1]['t'] - res['t0']) if w else 0.0, ref_s=res.get('ref_s'),
                peak_memory_gb=res['peak_memory_gb'] if res['peak_memory_gb'] is not None else None,
                max_rss_gb=res['max_rss_gb'], first_loss=losses[0] if losses else None,
                last_loss=sum(losses[-k:]) / k if losses else None, steps=len(st), n_lora=res['n_lora'],
                lora_dtype=res['lora_dtype'])

LABELS = {'mlxtune-dpo': 'mlxtune DPO, reference cached', 'mlxtune-dpo-otf': 'mlxtune DPO, reference on the fly',
          'mlxtune-sft': 'mlxtune SFT (cross entropy), same rows', 'trl': 'TRL DPO, default (reference every step)',
          'trl-precomputed': 'TRL DPO, precompute_ref_log_probs=True'}
PAIRS = [('mlxtune-dpo', 'trl-precomputed', 'reference scored once'), ('mlxtune-dpo-otf', 'trl', 'reference every step')]

def fmt(v, f): return '-' if v is None else f.format(v)

def tables(summ:dict, a, device:str, mem_key:str)->str:
    mem = 'peak GPU memory, GB' if mem_key == 'peak_memory_gb' else 'max RSS, GB'
    lines = [f'| run | trained tokens/s | pairs/s | ms/step | reference pass, s | {mem} | first loss | last loss |',
             '|---|---|---|---|---|---|---|---|']
    for r, s in summ.items():
        lines.append(f"| {LABELS[r]} | {s['tokens_per_s']:,.0f} | {s['pairs_per_s']:.2f} | {s['step_ms']:.1f} | "
                     f"{fmt(s['ref_s'], '{:.2f}')} | {fmt(s[mem_key], '{:.2f}')} | {fmt(s['first_loss'], '{:.4f}')} | "
                     f"{fmt(s['last_loss'], '{:.4f}')} |")
    out = '\n'.join(lines)
    ratio = [f'| setting | tokens/s mlxtune / TRL | {mem} mlxtune / TRL | reference pass mlxtune / TRL |', '|---|---|---|---|']
    for m, t, what in PAIRS:
        if m in summ and t in summ:
            sm, st = summ[m], summ[t]
            rp = sm['ref_s'] / st['ref_s'] if sm['ref_s'] and st['ref_s'] else None
            rmem = sm[mem_key] / st[mem_key] if sm[mem_key] and st[mem_key] else None
            ratio.append(f"| {what} | {sm['tokens_per_s'] / st['tokens_per_s']:.2f}x | {fmt(rmem, '{:.2f}x')} | "
                         f"{fmt(rp, '{:.2f}x')} |")
    if len(ratio) > 2: out += '\n\n' + '\n'.join(ratio)
    if 'mlxtune-sft' in summ:
        sft = summ['mlxtune-sft']['step_ms']
        notes = []
        if 'mlxtune-dpo' in summ:
            d = summ['mlxtune-dpo']
            per = d['ref_s'] * 1000 / d['steps'] if d['ref_s'] else None
            notes.append(f"DPO step (cached) / SFT step on the same {2 * a.pairs} rows: {d['step_ms'] / sft:.2f}"
                         + (f"; with the reference pass spread over the epoch's {d['steps']} steps "
                            f"(+{per:.1f} ms/step): {(d['step_ms'] + per) / sft:.2f}" if per else ''))
        if 'mlxtune-dpo-otf' in summ:
            notes.append(f"DPO step (on the fly) / SFT step: {summ['mlxtune-dpo-otf']['step_ms'] / sft:.2f}")
        out += '\n\n' + '\n'.join(f'- {x}' for x in notes)
    return out

# ------------------------------------------------------------------------------------------------------- main
def run_worker(run:str, spec:dict, work:Path)->dict:
    spec = dict(spec, run=run, run_dir=str(work/f'run-{run}'))
    Path(spec['run_dir']).mkdir(parents=True, exist_ok=True)
    sp, out, log = work/f'spec-{run}.json', work/f'result-{run}.json', work/f'log-{run}.txt'
    sp.write_text(json.dumps(spec))
    env = dict(os.environ, TQDM_DISABLE='1')
    if run.startswith('trl'): env['MLXTUNE_BLAS'] = 'off'
    t = time.perf_counter()
    with open(log, 'w') as f:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), '--worker', '--spec', str(sp), '--out', str(out)],
                           stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if p.returncode != 0:   # reported, and the other runs go on
        print(f'{run} failed (exit {p.returncode}); log {log}:\n{log.read_text()[-5000:]}', flush=True)
        return None
    res = json.loads(out.read_text())
    res['wall_s'] = time.perf_counter() - t
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', nargs='+', default=['tiny'], help=f'tiny, {", ".join(SHAPES)}, or a model directory')
    ap.add_argument('--device', default='cpu', choices=['cpu', 'gpu'])
    ap.add_argument('--dtype', default=None, choices=['float32', 'bfloat16'], help='default: bfloat16 on gpu, float32 on cpu')
    ap.add_argument('--runs', nargs='+', default=list(RUNS), choices=RUNS)
    ap.add_argument('--steps', type=int, default=25, help='steps per run, warm-up included')
    ap.add_argument('--warmup', type=int, default=5, help='steps left out of the timing')
    ap.add_argument('--pairs', type=int, default=4, help='pairs per step')
    ap.add_argument('--prompt-len', type=int, default=256)
    ap.add_argument('--answer-len', type=int, default=256)
    ap.add_argument('--rank', type=int, default=16)
    ap.add_argument('--alpha', type=float, default=32.0)
    ap.add_argument('--lr', type=float, default=1e-4)
    ap.add_argument('--beta', type=float, default=0.1)
    ap.add_argument('--loss-chunk-size', type=int, default=0, help="mlxtune's loss_chunk_size (0: the logits at once)")
    ap.add_argument('--trl-grad-checkpoint', action='store_true', help="TRL's DPOConfig default (here off by default)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--json', default=None)
    ap.add_argument('--cache-dir', default='~/.cache/mlxtune/bench')
    ap.add_argument('--work-dir', default=None)
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--spec', help=argparse.SUPPRESS)
    ap.add_argument('--out', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        spec = json.loads(Path(a.spec).read_text())
        res = (worker_trl if spec['run'].startswith('trl') else worker_mlxtune)(spec)
        Path(a.out).write_text(json.dumps(res))
        return

    import mlxtune   # noqa: F401  (before mlx)
    import mlx.core as mx
    mx.set_default_device(mx.cpu)   # the parent writes weights only: the GPU is left to the runs
    a.dtype = a.dtype or ('bfloat16' if a.device == 'gpu' else 'float32')
    if a.warmup >= a.steps: raise SystemExit('--warmup must be smaller than --steps')
    gpu = tv.gpu_name() if a.device == 'gpu' else None
    machine = f'GPU {gpu}' if gpu else f'CPU {tv.cpu_name()} ({os.cpu_count()} cores)'
    cmd = 'python ' + ' '.join(shlex.quote(x) for x in [os.path.relpath(__file__, REPO)] + sys.argv[1:])
    stamp = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    work_root = Path(a.work_dir or tempfile.mkdtemp(prefix='dpo_vs_trl-'))
    print(f'{machine}\n{cmd}\nwork dir {work_root}', flush=True)
    mem_key = 'peak_memory_gb' if a.device == 'gpu' else 'max_rss_gb'
    all_out, md, trl_versions = [], [], None
    for mname in a.model:
        mdir = prepare_model(mname, a)
        dims = tv.model_dims(mdir)
        keys = tv.block_linear_keys(mdir)
        work = work_root/Path(mname).name
        work.mkdir(parents=True, exist_ok=True)
        n_pairs = a.steps * a.pairs
        (work/'pairs.json').write_text(json.dumps(make_pairs(n_pairs, a.prompt_len, a.answer_len, dims['vocab'], a.seed)))
        spec = dict(model_dir=str(mdir), pairs=str(work/'pairs.json'), device=a.device, dtype=a.dtype, seed=a.seed,
                    rank=a.rank, alpha=a.alpha, keys=keys, pairs_per_step=a.pairs, steps=a.steps, lr=a.lr, beta=a.beta,
                    trl_grad_checkpoint=a.trl_grad_checkpoint, loss_chunk_size=a.loss_chunk_size)
        raw, summ = {}, {}
        for r in a.runs:
            res = run_worker(r, spec, work)
            if res is None: continue
            raw[r], summ[r] = res, summarise(res, a.warmup, a.pairs, a.answer_len)
            trl_versions = res.get('versions') or trl_versions
            s = summ[r]
            print(f"  {r:16s} {s['tokens_per_s']:10,.0f} trained tok/s, {s['pairs_per_s']:7.2f} pairs/s, "
                  f"{s['step_ms']:8.1f} ms/step, ref {fmt(s['ref_s'], '{:.2f}')} s, peak {fmt(s['peak_memory_gb'], '{:.2f}')} GB, "
                  f"RSS {s['max_rss_gb']:.2f} GB, loss {fmt(s['first_loss'], '{:.4f}')} -> {fmt(s['last_loss'], '{:.4f}')}, "
                  f"LoRA {s['n_lora']:,} ({s['lora_dtype']}) (wall {res['wall_s']:.0f}s)", flush=True)
        if not summ: continue
        lora = next(iter(summ.values()))['n_lora']
        title = (f"**{mname}** (random weights, {a.dtype}, LoRA r={a.rank} alpha={a.alpha:g} on {len(keys)} linear layers x "
                 f"{dims['n_layers']} blocks: {lora / 1e6:.2f}M parameters): {n_pairs} pairs of prompt {a.prompt_len} + "
                 f"answers {a.answer_len} tokens, {a.pairs} pairs ({2 * a.pairs} rows) per step, {a.steps} steps "
                 f"({a.warmup} warm-up steps not timed), Adam lr {a.lr:g}, beta {a.beta:g}, on {machine}"
                 f"{'; TRL with gradient checkpointing' if a.trl_grad_checkpoint else ''}"
                 f"{f'; mlxtune loss_chunk_size={a.loss_chunk_size}' if a.loss_chunk_size else ''}")
        tb = title + '\n\n' + tables(summ, a, a.device, mem_key)
        warn = [f'{r}: first loss {s["first_loss"]:.4f}, not log 2 = 0.6931' for r, s in summ.items()
                if r != 'mlxtune-sft' and s['first_loss'] is not None and abs(s['first_loss'] - 0.6931) > 0.01]
        warn += [f'{r}: gradient checkpointing was {"on" if res["grad_checkpointing"] else "off"}' for r, res in raw.items()
                 if 'grad_checkpointing' in res and res['grad_checkpointing'] != a.trl_grad_checkpoint]
        if warn: tb += '\n' + '\n'.join(f'- warning: {w}' for w in warn)
        print('\n' + tb + '\n', flush=True)
        md.append(tb)
        all_out.append(dict(model=mname, model_dir=str(mdir), dims=dims, keys=keys, summaries=summ, runs=raw))
    import mlx_lm
    ver = f'mlx {mx.__version__}, mlx-lm {mlx_lm.__version__}, mlxtune {tv.git_commit()}'
    if trl_versions: ver += ', ' + ', '.join(f'{k} {v}' for k, v in trl_versions.items())
    print(f'{stamp}; {machine}; {ver}')
    if a.json:
        Path(a.json).write_text(json.dumps(dict(date=stamp, machine=machine, versions=ver, command=cmd, markdown=md,
                                                results=all_out), indent=1))
        print(f'wrote {a.json}')

if __name__ == '__main__': main()
