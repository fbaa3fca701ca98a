"""The malformed-input corpus (tests/bad_inputs.py), run through the real command line.

For every case: the exit code, no traceback, one error line that names what is wrong and where, and none of the user's
files changed (new files only where the command writes its outputs). All cases run in one worker process that calls
`mlxtune.cli.main` per case; a few also run through the installed `mlxtune` executable, to show both agree."""
import re, time
import pytest
import bad_inputs as bi
from cli_run import run

EXE_CASES = ['data_invalid_json', 'flag_bad_int', 'adapter_config_garbage', 'ok_generate']

def test_corpus_is_large_and_well_formed():
    names = [c.name for c in bi.CASES]
    assert len(names) >= 100, len(names)
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    for c in bi.CASES:
        assert c.code in (0, 2) and re.fullmatch(r'[\w.-]+', c.name), c
        assert c.code == 0 or c.msg, f'{c.name}: a refused case must say what its message names'
    assert set(EXE_CASES) <= set(names)

@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad_inputs')
    t = time.time()
    results = bi.run_corpus(root)
    return root, results, time.time() - t

def _norm(text, *dirs):
    for d in dirs: text = text.replace(str(d), '<DIR>')
    return text

def test_every_bad_input_gets_one_clear_line(corpus):
    root, results, secs = corpus
    shared = bi.shared_paths(root)
    summary, failing = bi.report(results, shared=shared)
    print(f'{summary}\n({secs:.0f}s)')
    if failing: pytest.fail(f'{summary}\n({secs:.0f}s)\n\n{len(failing)} cases not as intended:\n{bi.failure_text(failing)}', pytrace=False)

@pytest.mark.parametrize('name', EXE_CASES)
def test_the_executable_agrees_with_the_in_process_runner(corpus, name):
    "The installed `mlxtune` command gives the same exit code, traceback or not, and error line as the in-process run."
    root, results, _ = corpus
    r = results[name]
    if r.get('crashed') or r.get('skipped'): pytest.skip(f'{name}: {r.get("crashed") or r.get("skipped")}')
    shared, case = bi.shared_paths(root), next(c for c in bi.CASES if c.name == name)
    d = root/'exe'/name; d.mkdir(parents=True)
    if case.setup: case.setup(d, shared)
    env = {'MLXTUNE_CACHE': str(root/'cache'), 'HF_HOME': str(root/'hf'), 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
           'TRANSFORMERS_OFFLINE': '1', 'MLXTUNE_DEBUG': '1'}   # as the worker runs
    p = run(['mlxtune', *bi._expand(list(case.argv), shared, d)], d, env_extra=env, check=False)
    assert p.returncode == r['code'], (p.returncode, r['code'], p.stderr[-2000:])
    assert ('Traceback (most recent call last)' in p.stderr) == bool(r.get('exc') or 'Traceback' in r['stderr']), p.stderr[-2000:]
    assert _norm('\n'.join(bi.error_lines(p.stderr)), d) == _norm('\n'.join(bi.error_lines(r['stderr'])), r['dir']), (p.stderr, r['stderr'])
