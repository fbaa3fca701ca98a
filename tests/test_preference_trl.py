"""mlxtune's preference losses (DPO, IPO, ORPO, SimPO) against TRL's own implementation on the same log-probabilities.

TRL's losses are methods of its trainers; they are called here on a small stand-in for the trainer that carries only
the attributes each method reads (and, for DPO, a stand-in model that returns given per-token log-probabilities), so
no TRL model or trainer is built. TRL 1.16 keeps DPO's loss inside `DPOTrainer._compute_loss`, ORPO's in
`trl.experimental.orpo` and SimPO's in `trl.experimental.cpo` (`CPOTrainer.cpo_loss`, loss_type='simpo').

Tolerance: everything is float32 (about 7 significant digits). Both sides take the same few float32 operations, in
orders that differ slightly (MLX and torch each have their own log-sigmoid, and IPO's division by the answer length
comes at a different point), so results agree to a few units in the last place: rtol=1e-5 (about 80 float32 ulps)
with a small atol for values near zero (an IPO loss at its minimum, a reward margin of a few units), where relative
error means nothing. A missing beta, a wrong sign or a missing length normalisation is off by far more than that.
"""
import mlxtune  # first, before anything imports mlx.core (mlxtune puts an optimised BLAS under MLX on Linux)
import tempfile
from collections import defaultdict
from types import SimpleNamespace
import numpy as np
import pytest
import mlx.core as mx
import mlx_lm
from mlx.utils import tree_flatten, tree_unflatten
from mlxtune.data import DataArgs
from mlxtune.lora import LoraArgs, apply_lora
from mlxtune.preference import (PreferenceLoss, adapters_off, dpo_losses, load_preference_split, orpo_losses,
                                sequence_logps, simpo_losses)
from mlxtune.tiny import build_tiny_model

torch = pytest.importorskip('torch')
DPOTrainer = pytest.importorskip('trl.trainer.dpo_trainer').DPOTrainer
ORPOTrainer = pytest.importorskip('trl.experimental.orpo.orpo_trainer').ORPOTrainer
CPOTrainer = pytest.importorskip('trl.experimental.cpo.cpo_trainer').CPOTrainer

RTOL, ATOL = 1e-5, 1e-5
N = 32

def close(ours, theirs, rtol=RTOL, atol=ATOL):
    "Assert `ours` (MLX or numpy) equals `theirs` (torch or numpy) elementwise, both float32."
    a, b = np.asarray(ours, dtype=np.float32), np.asarray(theirs, dtype=np.float32)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)

@pytest.fixture(scope='module')
def pairs():
    "32 pairs: summed answer log-probs of the policy and the reference (c, r, ref_c, ref_r) and the answer lengths."
    rng = np.random.default_rng(0)
    logps = rng.uniform(-60, -5, (4, N)).astype(np.float32)
    lengths = rng.integers(3, 40, (2, N))   # some per-token means above -ln 2: both branches of log(1 - p)
    return logps, lengths

def t(x): return torch.tensor(np.asarray(x, dtype=np.float32))

# --- DPO and IPO: TRL's DPOTrainer._compute_loss on a stand-in trainer and model ---

def dpo_trainer(beta, loss_type, label_smoothing=0.0):
    "The attributes `DPOTrainer._compute_loss` reads, with reference log-probs precomputed (no reference model)."
    acc = SimpleNamespace(device=torch.device('cpu'), gather=lambda x: x, gather_for_metrics=lambda x: x,
                          unwrap_model=lambda m: m)
    return SimpleNamespace(model=SimpleNamespace(training=True), accelerator=acc, aux_loss_enabled=False,
                           precompute_ref_logps=True, ld_alpha=None, f_divergence_type='reverse_kl',
                           loss_types=[loss_type], loss_weights=[1.0], beta=beta, label_smoothing=label_smoothing,
                           use_weighting=False, _metrics=defaultdict(lambda: defaultdict(list)),
                           _total_train_tokens=0, _tp_size=1)

def trl_dpo_batch(trainer, token_logps, completion_mask, ref_chosen, ref_rejected):
    """TRL's mean loss and its per-pair rewards for one batch: chosen rows then rejected rows.
    `token_logps` (rows, T-1): the policy's log-prob of each next token (0 off the answers, as TRL's model returns);
    `completion_mask` (rows, T): 1 on answer tokens."""
    n = completion_mask.shape[0]
    out = SimpleNamespace(log_probs=token_logps, entropy=torch.zeros_like(token_logps),
                          mean_logits=torch.zeros_like(token_logps), is_top1=torch.zeros_like(token_logps, dtype=bool))
    inputs = {'input_ids': torch.zeros_like(completion_mask, dtype=torch.long),
              'attention_mask': torch.ones_like(completion_mask, dtype=torch.long),
              'completion_mask': completion_mask, 'ref_chosen_logps': ref_chosen, 'ref_rejected_logps': ref_rejected}
    rewards = []
    trainer.accelerator.gather = lambda x: rewards.append(x) or x   # its first two gathers: chosen, rejected rewards
    loss = DPOTrainer._compute_loss(trainer, lambda **kw: out, inputs, return_outputs=False)
    assert rewards[0].shape == rewards[1].shape == (n // 2,)
    return loss, rewards[0], rewards[1]

def summed_rows(logps, lengths):
    "TRL's per-token inputs holding given summed answer log-probs: each whole sum on the answer's first token."
    n, T = len(logps), int(lengths.max()) + 1
    mask = (np.arange(T)[None] >= 1) & (np.arange(T)[None] <= lengths[:, None])   # token 0 is the prompt
    tok = np.zeros((n, T - 1), dtype=np.float32); tok[:, 0] = logps
    return t(tok), t(mask)

def trl_dpo(pc, pr, rc, rr, beta, loss_type, label_smoothing=0.0, lengths=None):
    "TRL's per-pair DPO losses (one pair per call: TRL returns the batch mean) and rewards, on summed log-probs."
    lengths = np.ones((2, len(pc)), int) if lengths is None else lengths
    losses = []
    for i in range(len(pc)):
        tok, mask = summed_rows(np.array([pc[i], pr[i]]), np.array([lengths[0, i], lengths[1, i]]))
        losses.append(trl_dpo_batch(dpo_trainer(beta, loss_type, label_smoothing), tok, mask, t([rc[i]]),
                                    t([rr[i]]))[0].item())
    tok, mask = summed_rows(np.concatenate([pc, pr]), np.concatenate([lengths[0], lengths[1]]))
    mean, cr, rr_ = trl_dpo_batch(dpo_trainer(beta, loss_type, label_smoothing), tok, mask, t(rc), t(rr))
    return np.array(losses, dtype=np.float32), cr, rr_, mean

# TRL 1.16's 'sigmoid' loss ignores label_smoothing (its DPOConfig keeps label_smoothing for the 'robust' and 'exo_pair'
# losses); the conservative-DPO smoothing (-(1-e) log s(b h) - e log s(-b h)) that `dpo_losses` implements is TRL's
# 'aot' loss on a single pair (its sort over the batch is then the identity). So label_smoothing=0 is checked against
# 'sigmoid', and against 'aot' as well; label_smoothing > 0 against 'aot', pair by pair.
@pytest.mark.parametrize('beta,label_smoothing', [(0.1, 0.0), (0.5, 0.0), (0.1, 0.1), (0.03, 0.3)])
def test_dpo_matches_trl(pairs, beta, label_smoothing):
    (pc, pr, rc, rr), _ = pairs
    losses, cr, rr_ = dpo_losses(*map(mx.array, (pc, pr, rc, rr)), beta, label_smoothing)
    for loss_type in (['sigmoid', 'aot'] if label_smoothing == 0 else ['aot']):
        tl, tcr, trr, tmean = trl_dpo(pc, pr, rc, rr, beta, loss_type, label_smoothing)
        close(losses, tl); close(cr, tcr); close(rr_, trr)
        if loss_type == 'sigmoid': close(losses.mean(), tmean)
    assert np.ptp(np.array(losses)) > 0.1   # the pairs are not all at a flat end of the log-sigmoid

@pytest.mark.parametrize('beta', [0.1, 0.5, 1.0])
def test_ipo_matches_trl(pairs, beta):
    "TRL divides IPO's summed log-ratios by the answer lengths; mlxtune's caller passes per-token means."
    (pc, pr, rc, rr), (lc, lr) = pairs
    means = [pc / lc, pr / lr, rc / lc, rr / lr]
    losses, cr, rr_ = dpo_losses(*(mx.array(m.astype(np.float32)) for m in means), beta, ipo=True)
    tl, tcr, trr, tmean = trl_dpo(pc, pr, rc, rr, beta, 'ipo', lengths=np.stack([lc, lr]))
    close(losses, tl); close(losses.mean(), tmean)
    # TRL's rewards are beta times the summed log-ratios (it normalises only inside the IPO loss); ours, beta times
    # the per-token means we were given: the same up to the lengths.
    close(np.array(cr) * lc, tcr, rtol=1e-5, atol=1e-4); close(np.array(rr_) * lr, trr, rtol=1e-5, atol=1e-4)

# --- ORPO: ORPOTrainer.odds_ratio_loss and get_batch_loss_metrics ---

def orpo_trainer(beta):
    "The attributes ORPOTrainer's loss methods read."
    acc = SimpleNamespace(device=torch.device('cpu'), gather_for_metrics=lambda x: x)
    tr = SimpleNamespace(beta=beta, accelerator=acc, is_encoder_decoder=False, padding_value=0,
                         aux_loss_enabled=False, concatenated_inputs=ORPOTrainer.concatenated_inputs,
                         get_batch_logps=ORPOTrainer.get_batch_logps)
    tr.odds_ratio_loss = lambda c, r: ORPOTrainer.odds_ratio_loss(tr, c, r)
    tr.concatenated_forward = lambda m, b: ORPOTrainer.concatenated_forward(tr, m, b)
    return tr

@pytest.mark.parametrize('beta', [0.1, 0.25, 1.0])
def test_orpo_matches_trl(pairs, beta):
    "`orpo_losses` is the chosen answer's NLL minus TRL's odds-ratio term, pair by pair; the same rewards."
    (pc, pr, _, _), (lc, lr) = pairs
    c, r = (pc / lc).astype(np.float32), (pr / lr).astype(np.float32)
    losses, cr, rr_ = orpo_losses(mx.array(c), mx.array(r), beta)
    term, tcr, trr, _, _ = ORPOTrainer.odds_ratio_loss(orpo_trainer(beta), t(c), t(r))
    # -(loss + c) cancels the NLL (up to 12 here), leaving a term that can be far smaller: its error is the NLL's
    # float32 rounding (below 1e-6), so atol, not rtol, bounds it
    close(-(np.array(losses) + c), term); close(cr, tcr); close(rr_, trr)
    assert np.ptp(term.numpy()) > 1e-3 * beta

@pytest.mark.parametrize('beta', [0.1, 1.0])
def test_orpo_whole_loss_matches_trl(beta):
    """The whole ORPO loss against TRL's `get_batch_loss_metrics`, from the same logits. TRL's NLL is a token mean
    over the batch's chosen answers and mlxtune's a mean over pairs of each answer's per-token mean: they agree when
    all chosen answers have the same length, as here (and the prompt is one token, which TRL's NLL would count too
    if it were longer: TRL scores the prompt's tokens as well)."""
    rng = np.random.default_rng(1)
    B, Lc, Lr, V = 8, 12, 7, 16
    logits = t(rng.normal(0, 3, (2 * B, 1 + Lc, V)))   # prompt of one token, then the answers (rejected padded)
    ids = torch.tensor(rng.integers(0, V, (2 * B, 1 + Lc)))
    am = torch.ones_like(ids); am[B:, 1 + Lr:] = 0
    labels = ids.masked_fill(am == 0, -100); labels[:, 0] = -100
    batch = {'chosen_input_ids': ids[:B], 'chosen_attention_mask': am[:B], 'chosen_labels': labels[:B],
             'rejected_input_ids': ids[B:, :1 + Lr], 'rejected_attention_mask': am[B:, :1 + Lr],
             'rejected_labels': labels[B:, :1 + Lr]}
    loss, metrics = ORPOTrainer.get_batch_loss_metrics(orpo_trainer(beta), lambda *a, **k: SimpleNamespace(
        logits=logits), batch)
    # per-token log-probs of the answers, from the same logits, with MLX
    x = mx.array(logits.numpy()[:, :-1])
    lp = mx.take_along_axis(x - mx.logsumexp(x, -1, keepdims=True), mx.array(ids.numpy()[:, 1:])[..., None], -1)[..., 0]
    m = mx.array((labels.numpy()[:, 1:] != -100).astype(np.float32))
    means = (lp * m).sum(1) / m.sum(1)
    ours = orpo_losses(means[:B], means[B:], beta)[0].mean()
    close(ours, loss.detach())
    close(-means[:B].mean(), metrics['nll_loss'])   # and the NLL part alone

# --- SimPO: CPOTrainer.cpo_loss with loss_type='simpo' ---

# TRL subtracts simpo_gamma / beta from the log-prob margin and then multiplies by beta: its simpo_gamma is the
# paper's gamma (the margin on beta-scaled rewards), as mlxtune's `gamma`, so both get the same number.
@pytest.mark.parametrize('beta,gamma,label_smoothing', [(2.0, 1.0, 0.0), (2.5, 0.5, 0.0), (10.0, 3.0, 0.1),
                                                        (1.0, 0.0, 0.2)])
def test_simpo_matches_trl(pairs, beta, gamma, label_smoothing):
    (pc, pr, _, _), (lc, lr) = pairs
    c, r = (pc / lc).astype(np.float32), (pr / lr).astype(np.float32)
    losses, cr, rr_ = simpo_losses(mx.array(c), mx.array(r), beta, gamma, label_smoothing)
    tr = SimpleNamespace(beta=beta, simpo_gamma=gamma, label_smoothing=label_smoothing, loss_type='simpo', alpha=0.0,
                         accelerator=SimpleNamespace(device=torch.device('cpu')))
    tl, tcr, trr = CPOTrainer.cpo_loss(tr, t(c), t(r))
    close(losses, tl); close(cr, tcr); close(rr_, trr)
    assert np.ptp(np.array(losses)) > 0.1

# --- End to end: PreferenceLoss on the tiny model, against TRL on the same per-token log-probs ---

@pytest.fixture(scope='module')
def tiny():
    "The tiny model with perturbed LoRA adapters (so the policy is not the reference) and a batch of 4 pairs."
    d = build_tiny_model(tempfile.mkdtemp())
    model, tok = mlx_lm.load(str(d))
    mx.random.seed(0)
    apply_lora(model, LoraArgs(r=4))
    model.update(tree_unflatten([(k, v + 0.05) for k, v in tree_flatten(model.trainable_parameters())]))
    model.eval()
    recs = [{'prompt': f'What colour is the {s}?', 'chosen': f'The {s} is {c}.', 'rejected': 'I cannot say.'}
            for s, c in [('sky', 'blue'), ('grass', 'green'), ('coal', 'black'), ('snow', 'white and cold')]]
    ds = load_preference_split(recs, tok, DataArgs())
    return model, ds.batch([0, 1, 2, 3])

def token_logps(model, b):
    "TRL's per-token inputs from the model's logits, with torch: next-token log-probs (0 off the answers), mask."
    logits = torch.from_numpy(np.array(model(b.inputs).astype(mx.float32)))
    lp = torch.log_softmax(logits, -1).gather(-1, torch.from_numpy(np.array(b.targets)).long()[..., None])[..., 0]
    mask = torch.from_numpy(np.array(b.mask)).float()
    return lp * mask, torch.cat([torch.zeros_like(mask[:, :1]), mask], 1)

@pytest.mark.parametrize('kind,beta', [('dpo', 0.1), ('dpo', 1.0), ('ipo', 0.5)])
def test_preference_loss_dpo_ipo_matches_trl(tiny, kind, beta):
    model, b = tiny
    B = b.inputs.shape[0] // 2
    lp, cm = token_logps(model, b)
    with adapters_off(model): ref, _ = token_logps(model, b)
    ref = ref.sum(1)
    assert (lp.sum(1) - ref).abs().min() > 1e-3   # the adapters change every answer's log-prob
    theirs = trl_dpo_batch(dpo_trainer(beta, 'sigmoid' if kind == 'dpo' else 'ipo'), lp, cm, ref[:B], ref[B:])[0]
    ours, n, _ = PreferenceLoss(kind, beta)(model, b.inputs, b.targets, b.mask)
    assert n.item() == B
    close(ours, theirs.detach(), atol=1e-6)
    close(sequence_logps(model, b.inputs, b.targets, b.mask)[0], lp.sum(1), rtol=1e-5, atol=1e-4)

@pytest.mark.parametrize('kind,beta', [('simpo', 2.0), ('orpo', 0.5)])
def test_preference_loss_simpo_orpo_matches_trl(tiny, kind, beta):
    "SimPO and ORPO on per-token means; ORPO's NLL in mlxtune's convention (a mean over pairs of per-token means)."
    model, b = tiny
    B = b.inputs.shape[0] // 2
    lp, cm = token_logps(model, b)
    means = lp.sum(1) / cm.sum(1)
    if kind == 'simpo':
        tr = SimpleNamespace(beta=beta, simpo_gamma=1.0, label_smoothing=0.0, loss_type='simpo', alpha=0.0,
                             accelerator=SimpleNamespace(device=torch.device('cpu')))
        theirs = CPOTrainer.cpo_loss(tr, means[:B], means[B:])[0].mean()
    else: theirs = -means[:B].mean() - ORPOTrainer.odds_ratio_loss(orpo_trainer(beta), means[:B], means[B:])[0].mean()
    ours = PreferenceLoss(kind, beta)(model, b.inputs, b.targets, b.mask)[0]
    close(ours, theirs.detach(), atol=1e-6)
