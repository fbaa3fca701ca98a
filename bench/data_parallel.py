"""Data-parallel scaling of mlxtune's trainer: one process per GPU, gradients summed over NCCL.

For each model shape and data set, mlxtune's `train` (LoRA r=16 on every linear layer of the blocks, frozen base in
`--dtype`, Adam, no validation, no checkpoints: `adapter_config=None`) runs
- on 1 GPU with a batch of `--batch-size` B rows, then
- on N GPUs (each `--gpus` value) with a global batch of N*B rows: the trainer gives each worker every N-th row of
  every batch (`worker_share`), so each GPU computes B rows, and sums the gradients with one flat `all_sum` per
  update;
each with the same `--warmup` untimed and `--steps` timed updates, each in fresh processes.

Reported per run: tokens/s over all GPUs (real tokens: the trained tokens of fixed rows, the non-padding model
inputs of chat data, summed over the workers), scaling efficiency = tokens/s(N) / (N * tokens/s(1)), time per
update (wall time between the ends of consecutive updates on worker 0, median and mean), each worker's peak memory
(`mx.get_peak_memory()`, written by each worker to its own file), and the cost of the gradient exchange alone: in
the same processes, after training, a flat float32 `all_sum` of as many numbers as the trainer sends (the LoRA
parameters plus the loss sums), timed over `--allsum-reps` repetitions after 3 untimed ones. On the GPU, worker 0
also records `nvidia-smi`'s memory in use on every GPU (which includes the CUDA context and NCCL's buffers, memory
that `mx.get_peak_memory()` does not see).

Correctness: for each N > 1, one more 1-GPU run with the global batch N*B (`--check-steps` updates). The N-GPU
run's first update's loss (the base model's: LoRA's B starts at zero) must equal this run's. The tolerance is
measured in the reference process: the first batch's loss evaluated whole and as the token-weighted sum of the N
workers' shares (eagerly, same weights) differs only by how the matrix products round in the low-precision dtype for
different batch shapes; a relative difference up to max(4 x that, 1e-5) passes. The next losses are printed beside
the reference's: they follow weights that the summed gradients moved, where Adam's first steps (about
lr * sign(gradient)) turn the rounding of a sum of bf16 gradients into differences of order 1e-5.

`--independent` adds a control: as many independent 1-GPU runs (batch B each, no communication) at the same time as
the largest `--gpus`; their summed tokens/s is what N GPUs give with nothing shared but the host.

Workers are started by this script (`--gpus N` spawns N processes): on the GPU with MLX_RANK, MLX_WORLD_SIZE,
NCCL_HOST_IP=127.0.0.1, NCCL_PORT, NCCL_NVLS_ENABLE=0 and CUDA_VISIBLE_DEVICES=rank, and
`mx.distributed.init(backend='nccl')`; on the CPU with the ring backend (MLX_HOSTFILE on 127.0.0.1).

`--peft` adds PyTorch DDP + PEFT runs with the same shape, rows, batches, LoRA and optimizer (processes started the
way torchrun starts them: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; NCCL on the GPU, gloo on the CPU);
peak memory is `torch.cuda.max_memory_allocated()`.

    python bench/data_parallel.py --model llama-3.2-1b --gpus 1 2                # GPU machine with 2 GPUs
    python bench/data_parallel.py --model llama-3.2-1b llama-3.1-8b --data fixed chat --gpus 1 2 4 --peft
    python bench/data_parallel.py --model tiny --device cpu --gpus 1 2 --steps 4 --warmup 2   # a check on the CPU

Models and data come from bench/tuner_vs_mlxlm.py: `tiny`, `50m`, `qwen2.5-0.5b`, `llama-3.2-1b`, `llama-3.1-8b`
(published shapes, random weights, written once to `--cache-dir`) or a model directory; `fixed`: rows of exactly
`--fixed-len` + 1 tokens, every token trained; `chat`: conversations of `--chat-len` tokens (uniform), truncated at
`--max-len`, every assistant turn trained. Named shapes get the tiny tokenizer's ids mapped into their vocabulary.
Results: a markdown table (printed and written to `--out`/data_parallel.md with the device, versions and command)
and every worker's numbers in `--out`/data_parallel.json.
"""
import argparse, datetime, json, os, pickle, platform, random, shlex, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import tuner_vs_mlxlm as tv   # noqa: E402  (shapes, random-weight models, data; imports nothing heavy)


# ------------------------------------------------------------------------------------------------------ workers
def _mlx(spec):
    import mlxtune   # noqa: F401  (first, as in every benchmark here: OpenBLAS under MLX's float32 matmuls on the CPU)
    import mlx.core as mx
    mx.set_default_device(mx.gpu if spec['device'] == 'gpu' else mx.cpu)
    if spec['world'] > 1:
        g = mx.distributed.init(strict=True, backend=spec['backend'])
        if g.size() != spec['world'] or mx.distributed.init().size() != spec['world']:
            raise SystemExit(f"distributed group of {g.size()} (default {mx.distributed.init().size()}), "
                             f"expected {spec['world']}")
    return mx

def _first_batch_losses(model, ds, args, world):
    "The first batch's loss evaluated whole and as the token-weighted sum of `world` workers' shares (eagerly)."
    import mlx.core as mx
    from mlxtune.data import batch_order
    from mlxtune.losses import cross_entropy_loss
    from mlxtune.trainer import Batches, worker_share
    batches = Batches(args, ds)
    idx = batch_order(ds.lengths, args.batch_size, args.seed, 0)[0]
    def loss_sum(ix):
        b = batches.make(ix)
        loss, n = cross_entropy_loss(model, b.inputs, b.targets, b.mask)
        mx.eval(loss, n)
        return loss.item() * n.item(), n.item()
    whole = loss_sum(idx)
    parts = [loss_sum(worker_share(idx, r, world)) for r in range(world)]
    split = sum(s for s, _ in parts) / sum(n for _, n in parts)
    return whole[0] / whole[1], split

def _time_all_sum(mx, n:int, reps:int)->list[float]:
    "Seconds of each of `reps` flat float32 all_sums of `n` numbers (after 3 untimed ones)."
    x = mx.ones((n,), dtype=mx.float32)
    mx.eval(x)
    out = []
    for i in range(reps + 3):
        t = time.perf_counter()
        mx.eval(mx.distributed.all_sum(x))
        if i >= 3: out.append(time.perf_counter() - t)
    return out

def _gpu_memory_used()->list[float]|None:
    "GB in use on every GPU of the machine, as nvidia-smi sees it (CUDA contexts and NCCL buffers included)."
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=memory.used', '--format=csv,noheader,nounits'],
                             capture_output=True, text=True, timeout=30).stdout
        return [float(x) * 2**20 / 1e9 for x in out.split()]
    except Exception: return None

def worker_mlxtune(spec)->dict:
    mx = _mlx(spec)
    from mlx.utils import tree_flatten
    from mlxtune.adapters import load
    from mlxtune.callbacks import Callback
    from mlxtune.lora import LoraArgs, apply_lora
    from mlxtune.trainer import TrainingArgs, train
    rank = mx.distributed.init().rank()
    model, _ = load(spec['model_dir'], dtype=spec['dtype'])
    mx.random.seed(spec['seed'])
    apply_lora(model, LoraArgs(r=spec['rank'], lora_alpha=spec['rank'], target_modules='all-linear', lora_dropout=0.0))
    n_lora = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    with open(spec['data'], 'rb') as f: ds = pickle.load(f)
    args = TrainingArgs(batch_size=spec['batch_size'], iters=spec['iters'], learning_rate=spec['lr'], optimizer='adam',
                        steps_per_report=10 ** 9, steps_per_eval=10 ** 9, save_every=10 ** 9, seed=spec['seed'],
                        worker_timeout=300.0)
    check = _first_batch_losses(model, ds, args, spec['split_check']) if spec['split_check'] else None
    steps, t = [], {}
    class Rec(Callback):
        def on_train_begin(self, st): t['t0'] = time.perf_counter()
        def on_step(self, st, loss, n_tokens):
            steps.append(dict(t=time.perf_counter(), loss=float(loss), tokens=int(n_tokens)))
    train(model, ds, None, args, adapter_config=None, callbacks=[Rec()], log=None)
    peak = mx.get_peak_memory() / 1e9
    res = dict(rank=rank, t0=t['t0'], steps=steps, peak_memory_gb=peak, n_lora=int(n_lora),
               active_memory_gb=mx.get_active_memory() / 1e9, cache_memory_gb=mx.get_cache_memory() / 1e9,
               split_check=check, versions={'mlx': mx.__version__})
    if spec['world'] > 1:   # as many numbers as the trainer sends: LoRA parameters plus loss, count, tokens
        res['all_sum_s'] = _time_all_sum(mx, n_lora + 3, spec['allsum_reps'])
        res['peak_memory_after_all_sum_gb'] = mx.get_peak_memory() / 1e9
    if rank == 0 and spec['device'] == 'gpu': res['nvidia_smi_used_gb'] = _gpu_memory_used()
    return res

def worker_peft(spec)->dict:
    import numpy as np, torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model
    from mlxtune.data import batch_order
    from mlxtune.trainer import worker_share
    world, rank = spec['world'], int(os.environ.get('RANK', 0))
    cuda = spec['device'] == 'gpu'
    dev = 'cuda:0' if cuda else 'cpu'   # CUDA_VISIBLE_DEVICES gives each process its own GPU
    if world > 1: dist.init_process_group('nccl' if cuda else 'gloo')
    torch.manual_seed(spec['seed'])
    model = AutoModelForCausalLM.from_pretrained(spec['model_dir'], dtype=getattr(torch, spec['dtype']),
                                                 attn_implementation='sdpa').to(dev)
    model = get_peft_model(model, LoraConfig(r=spec['rank'], lora_alpha=spec['rank'], lora_dropout=0.0, bias='none',
                                             target_modules='all-linear', task_type='CAUSAL_LM'))
    params = [p for p in model.parameters() if p.requires_grad]
    n_lora = sum(p.numel() for p in params)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.Adam(params, lr=spec['lr'])
    with open(spec['data'], 'rb') as f: ds = pickle.load(f)
    order = batch_order(ds.lengths, spec['batch_size'], spec['seed'], 0)
    model.train()
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    steps, t0 = [], time.perf_counter()
    for k in range(spec['iters']):
        idx = worker_share(order[k % len(order)], rank, world)
        rows = [list(ds.ids[i]) for i in idx]
        lens = [len(r) for r in rows]
        L = max(lens)
        x = np.zeros((len(rows), L), dtype=np.int64); m = np.zeros((len(rows), L), dtype=bool)
        for b, i in enumerate(idx):
            x[b, :lens[b]] = rows[b]; m[b, :lens[b]] = ds.trained[i]
        x, m = torch.from_numpy(x).to(dev), torch.from_numpy(m[:, 1:]).to(dev)
        logits = net(input_ids=x[:, :-1]).logits
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction='none')
        mask = m.reshape(-1).float()
        loss = (ce * mask).sum() / mask.sum().clamp(min=1)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        sums = torch.tensor([loss.item() * mask.sum().item(), mask.sum().item(), sum(l - 1 for l in lens)],
                            dtype=torch.float64, device=dev)
        if world > 1: dist.all_reduce(sums)
        steps.append(dict(t=time.perf_counter(), loss=float(sums[0] / sums[1]), tokens=int(sums[2])))
        del logits, ce, loss
    res = dict(rank=rank, t0=t0, steps=steps, n_lora=int(n_lora), versions={'torch': torch.__version__},
               peak_memory_gb=torch.cuda.max_memory_allocated() / 1e9 if cuda else None)
    if rank == 0 and cuda: res['nvidia_smi_used_gb'] = _gpu_memory_used()
    if world > 1: dist.destroy_process_group()
    return res

def worker_main(spec_path:str, out:str):
    spec = json.loads(Path(spec_path).read_text())
    res = (worker_peft if spec['tool'] == 'peft' else worker_mlxtune)(spec)
    Path(out).write_text(json.dumps(res))


# ------------------------------------------------------------------------------------------------------- parent
def launch(spec:dict, work:Path, tag:str, a)->list[dict]:
    "Start `spec['world']` workers (one per GPU), wait for all; each worker's result (or an `error`)."
    world = spec.get('independent') or spec['world']
    spec = {**spec, 'backend': 'nccl' if a.device == 'gpu' else 'ring'}
    sp = work/f'{tag}.spec.json'; sp.write_text(json.dumps(spec))
    port = random.Random().randint(20000, 40000)
    hosts = work/f'{tag}.hosts.json'
    hosts.write_text(json.dumps([[f'127.0.0.1:{port + r}'] for r in range(world)]))
    procs = []
    for r in range(world):
        env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
        if a.device == 'gpu': env['CUDA_VISIBLE_DEVICES'] = str(r)
        if spec['world'] > 1:
            env.update(MLX_RANK=str(r), MLX_WORLD_SIZE=str(world))
            if spec['tool'] == 'peft':
                env.update(RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(port))
            elif a.device == 'gpu':
                env.update(NCCL_HOST_IP='127.0.0.1', NCCL_PORT=str(port), NCCL_NVLS_ENABLE='0')
            else: env['MLX_HOSTFILE'] = str(hosts)
        logf = open(work/f'{tag}.rank{r}.log', 'w')
        procs.append((subprocess.Popen([sys.executable, str(Path(__file__).resolve()), '--worker', str(sp),
                                        str(work/f'{tag}.rank{r}.json')], env=env, stdout=logf,
                                       stderr=subprocess.STDOUT), logf))
    deadline, out = time.time() + a.timeout, []
    for p, _ in procs:
        try: p.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired: pass
    for r, (p, logf) in enumerate(procs):
        if p.poll() is None: p.kill(); p.wait()
        logf.close()
        f = work/f'{tag}.rank{r}.json'
        if p.returncode == 0 and f.exists(): out.append(json.loads(f.read_text()))
        else:
            tail = (work/f'{tag}.rank{r}.log').read_text()[-3000:]
            out.append({'rank': r, 'error': f'exit status {p.returncode}', 'log_tail': tail})
    return out

def summarise(ranks:list[dict], warmup:int)->dict:
    "Tokens/s over all workers, time per update, memory per worker, all_sum time, from the workers' records."
    if any('error' in r for r in ranks):
        return {'error': '; '.join(f"rank {r['rank']}: {r['error']}" for r in ranks if 'error' in r)}
    if len(ranks) > 1 and all(r['rank'] == 0 for r in ranks):   # independent 1-GPU runs at the same time
        each = [summarise([r], warmup) for r in ranks]
        return dict(each[0], tokens_per_s=sum(e['tokens_per_s'] for e in each), peak_gb=[e['peak_gb'][0] for e in each],
                    step_ms=statistics.median(e['step_ms'] for e in each),
                    each_tokens_per_s=[e['tokens_per_s'] for e in each])
    r0 = ranks[0]
    st = r0['steps']
    w = min(warmup, len(st) - 1)
    ends = [s['t'] for s in st]
    dts = [b - a for a, b in zip([r0['t0']] + ends[:-1], ends)][w:]
    timed = ends[-1] - (ends[w - 1] if w else r0['t0'])
    tokens = sum(s['tokens'] for s in st[w:])   # each update's tokens summed over the workers
    out = dict(tokens_per_s=tokens / timed, step_ms=1e3 * statistics.median(dts), step_ms_mean=1e3 * timed / len(dts),
               timed_steps=len(dts), tokens_per_step=tokens / len(dts), losses=[s['loss'] for s in st],
               peak_gb=[r['peak_memory_gb'] for r in ranks], n_lora=r0['n_lora'],
               nvidia_smi_used_gb=r0.get('nvidia_smi_used_gb'), versions=r0.get('versions'))
    if 'all_sum_s' in r0:
        a = [max(r['all_sum_s'][i] for r in ranks) for i in range(len(r0['all_sum_s']))]   # the slowest worker
        out.update(all_sum_ms=1e3 * statistics.median(a), all_sum_ms_max=1e3 * max(a))
    if r0.get('split_check'): out['split_check'] = r0['split_check']
    return out

def prepare(name:str, kind:str, a, n:int, work:Path)->tuple[Path, Path, dict]:
    "The model directory and a pickled dataset of `n` samples (fixed rows or chat) in the model's vocabulary."
    import numpy as np
    from mlxtune.data import DataArgs, TokenizedDataset, load_split
    ns = argparse.Namespace(cache_dir=a.cache_dir, seed=a.seed, dtype=a.dtype, tokens='auto')
    model_dir, randomise = tv.prepare_model(name, ns)
    tok = tv.data_tokenizer(model_dir, name)
    if kind == 'chat':
        ds = load_split(tv.chat_records(n, tok, *a.chat_len, seed=a.seed), tok, DataArgs(max_seq_length=a.max_len))
    else:
        rows = tv.fixed_rows(n, tok, a.fixed_len + 1, a.seed)
        ds = TokenizedDataset(rows, [[True] * len(r) for r in rows], [f'row {i}' for i in range(n)], 'text')
    if randomise:
        vocab = tv.model_dims(model_dir)['vocab']
        idmap = np.random.default_rng(a.seed).permutation(vocab)[:len(tok)]
        ds = TokenizedDataset([[int(idmap[t]) for t in x] for x in ds.ids], ds.trained, ds.where, ds.fmt,
                              ds.n_truncated, ds.untrained, ds.dropped, ds.name)
    path = work/f'{Path(name).name}-{kind}.pkl'
    with open(path, 'wb') as f: pickle.dump(ds, f)
    L = [len(x) - 1 for x in ds.ids]
    return model_dir, path, dict(samples=len(ds), mean_inputs=sum(L) / len(L), max_inputs=max(L))

def fmt_row(shape, data, tool, world, s, base):
    if 'error' in s: return f"| {shape} | {data} | {tool} | {world} | failed: {s['error'][:80]} | | | | |"
    eff = s['tokens_per_s'] / (world * base['tokens_per_s']) if base and 'error' not in base else None
    b1 = base['peak_gb'][0] if base and 'error' not in base and base['peak_gb'][0] else None
    peaks = '/'.join(f'{p:.2f}' for p in s['peak_gb']) if s['peak_gb'][0] is not None else 'n/a'
    vs = f' ({max(s["peak_gb"]) - b1:+.2f})' if b1 and world > 1 else ''
    sm = f"{s['all_sum_ms']:.2f} ({s['all_sum_ms_max']:.2f})" if 'all_sum_ms' in s else '-'
    return (f"| {shape} | {data} | {tool} | {world} | {s['tokens_per_s']:,.0f} | "
            f"{'-' if eff is None else f'{eff:.1%}'} | {peaks}{vs} | {s['step_ms']:.1f} | {sm} |")

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', nargs='+', default=['llama-3.2-1b'])
    ap.add_argument('--data', nargs='+', default=['fixed'], choices=['fixed', 'chat'])
    ap.add_argument('--gpus', nargs='+', type=int, default=[1, 2], help='worker counts to run (1 is the baseline)')
    ap.add_argument('--batch-size', type=int, default=4, help='rows per GPU per update')
    ap.add_argument('--fixed-len', type=int, default=512)
    ap.add_argument('--chat-len', type=int, nargs=2, default=[50, 1000])
    ap.add_argument('--max-len', type=int, default=1024)
    ap.add_argument('--steps', type=int, default=20, help='timed updates')
    ap.add_argument('--warmup', type=int, default=5, help='untimed updates first (compilation, allocator growth)')
    ap.add_argument('--check-steps', type=int, default=3, help='updates of the 1-GPU reference with the global batch')
    ap.add_argument('--allsum-reps', type=int, default=20)
    ap.add_argument('--rank', type=int, default=16)
    ap.add_argument('--lr', type=float, default=1e-5)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--device', choices=['gpu', 'cpu'], default=None, help='default: gpu where nvidia-smi finds one')
    ap.add_argument('--dtype', default=None, help='of the frozen base; default bfloat16 on the GPU, float32 on the CPU')
    ap.add_argument('--peft', action='store_true', help='also PyTorch DDP + PEFT runs')
    ap.add_argument('--independent', action='store_true',
                    help='also the control: as many independent 1-GPU runs at the same time as the most GPUs')
    ap.add_argument('--timeout', type=float, default=900, help='seconds per run')
    ap.add_argument('--cache-dir', default=str(Path(tempfile.gettempdir())/'mlxtune-bench-models'))
    ap.add_argument('--out', default=str(Path(tempfile.gettempdir())/'data_parallel'))
    a = ap.parse_args()
    gpu = tv.gpu_name()
    a.device = a.device or ('gpu' if gpu else 'cpu')
    a.dtype = a.dtype or ('bfloat16' if a.device == 'gpu' else 'float32')
    if 1 not in a.gpus: a.gpus = [1] + a.gpus
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix='dp-', dir=out))
    cmd = 'python ' + ' '.join(shlex.quote(x) for x in [os.path.relpath(__file__, REPO)] + sys.argv[1:])
    import mlx.core as mx
    head = (f"{datetime.datetime.now():%Y-%m-%d %H:%M} | {gpu if a.device == 'gpu' else tv.cpu_name()} x "
            f"{max(a.gpus)} | mlx {mx.__version__} | mlxtune {tv.git_commit()} | python {platform.python_version()}"
            f" | {a.dtype} base, LoRA r={a.rank} all-linear, Adam, {a.batch_size} rows per GPU, {a.warmup} + "
            f"{a.steps} updates\n`{cmd}`")
    print(head, flush=True)
    lines = ['| shape | data | tool | GPUs | tokens/s (all GPUs) | efficiency | peak GB per GPU (vs 1 GPU) | '
             'step ms | all_sum ms (max) |', '|---|---|---|---|---|---|---|---|---|']
    results, checks = [], []
    iters = a.warmup + a.steps
    for name in a.model:
        for kind in a.data:
            model_dir, data, info = prepare(name, kind, a, iters * max(a.gpus) * a.batch_size, work)
            print(f'{name} / {kind}: {info}', flush=True)
            base = {}
            for tool in ['mlxtune'] + (['peft'] if a.peft else []):
                for world in a.gpus:
                    spec = dict(tool=tool, model_dir=str(model_dir), data=str(data), world=world, device=a.device,
                                dtype=a.dtype, batch_size=world * a.batch_size, iters=iters, lr=a.lr, seed=a.seed,
                                rank=a.rank, split_check=0, allsum_reps=a.allsum_reps)
                    tag = f'{Path(name).name}-{kind}-{tool}-n{world}'
                    t = time.time()
                    s = summarise(launch(spec, work, tag, a), a.warmup)
                    s.update(shape=name, data=kind, tool=tool, gpus=world, wall_s=time.time() - t, data_info=info)
                    if world == 1: base[tool] = s
                    results.append(s)
                    line = fmt_row(name, kind, tool, world, s, base.get(tool))
                    lines.append(line)
                    print(line, f'[{s["wall_s"]:.0f} s]', flush=True)
                    (out/'data_parallel.json').write_text(json.dumps(dict(head=head, results=results), indent=1))
                    if tool == 'mlxtune' and a.independent and world == max(a.gpus) and world > 1:
                        ind = summarise(launch(dict(spec, world=1, batch_size=a.batch_size, independent=world), work,
                                               tag + '-independent', a), a.warmup)
                        ind.update(shape=name, data=kind, tool=tool + ' independent', gpus=world, data_info=info)
                        results.append(ind)
                        lines.append(fmt_row(name, kind, f'{world} independent 1-GPU runs at once', world, ind,
                                             base.get(tool)))
                        print(lines[-1], flush=True)
                    if tool != 'mlxtune' or world == 1 or 'error' in s: continue
                    ref = dict(spec, world=1, iters=a.check_steps, split_check=world)
                    r = summarise(launch(ref, work, tag + '-check', a), 0)
                    if 'error' in r:
                        checks.append(f'{name} / {kind}, {world} GPUs: reference failed: {r["error"]}'); continue
                    whole, split = r['split_check']
                    noise = abs(split - whole) / abs(whole)
                    tol = max(4 * noise, 1e-5)
                    k = min(a.check_steps, len(s['losses']))
                    rel = [abs(x - y) / abs(y) for x, y in zip(s['losses'][:k], r['losses'][:k])]
                    ok = rel[0] <= tol   # the first update's loss; later ones follow weights moved by Adam
                    s['check'] = dict(reference_losses=r['losses'][:k], losses=s['losses'][:k], rel_diff=rel,
                                      eager_whole=whole, eager_split=split, split_noise=noise, tolerance=tol, ok=ok)
                    checks.append(f"{name} / {kind}, {world} GPUs vs 1 GPU with the same global batch of "
                                  f"{world * a.batch_size} rows, first {k} losses: "
                                  f"{', '.join(f'{x:.6f}' for x in s['losses'][:k])} vs "
                                  f"{', '.join(f'{y:.6f}' for y in r['losses'][:k])}; relative differences "
                                  f"{', '.join(f'{d:.1e}' for d in rel)}; first loss within the measured tolerance "
                                  f"{tol:.1e} (whole vs split first batch in one process: {noise:.1e}): "
                                  f"{'ok' if ok else 'MISMATCH'}")
                    print(checks[-1], flush=True)
    extra = []
    for s in results:
        if 'error' in s or s['gpus'] == 1: continue
        b = next((x for x in results if x['gpus'] == 1 and x['shape'] == s['shape'] and x['data'] == s['data']
                  and x['tool'] == s['tool'] and 'error' not in x), None)
        if 'all_sum_ms' in s:
            extra.append(f"{s['shape']} / {s['data']} / {s['gpus']} GPUs: all_sum of {s['n_lora'] + 3:,} float32 "
                         f"({(s['n_lora'] + 3) * 4 / 1e6:.1f} MB) {s['all_sum_ms']:.2f} ms = "
                         f"{s['all_sum_ms'] / s['step_ms']:.1%} of the {s['step_ms']:.1f} ms update"
                         + (f" (1 GPU: {b['step_ms']:.1f} ms)" if b else ''))
        if s.get('nvidia_smi_used_gb') and b and b.get('nvidia_smi_used_gb'):
            extra.append(f"{s['shape']} / {s['data']} / {s['tool']} / {s['gpus']} GPUs: nvidia-smi GB in use per GPU "
                         f"at the end {', '.join(f'{x:.2f}' for x in s['nvidia_smi_used_gb'])} (1 GPU run: "
                         f"{b['nvidia_smi_used_gb'][0]:.2f})")
    text = '\n'.join([head, '', *lines, '', *checks, *extra])
    print('\n' + text)
    with open(out/'data_parallel.md', 'a') as f: f.write(text + '\n\n')
    (out/'data_parallel.json').write_text(json.dumps(dict(head=head, results=results, checks=checks), indent=1))

if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == '--worker': worker_main(sys.argv[2], sys.argv[3])
    else: main()
