"Crash-proof training: kill -9 a training process at random moments, resume, and get the uninterrupted run bit for bit."
import json, os, random, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import mlx.core as mx
import pytest
from mlxtune.checkpoints import list_checkpoints, load_checkpoint
from mlxtune.tiny import build_tiny_model

WORKER = Path(__file__).parent/'train_worker.py'

def start(model, run, resume=False, **kw):
    args = [sys.executable, str(WORKER), str(model), str(run)] + (['--resume'] if resume else [])
    for k, v in kw.items(): args += [f'--{k.replace("_", "-")}', str(v)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def finish(p):
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return out

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp('resume')
    model = build_tiny_model(d/'model')
    finish(start(model, d/'ref'))
    return d, model, json.loads((d/'ref'/'history.json').read_text()), mx.load(str(d/'ref'/'adapters.safetensors'))

def wait_until(p, cond):
    while not cond() and p.poll() is None: time.sleep(0.01)
    assert p.poll() is None, 'the run ended before the moment to test'

def check_resume(d, model, run, ref_hist, ref_w):
    "Every checkpoint left loads; resuming gives the uninterrupted run's history and adapters bit for bit."
    for c in list_checkpoints(run):
        ck = load_checkpoint(c)
        assert ck['state']['step'] == int(c.name.split('-')[1]) and ck['adapters'] and ck['optimizer']
    finish(start(model, run, resume=True))
    hist = json.loads((run/'history.json').read_text())
    assert hist['resumed_from'] != 'None', 'the kill came too late to test anything'
    assert hist['train'] == ref_hist['train'] and hist['val'] == ref_hist['val']
    w = mx.load(str(run/'adapters.safetensors'))
    assert w.keys() == ref_w.keys() and all(np.array_equal(np.array(w[n]), np.array(ref_w[n])) for n in w)

def test_kill9_and_resume_is_bit_exact(reference):
    d, model, ref_hist, ref_w = reference
    rng = random.Random(1234)
    trials = []
    for trial in range(2):
        run = d/f'trial{trial}'
        p = start(model, run)
        k = rng.randint(3, 16)          # kill once k checkpoints exist, after a random extra delay
        wait_until(p, lambda: len(list_checkpoints(run)) >= k)
        time.sleep(rng.uniform(0, 0.05))
        p.send_signal(signal.SIGKILL); p.wait()
        left = list_checkpoints(run)
        check_resume(d, model, run, ref_hist, ref_w)
        trials.append((k, left[-1].name if left else None))
    print('kill points (checkpoints seen, last left):', trials)

def test_kill9_in_rotation_and_after_checkpoint_0(reference):
    "A kill while rotation deletes a checkpoint leaves whole checkpoints only; a run killed with only checkpoint-0 resumes exactly."
    d, model, ref_hist, ref_w = reference
    run = d/'rotation'
    p = start(model, run, keep=2, slow_delete=0.5)   # each deletion of a renamed checkpoint takes half a second
    wait_until(p, lambda: any(run.glob('.checkpoint-*.del-*')) and len(list_checkpoints(run)) >= 2)
    p.send_signal(signal.SIGKILL); p.wait()
    assert any(run.glob('.checkpoint-*.del-*')) and len(list_checkpoints(run)) >= 2
    check_resume(d, model, run, ref_hist, ref_w)
    run = d/'zero'
    p = start(model, run, pause_after_save=1.0)      # a second's pause right after checkpoint-0 is written
    wait_until(p, lambda: len(list_checkpoints(run)) >= 1)
    p.send_signal(signal.SIGKILL); p.wait()
    assert [c.name for c in list_checkpoints(run)] == ['checkpoint-0']
    check_resume(d, model, run, ref_hist, ref_w)

def test_ctrl_c_saves_and_resumes_exactly(reference):
    "SIGINT (Ctrl-C) ends the update in progress, saves its checkpoint, writes no final adapters; resuming is bit-exact."
    d, model, ref_hist, ref_w = reference
    run = d/'sigint'
    p = start(model, run)
    wait_until(p, lambda: len(list_checkpoints(run)) >= 6)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 3, err
    stop = json.loads((run/'interrupted.json').read_text())
    assert stop['checkpoint'] == str(run/f"checkpoint-{stop['step']}") and stop['step'] >= 5
    assert list_checkpoints(run)[-1].name == f"checkpoint-{stop['step']}" and not (run/'adapters.safetensors').exists()
    check_resume(d, model, run, ref_hist, ref_w)

CASES = {'packed, accumulated': ['--pack', '--accum', '2'], 'dpo, 4-bit': ['--loss', 'dpo', '--bits', '4']}

@pytest.mark.parametrize('case', CASES)
def test_data_parallel_matches_one_process(tmp_path, case):
    """Two CPU processes (mlx.launch, ring backend), each with half of every batch (of pairs), give one process's result;
    a packed run stopped and resumed on two workers too."""
    model, extra = build_tiny_model(tmp_path/'model'), CASES[case]
    p1 = subprocess.run([sys.executable, str(WORKER), str(model), str(tmp_path/'one'), '--iters', '6', '--dropout', '0.0',
                         *extra], capture_output=True, text=True, timeout=600)
    assert p1.returncode == 0, p1.stderr
    launch = Path(sys.executable).parent/'mlx.launch'
    # the packed run in two legs: 3 updates, then resumed on two workers to 6
    for leg in ([['--iters', '3']] if case.startswith('packed') else []) + [['--iters', '6', '--resume']]:
        port = random.Random().randint(20000, 40000)
        p = subprocess.run([str(launch), '-n', '2', '--backend', 'ring', '--starting-port', str(port), '--python',
                            sys.executable, str(WORKER), str(model), str(tmp_path/'two'), '--dropout', '0.0', *leg, *extra],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
    one, two = (json.loads((tmp_path/r/'history.json').read_text()) for r in ('one', 'two'))
    np.testing.assert_allclose(two['train'], one['train'], rtol=1e-4)
    ends = (lambda v: [v[0], v[-1]]) if case.startswith('packed') else (lambda v: v)   # the first leg ends validating
    np.testing.assert_allclose(ends(two['val']), ends(one['val']), rtol=1e-5)   # every worker validates on all of it
    if case.startswith('dpo'): np.testing.assert_allclose(two['val_margin'], one['val_margin'], rtol=1e-3, atol=1e-6)
    w1, w2 = mx.load(str(tmp_path/'one'/'adapters.safetensors')), mx.load(str(tmp_path/'two'/'adapters.safetensors'))
    for n in w1: np.testing.assert_allclose(np.array(w2[n]), np.array(w1[n]), rtol=1e-3, atol=1e-5)
    # worker 0 alone writes: the same files as one worker's run
    assert sorted(f.name for f in (tmp_path/'two').iterdir()) == sorted(f.name for f in (tmp_path/'one').iterdir())
    if case.startswith('packed'):   # a run of two workers does not go on with one
        p = subprocess.run([sys.executable, str(WORKER), str(model), str(tmp_path/'two'), '--iters', '6', '--dropout', '0.0',
                            '--resume', *extra], capture_output=True, text=True, timeout=600)
        assert p.returncode != 0 and 'from a different run: number of workers (2 then, 1 now) differ' in p.stderr, p.stderr

def test_a_worker_that_stops_ends_the_run_with_one_line(tmp_path):
    "Workers started by hand (as mlx.launch starts them): one killed, or frozen, ends the others' run, saying so."
    from mlxtune.checkpoints import is_good, last_good_checkpoint
    from mlxtune.tiny import tiny_chat_data
    model = build_tiny_model(tmp_path/'model')
    data = tmp_path/'data'; data.mkdir()
    (data/'train.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in tiny_chat_data()))
    for how, sig in [('killed', signal.SIGKILL), ('frozen', signal.SIGSTOP)]:
        port = random.Random().randint(20000, 40000)
        hosts = tmp_path/f'hosts-{how}.json'; hosts.write_text(json.dumps([[f'127.0.0.1:{port}'], [f'127.0.0.1:{port + 1}']]))
        run = tmp_path/how
        cmd = [str(Path(sys.executable).parent/'mlxtune'), 'lora', '--model', str(model), '--data', str(data), '--iters', '100000',
               '--batch-size', '4', '--save-every', '2', '--adapter-path', str(run), '--worker-timeout', '15']
        ps = [subprocess.Popen(cmd, env={**os.environ, 'MLX_RANK': str(r), 'MLX_HOSTFILE': str(hosts)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for r in (0, 1)]
        deadline = time.time() + 300
        while len(list_checkpoints(run)) < 2 and time.time() < deadline: time.sleep(0.2)   # some steps done
        ps[1].send_signal(sig)
        t0 = time.time()
        out, err = ps[0].communicate(timeout=120)
        waited = time.time() - t0
        ps[1].kill(); ps[1].communicate()
        assert 'Traceback' not in err, err
        if how == 'killed':
            assert ps[0].returncode == 2 and 'mlxtune lora: error: worker 0 of 2, step ' in err and 'lost the other workers' in err, err
        else:
            assert ps[0].returncode == 1 and 'no answer from the other workers for 15 s (worker_timeout)' in err, err
            assert 15 <= waited < 60, waited
        last = last_good_checkpoint(run)
        assert last is not None and is_good(last) and load_checkpoint(last)['adapters'], list(run.iterdir())
