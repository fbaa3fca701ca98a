"""mlx-lm's commands and configs, run unchanged with `mlxtune` in place of `mlx_lm.lora` / `mlx_lm.generate` / `mlx_lm.fuse`.

The commands are those of mlx-lm's LORA.md (mlx-lm 0.32); the config has the keys and values of its example
`lora_config.yaml`, with a local model and data directory. Adapters go both ways: mlx-lm's load in mlxtune.
"""
import hashlib, json, re, sys
from pathlib import Path
import pytest
from mlxtune.tiny import build_tiny_model, tiny_chat_data

from cli_run import run

# the keys and values of mlx-lm's example config (mlx_lm/examples/lora_config.yaml), model and data made local
MLX_LM_EXAMPLE = '''model: "model"
train: true
fine_tune_type: lora
optimizer: adamw
data: "data"
seed: 0
num_layers: 16
batch_size: 4
iters: 1000
val_batches: 25
learning_rate: 1e-5
steps_per_report: 10
steps_per_eval: 200
grad_accumulation_steps: 1
resume_adapter_file: null
adapter_path: "adapters"
save_every: 100
test: false
test_batches: 100
max_seq_length: 2048
grad_checkpoint: false
lora_parameters:
  keys: ["self_attn.q_proj", "self_attn.v_proj"]
  rank: 8
  scale: 20.0
  dropout: 0.0
'''
# the parts of the example that it shows commented out
MLX_LM_EXAMPLE_EXTRAS = '''optimizer_config:
  adamw:
    betas: [0.9, 0.98]
    eps: 1e-6
    weight_decay: 0.05
    bias_correction: true
lr_schedule:
  name: cosine_decay
  warmup: 100
  warmup_init: 1e-7
  arguments: [1e-5, 1000, 1e-7]
'''

def one_line_error(p, cmd):
    "The command failed with exit status 2 and one line `mlxtune CMD: error: ...`, no traceback."
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'mlxtune {cmd}: error: ') and 'Traceback' not in p.stderr, p.stderr
    return lines[0]

def digest(d:Path)->dict:
    return {str(f.relative_to(d)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.rglob('*')) if f.is_file()}

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "A tiny model with 16 blocks (the example adapts 16) and a data directory with train/valid/test.jsonl."
    d = tmp_path_factory.mktemp('dropin')
    build_tiny_model(d/'model', num_hidden_layers=16)
    (d/'data').mkdir()
    recs = tiny_chat_data()
    for name, part in [('train', recs[:40]), ('valid', recs[40:44]), ('test', recs[44:])]:
        (d/'data'/f'{name}.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in part))
    return d

def test_example_config_runs_as_it_is(work):
    "mlx-lm's example config trains (the run shortened by a flag, which overrides the file as in mlx-lm); every translated key is said."
    (work/'lora_config.yaml').write_text(MLX_LM_EXAMPLE)
    p = run(['mlxtune', 'lora', '--config', 'lora_config.yaml', '--iters', '20'], work)
    assert "lora_config.yaml: mlx-lm's lora_parameters -> r=8, lora_alpha=160, lora_dropout=0, target_modules=['self_attn.q_proj', 'self_attn.v_proj']" in p.stdout, p.stdout
    assert 'step 20/20' in p.stdout and 'adapters saved to adapters' in p.stdout, p.stdout
    cfg = json.loads((work/'adapters'/'adapter_config.json').read_text())
    assert cfg['num_layers'] == 16 and cfg['lora_parameters']['rank'] == 8 and cfg['lora_parameters']['scale'] == 20.0, cfg
    assert cfg['lora_parameters']['keys'] == ['self_attn.q_proj', 'self_attn.v_proj'], cfg

def test_example_config_with_its_commented_parts(work):
    "The optimizer_config and lr_schedule the example shows in comments: translated, said, and honoured (the logged rates)."
    (work/'full_config.yaml').write_text(MLX_LM_EXAMPLE.replace('adapter_path: "adapters"', 'adapter_path: "full"') + MLX_LM_EXAMPLE_EXTRAS)
    p = run(['mlxtune', 'lora', '-c', 'full_config.yaml', '--iters', '20', '--steps-per-report', '5'], work)
    assert "mlx-lm's optimizer_config -> betas=[0.9, 0.98], eps=1e-06, weight_decay=0.05, bias_correction=True" in p.stdout, p.stdout
    assert "mlx-lm's lr_schedule -> learning_rate=1e-05, decay_steps=1000, min_learning_rate=1e-07, lr_schedule='cosine', warmup_steps=100, warmup_init=1e-07" in p.stdout, p.stdout
    # warm-up from 1e-7 to 1e-5 over 100 steps, as MLX's linear_schedule: at step 5 (the rate of the 5th update)
    lrs = [float(x) for x in re.findall(r'^step \d+/20: .*\| lr ([\d.e+-]+)', p.stdout, re.M)]
    assert len(lrs) == 4 and all(a < b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 1e-5 / 4, lrs

def test_lora_md_commands(work):
    "Every command of mlx-lm's LORA.md, with mlxtune in place of mlx_lm: fine-tune, evaluate, generate, fuse, upload, GGUF, low memory."
    m, d = str(work/'model'), str(work/'data')
    p = run(['mlxtune', 'lora', '--model', m, '--train', '--data', d, '--iters', '30', '--adapter-path', 'md'], work)
    assert 'step 30/30' in p.stdout, p.stdout
    before = digest(work/'md')
    p = run(['mlxtune', 'lora', '--model', m, '--adapter-path', 'md', '--data', d, '--test'], work)   # evaluate: no training
    assert re.search(r'^test loss [\d.]+, test perplexity [\d.]+$', p.stdout, re.M) and 'step ' not in p.stdout, p.stdout
    assert digest(work/'md') == before, 'testing changed the adapters'
    base = run(['mlxtune', 'lora', '--model', m, '--adapter-path', '', '--data', d, '--test'], work)   # the model without adapters
    assert float(re.search(r'test loss ([\d.]+)', base.stdout)[1]) > float(re.search(r'test loss ([\d.]+)', p.stdout)[1]), (base.stdout, p.stdout)
    g = run(['mlxtune', 'generate', '--model', m, '--adapter-path', 'md', '--prompt', 'What colour is the sky?'], work)
    assert g.stdout.strip() and re.search(r'Generation: \d+ tokens, [\d.]+ tokens-per-sec', g.stderr), g.stderr
    f = run(['mlxtune', 'fuse', '--model', m, '--adapter-path', 'md'], work)   # LORA.md: adapters/ -> fused_model/
    assert (work/'fused_model'/'config.json').exists() and 'fused model saved to fused_model' in f.stdout, f.stdout
    up = run(['mlxtune', 'fuse', '--model', m, '--adapter-path', 'md', '--save-path', 'fused_up', '--upload-repo', 'me/my-lora',
              '--hf-path', 'someone/base'], work, env_extra={'HF_HUB_OFFLINE': '1'}, check=False)
    assert 'Hub' in one_line_error(up, 'fuse'), up.stderr
    gg = run(['mlxtune', 'fuse', '--model', m, '--adapter-path', 'md', '--save-path', 'fused_gguf', '--export-gguf',
              '--gguf-path', 'model.gguf'], work)   # mlx-lm's flags: the file inside the save path, 16-bit by default
    assert 'GGUF (f16) saved to fused_gguf/model.gguf' in gg.stdout and (work/'fused_gguf'/'model.gguf').is_file(), gg.stdout
    low = run(['mlxtune', 'lora', '--model', m, '--train', '--batch-size', '1', '--num-layers', '4', '--data', d, '--iters', '3',
               '--adapter-path', 'low'], work)
    assert json.loads((work/'low'/'adapter_config.json').read_text())['num_layers'] == 4, low.stdout

def test_python_m_and_help(work):
    p = run([sys.executable, '-m', 'mlxtune', 'lora', '--help'], work)
    flat = ' '.join(p.stdout.split())
    for flag in ('--mask-prompt', '--resume-adapter-file', '--test-batches', '--report-to', '--project-name', '--grad-checkpoint'):
        assert flag in flat, flag
    assert '--iters ITERS Optimizer updates' in flat, flat
    for cmd, flags in [('generate', ('--system-prompt', '--top-p', '--min-p', '--top-k', '--extra-eos-token', '--ignore-chat-template', '-m MAX_TOKENS')),
                       ('fuse', ('--dequantize', '--de-quantize', '--upload-repo', '--hf-path', '--export-gguf', '--gguf-path'))]:
        h = run(['mlxtune', cmd, '--help'], work).stdout
        for flag in flags: assert flag in h, (cmd, flag)

def test_mlx_lm_adapters_in_mlxtune(work):
    "Adapters trained by mlx-lm's own lora: mlxtune generates with them as mlx-lm does, fuses them, and starts a run from them."
    m, d = str(work/'model'), str(work/'data')
    run([sys.executable, '-m', 'mlx_lm', 'lora', '--model', m, '--train', '--data', d, '--iters', '10', '--learning-rate', '1e-3',
         '--num-layers', '4', '--adapter-path', 'peer'], work)
    ours = run(['mlxtune', 'generate', '--model', m, '--adapter-path', 'peer', '--prompt', 'What number comes after four?', '--max-tokens', '8'], work)
    theirs = run([sys.executable, '-m', 'mlx_lm', 'generate', '--model', m, '--adapter-path', 'peer', '--prompt', 'What number comes after four?',
                  '--max-tokens', '8', '--temp', '0'], work)
    text = theirs.stdout.split('=' * 10)[1]   # mlx-lm prints the reply between two lines of '='
    assert ours.stdout[:-1] == text[1:-1] and len(text) > 2, (ours.stdout, theirs.stdout)
    run(['mlxtune', 'fuse', '--model', m, '--adapter-path', 'peer', '--save-path', 'peer_fused'], work)
    assert (work/'peer_fused'/'config.json').exists()
    p = run(['mlxtune', 'lora', '--model', m, '--data', d, '--iters', '3', '--num-layers', '4', '--adapter-path', 'continued',
             '--target-modules', 'all-linear', '--resume-adapter-file', 'peer/adapters.safetensors'], work)
    assert 'starting from the adapter weights in peer/adapters.safetensors' in p.stdout, p.stdout
