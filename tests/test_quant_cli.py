"End-to-end tests of `mlxtune quant`: a model directory and a text file in, a model mlx-lm's own CLI runs out; bad input."
import json, sys
import pytest

from cli_run import run

@pytest.fixture(scope='module')
def model_and_text(tmp_path_factory):
    from mlxtune.tiny import build_tiny_model, CORPUS
    d = tmp_path_factory.mktemp('quant')
    model = build_tiny_model(d/'model', hidden_size=128, intermediate_size=256)
    (d/'calib.txt').write_text(CORPUS * 4)
    return d, model

@pytest.mark.parametrize('method,extra', [   # every method is run through `quant_cmd` in nbs/31_cli; here, through the shell
    ('gptq', ['--bits', '3']),
    ('dynamic', ['--target-bpw', '3.75']),     # per-layer bits and group sizes: the config mlx-lm must read layer by layer
])
def test_quant_then_mlx_lm_generates(model_and_text, method, extra):
    d, model = model_and_text
    out = d/f'out-{method}'
    p = run(['mlxtune', 'quant', method, '--model', str(model), '--data', str(d/'calib.txt'), '--num-samples', '8',
             '--seq-len', '32', '--save-path', str(out), *extra], d)
    assert 'bits per weight' in p.stdout and f'quantized model saved to {out}' in p.stdout, p.stdout
    cfg = json.loads((out/'config.json').read_text())
    assert cfg['mlxtune_quantization']['method'] == method and 'quantization' in cfg
    g = run([sys.executable, '-m', 'mlx_lm', 'generate', '--model', str(out), '--prompt', 'What colour is the sky?',
             '--max-tokens', '5', '--temp', '0'], d)
    assert 'Generation:' in g.stdout or '==========' in g.stdout, g.stdout + g.stderr

def test_quant_bad_input(model_and_text):
    d, model = model_and_text
    p = run(['mlxtune', 'quant', 'gptq', '--model', str(model)], d, check=False)
    assert p.returncode == 2 and 'give --data' in p.stderr, p.stderr
    p = run(['mlxtune', 'quant', 'awq', '--model', str(model), '--data', str(d/'missing.txt')], d, check=False)
    assert p.returncode == 2 and 'missing.txt' in p.stderr, p.stderr
    p = run(['mlxtune', 'quant', 'rtn', '--model', str(model), '--bits', '4', '--group-size', '48'], d, check=False)
    assert p.returncode == 2 and 'group_size in (32, 64, 128)' in p.stderr, p.stderr
    p = run(['mlxtune', 'quant'], d, check=False)
    assert p.returncode == 2 and 'choose a method' in p.stderr, p.stderr
