"""Padding waste of batching strategies on variable-length chat data (lengths ~50-1000 tokens).

Compares, on the same tokenised samples and batch size: random batches, mlxtune's length-bucketed
`batch_order`, and mlx-lm's tuner `iterate_batches` (mlx-lm 0.32, called through its API). Reports the share of
input positions that are padding, and how many samples one epoch sees.

    python bench/padding.py [--samples 512] [--batch-size 8]
"""
import argparse, random, sys
import numpy as np
from mlxtune.data import DataArgs, load_split, batch_order, padding_fraction
from mlxtune.tiny import build_tiny_tokenizer

def chat_data(n, seed=0):
    "Conversations whose token lengths spread over ~50-1000: 1-3 turns of random length."
    rng = random.Random(seed)
    words = 'the model learns a task from data with small adapters and a frozen base while loss goes down'.split()
    say = lambda k: ' '.join(rng.choice(words) for _ in range(k))
    out = []
    for _ in range(n):
        target = rng.randint(20, 450)   # words; the tiny tokenizer makes ~2 tokens of a word
        turns = rng.randint(1, 3)
        msgs = []
        for _ in range(turns):
            msgs += [{'role': 'user', 'content': say(max(3, target // (3 * turns)))},
                     {'role': 'assistant', 'content': say(max(3, 2 * target // (3 * turns)))}]
        out.append({'messages': msgs})
    return out

def mlx_lm_padding(ds, batch_size):
    "Padding share and samples seen in one epoch of mlx-lm's tuner batching, from the batches it yields."
    from mlx_lm.tuner.trainer import iterate_batches
    data = [(ds.ids[i], 0) for i in range(len(ds))]
    real = total = seen = 0
    for batch, lens in iterate_batches(data, batch_size, max_seq_length=100_000, seed=0):
        L = batch.shape[1] - 1          # model inputs are batch[:, :-1]
        r = int(np.array(lens)[:, 1].sum()) - batch.shape[0]
        real += r; total += L * batch.shape[0]; seen += batch.shape[0]
    return (total - real) / total, seen

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--samples', type=int, default=512)
    ap.add_argument('--batch-size', type=int, default=8)
    a = ap.parse_args()
    tok = build_tiny_tokenizer()
    ds = load_split(chat_data(a.samples), tok, DataArgs(max_seq_length=4096))
    print(ds.describe())
    bs = a.batch_size
    rand = [np.random.default_rng(0).permutation(len(ds))[i:i + bs] for i in range(0, len(ds), bs)]
    ours = batch_order(ds.lengths, bs, seed=0)
    peer, peer_seen = mlx_lm_padding(ds, bs)
    rows = [('random batches', padding_fraction(ds, rand), len(ds)),
            ('mlxtune batch_order (bucketed)', padding_fraction(ds, ours), sum(len(b) for b in ours)),
            ("mlx-lm tuner iterate_batches", peer, peer_seen)]
    print(f'\nbatch size {bs}, {len(ds)} samples, lengths {ds.lengths.min()}-{ds.lengths.max()} tokens\n')
    print('| batching | padding share of inputs | samples seen per epoch |\n|---|---|---|')
    for name, frac, seen in rows: print(f'| {name} | {frac:.1%} | {seen} of {len(ds)} |')

if __name__ == '__main__': main()
