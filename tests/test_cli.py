"End-to-end tests of the command line: the README's main job, a run on files, mlx-lm loading our adapters, bad input."
import json, re, sys
import pytest
from mlxtune.tiny import tiny_chat_data

from cli_run import run

@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    "The README's main command, `mlxtune lora` with no arguments, run once."
    d = tmp_path_factory.mktemp('demo')
    return d, run(['mlxtune', 'lora'], d)

def test_demo_loss_goes_down(demo):
    d, p = demo
    losses = [float(x) for x in re.findall(r'^step \d+/\d+: loss ([\d.]+)', p.stdout, re.M)]
    vals = [float(x) for x in re.findall(r'validation loss ([\d.]+)', p.stdout)]
    assert len(losses) >= 3 and losses[-1] < 0.2 * losses[0], p.stdout
    assert vals[-1] < 0.2 * vals[0], p.stdout
    assert (d/'adapters'/'adapters.safetensors').exists() and (d/'adapters'/'adapter_config.json').exists()

def test_demo_learns_an_answer_it_could_not_give_before(demo):
    d, p = demo
    want = 'The sky is blue.'
    assert re.search(r'> What colour is the sky\?\nThe sky is blue\.\n', p.stdout), p.stdout
    before = run(['mlxtune', 'generate', '--prompt', 'What colour is the sky?', '--max-tokens', '12'], d).stdout
    after = run(['mlxtune', 'generate', '--adapter-path', 'adapters', '--prompt', 'What colour is the sky?', '--max-tokens', '12'], d).stdout
    assert want not in before, before
    assert after.strip() == want, after

def test_mlx_lm_generate_loads_our_adapters(demo):
    "mlx-lm's own CLI (mlx-lm 0.32) loads the adapter directory unchanged and gives the same greedy answer."
    d, _ = demo
    p = run([sys.executable, '-m', 'mlx_lm', 'generate', '--model', str(d/'cache'/'tiny-llama-chatml'), '--adapter-path', 'adapters',
             '--prompt', 'What colour is the sky?', '--max-tokens', '12', '--temp', '0'], d)
    assert 'The sky is blue.' in p.stdout, p.stdout + p.stderr

def test_files_config_and_test_split(tmp_path):
    "A run on a model directory and .jsonl files, options from YAML overridden by a flag, then --test alone."
    from mlxtune.tiny import build_tiny_model
    model = build_tiny_model(tmp_path/'model', template='llama3')
    data = tmp_path/'data'; data.mkdir()
    recs = tiny_chat_data()
    for name, part in [('train', recs[:40]), ('valid', recs[40:44]), ('test', recs[44:])]:
        (data/f'{name}.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in part))
    (tmp_path/'c.yaml').write_text(f'model: {model}\ndata: {data}\niters: 1000\nbatch_size: 4\nlearning_rate: 0.003\n'
                                   'target_modules: all-linear\nsteps_per_report: 10\nadapter_path: out\n')
    p = run(['mlxtune', 'lora', '-c', 'c.yaml', '--iters', '20', '--train', '--test', '--memory-report'], tmp_path)
    assert 'step 20/20' in p.stdout and 'step 21' not in p.stdout, p.stdout
    assert re.search(r'memory of update 1 \(MB\):\n  frozen weights +[\d.]+', p.stdout), p.stdout
    assert re.search(r'test loss [\d.]+, test perplexity [\d.]+', p.stdout), p.stdout
    cfg = json.loads((tmp_path/'out'/'adapter_config.json').read_text())
    assert cfg['fine_tune_type'] == 'lora' and cfg['lora_parameters']['rank'] == 8 and len(cfg['lora_parameters']['keys']) == 7
    t1 = re.search(r'test loss ([\d.]+)', p.stdout).group(1)
    p2 = run(['mlxtune', 'lora', '-c', 'c.yaml', '--no-train', '--test'], tmp_path)
    assert f'test loss {t1}' in p2.stdout, (p.stdout, p2.stdout)

@pytest.mark.parametrize('args,config,msg', [
    (['--lerning-rate', '1'], None, 'unrecognized arguments: --lerning-rate'),
    ([], 'lerning_rate: 0.1\n', "unknown key 'lerning_rate' (did you mean 'learning_rate'?)"),
    ([], 'iters: many\n', "'iters' must be int, got 'many'"),
    (['--model', 'x'], None, '--data is required with --model'),
    ([], 'train_on: prompts\n', 'c.yaml: --train-on prompts: choose'),
    (['--loss', 'kto'], None, "loss 'kto': choose"),
    (['--beta', '0.2'], None, 'beta applies to a preference loss'),
    (['--memory-budget-gb', '8', '--cache-limit-gb', '1'], None, 'give --memory-budget-gb or --cache-limit-gb, not both'),
    (['--grad-checkpoint-blocks', '4'], None, '--grad-checkpoint-blocks 4: needs --grad-checkpoint and at least 1 block'),
    (['--micro-batch-size', '9'], None, '--micro-batch-size 9: must be between 1 and --batch-size 8'),
])
def test_bad_options_are_clear_errors(tmp_path, args, config, msg):
    if config: (tmp_path/'c.yaml').write_text(config); args = [*args, '-c', 'c.yaml']
    p = run(['mlxtune', 'lora', *args], tmp_path, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert msg in p.stderr and 'Traceback' not in p.stderr, p.stderr

def test_bad_data_names_file_and_line(tmp_path):
    from mlxtune.tiny import build_tiny_model
    model = build_tiny_model(tmp_path/'model')
    (tmp_path/'train.jsonl').write_text('{"text": "ok"}\n{"text": "unterminated\n')
    p = run(['mlxtune', 'lora', '--model', str(model), '--data', str(tmp_path)], tmp_path, check=False)
    assert p.returncode == 2 and f'{tmp_path}/train.jsonl:2: not valid JSON' in p.stderr, p.stderr
    assert 'Traceback' not in p.stderr

def test_resume_from_the_command_line(tmp_path):
    "--resume-from a checkpoint of a run gives that run's final adapters bit for bit; another run's options are refused."
    import mlx.core as mx, numpy as np
    from mlxtune.tiny import build_tiny_model
    model = build_tiny_model(tmp_path/'model')
    data = tmp_path/'data'; data.mkdir()
    recs = tiny_chat_data()
    for name, part in [('train', recs[:40]), ('valid', recs[40:])]:
        (data/f'{name}.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in part))
    base = ['mlxtune', 'lora', '--model', str(model), '--data', str(data), '--iters', '12', '--save-every', '4',
            '--steps-per-eval', '4', '--keep-checkpoints', '0', '--learning-rate', '0.003', '--lora-dropout', '0.1']
    run(base + ['--adapter-path', 'full'], tmp_path)
    import shutil
    shutil.copytree(tmp_path/'full'/'checkpoint-4', tmp_path/'part'/'checkpoint-4')
    p = run(base + ['--adapter-path', 'part', '--resume-from', 'part'], tmp_path)
    assert 'resuming at step 4 of 12' in p.stdout, p.stdout
    a, b = mx.load(str(tmp_path/'full'/'adapters.safetensors')), mx.load(str(tmp_path/'part'/'adapters.safetensors'))
    assert a.keys() == b.keys() and all(np.array_equal(np.array(a[k]), np.array(b[k])) for k in a)
    bad = run(base + ['--seed', '1', '--adapter-path', 'part', '--resume-from', 'full/checkpoint-4'], tmp_path, check=False)
    assert bad.returncode == 2 and 'from a different run: training options (seed: 0 then, 1 now) differ' in bad.stderr, bad.stderr
    # what does not change a step's meaning may change, said in a line: the learning rate, as the NaN guard advises
    lower = run(base[:-4] + ['--learning-rate', '0.001', '--lora-dropout', '0.1', '--adapter-path', 'lower', '--resume-from', 'full/checkpoint-4'], tmp_path)
    assert 'resuming with learning_rate 0.001 (was 0.003)' in lower.stdout and 'step 12/12' in lower.stdout, lower.stdout

def test_fuse_then_generate_from_the_fused_model(demo):
    "`mlxtune fuse` writes a model that answers as the adapters did, without them, in mlxtune and in mlx-lm."
    d, _ = demo
    p = run(['mlxtune', 'fuse', '--adapter-path', 'adapters', '--save-path', 'fused', '--export-gguf'], d)
    assert 'fused 14 adapter layers into unquantized weights' in p.stdout, p.stdout
    assert 'GGUF (f16) saved to fused/ggml-model-f16.gguf' in p.stdout, p.stdout
    card = (d/'fused'/'README.md').read_text()   # the model card says how it was trained
    assert '# fused' in card and '- Method: LoRA rank 16' in card and '- Training: 300 updates' in card, card
    out = run(['mlxtune', 'generate', '--model', 'fused', '--prompt', 'What colour is the sky?', '--max-tokens', '12'], d).stdout
    assert out.strip() == 'The sky is blue.', out
    peer = run([sys.executable, '-m', 'mlx_lm', 'generate', '--model', 'fused', '--prompt', 'What colour is the sky?',
                '--max-tokens', '12', '--temp', '0'], d)
    assert 'The sky is blue.' in peer.stdout, peer.stdout
    # and llama.cpp, from the GGUF file: the same greedy answer to the same chat-template rendering
    from transformers import AutoTokenizer
    from llama_cpp import Llama
    prompt = AutoTokenizer.from_pretrained(str(d/'fused')).apply_chat_template(
        [{'role': 'user', 'content': 'What colour is the sky?'}], tokenize=False, add_generation_prompt=True)
    llm = Llama(model_path=str(d/'fused'/'ggml-model-f16.gguf'), n_ctx=256, verbose=False)
    answer = llm.create_completion(prompt, max_tokens=12, temperature=0.0)['choices'][0]['text']
    assert answer.strip() == 'The sky is blue.', answer

def test_fuse_dtype(demo):
    "`--dtype` sets the fused model's dtype; the default keeps the checkpoint's own, also on a CPU (where training computes in float32)."
    import mlx.core as mx
    d, _ = demo
    def dtypes(path): return {str(v.dtype) for f in (d/path).glob('*.safetensors') for v in mx.load(str(f)).values()}
    run(['mlxtune', 'fuse', '--adapter-path', 'adapters', '--save-path', 'fused16', '--dtype', 'bfloat16'], d)
    assert dtypes('fused16') == {'mlx.core.bfloat16'}, dtypes('fused16')
    # a bfloat16 checkpoint as the base (the adapters fused a second time: only the dtype is checked here)
    run(['mlxtune', 'fuse', '--model', 'fused16', '--adapter-path', 'adapters', '--save-path', 'fused16b'], d)
    assert dtypes('fused16b') == {'mlx.core.bfloat16'}, dtypes('fused16b')
    bad = run(['mlxtune', 'fuse', '--adapter-path', 'adapters', '--save-path', 'x', '--dtype', 'half'], d, check=False)
    assert bad.returncode == 2 and "--dtype half: choose" in bad.stderr, bad.stderr

def test_mlx_lm_fuse_reads_our_adapters(demo):
    "mlx-lm's own fuse (mlx-lm 0.32) takes our adapter directory unchanged; its fused model answers as ours does."
    d, _ = demo
    run([sys.executable, '-m', 'mlx_lm', 'fuse', '--model', str(d/'cache'/'tiny-llama-chatml'), '--adapter-path', 'adapters',
         '--save-path', 'peer_fused'], d)
    p = run(['mlxtune', 'generate', '--model', 'peer_fused', '--prompt', 'What colour is the sky?', '--max-tokens', '12'], d)
    assert p.stdout.strip() == 'The sky is blue.', p.stdout

def test_ctrl_c_saves_and_prints_the_command_that_continues(tmp_path):
    "Ctrl-C (SIGINT) during training: exit 130, no traceback, a checkpoint, and a printed command that finishes the run."
    import os, shlex, signal, subprocess, time
    from cli_run import PY_BIN
    env = {**os.environ, 'MLXTUNE_CACHE': str(tmp_path/'cache')}
    args = [str(PY_BIN/'mlxtune'), 'lora', '--iters', '3000', '--steps-per-report', '5', '--steps-per-eval', '1000', '--save-every', '1000']
    p = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:   # interrupt once training is under way
        if line.startswith('step 10/3000'): break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and 'Traceback' not in err, (p.returncode, err)
    m = re.search(r'interrupted at step (\d+): checkpoint saved at (\S+); continue with:\n  (.+)', err)
    assert m and (tmp_path/m[2]/'trainer_state.json').exists(), err
    cmd = shlex.split(m[3])
    assert cmd[:2] == ['mlxtune', 'lora'] and cmd[-2:] == ['--resume-from', m[2]], cmd
    cmd[cmd.index('--iters') + 1] = str(int(m[1]) + 5)   # continue for 5 more steps (a resume may change the run's length)
    done = run(cmd, tmp_path)
    assert f'resuming at step {m[1]}' in done.stdout and f'step {int(m[1]) + 5}/{int(m[1]) + 5}' in done.stdout, done.stdout

def test_preference_training_from_yaml(tmp_path):
    "`loss: dpo` in a YAML config trains on {prompt, chosen, rejected} files, reports rewards and tests on pairs."
    from mlxtune.tiny import build_tiny_model
    model = build_tiny_model(tmp_path/'model')
    data = tmp_path/'data'; data.mkdir()
    things = [('sky', 'blue'), ('grass', 'green'), ('sun', 'yellow'), ('snow', 'white'), ('coal', 'black'), ('sea', 'blue'),
              ('leaf', 'green'), ('rose', 'red'), ('milk', 'white'), ('night', 'black'), ('lemon', 'yellow'), ('blood', 'red')]
    recs = [{'prompt': f'What colour is the {t}?', 'chosen': f'The {t} is {c}.', 'rejected': 'I cannot answer that.'}
            for t, c in things]
    for name, part in [('train', recs[:8]), ('valid', recs[8:10]), ('test', recs[10:])]:
        (data/f'{name}.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in part))
    (tmp_path/'c.yaml').write_text(f'model: {model}\ndata: {data}\nloss: dpo\nbeta: 0.2\niters: 20\nbatch_size: 2\n'
                                   'learning_rate: 0.003\nsteps_per_eval: 10\nsteps_per_report: 10\nadapter_path: out\n')
    p = run(['mlxtune', 'lora', '-c', 'c.yaml', '--train', '--test'], tmp_path)
    assert 'train: 8 preference pairs' in p.stdout and 'reference log-probabilities of 8 pairs' in p.stdout, p.stdout
    assert re.search(r'step 20/20: loss [\d.]+ .*\| reward_accuracy [\d.]+, chosen_reward', p.stdout), p.stdout
    val = [float(x) for x in re.findall(r'validation loss ([\d.]+)', p.stdout)]
    assert len(val) == 3 and val[-1] < val[0], p.stdout
    assert re.search(r'test loss [\d.]+, reward_accuracy [\d.]+', p.stdout), p.stdout
    assert (tmp_path/'out'/'adapters.safetensors').exists()
    # the same files under the default cross-entropy loss: refused at the first record, which is named
    bad = run(['mlxtune', 'lora', '--model', str(model), '--data', str(data), '--iters', '1'], tmp_path, check=False)
    assert bad.returncode == 2 and f'{data}/train.jsonl:1: a preference pair' in bad.stderr, bad.stderr
    assert 'Traceback' not in bad.stderr
