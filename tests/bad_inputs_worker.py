"""Run cases of the malformed-input corpus (tests/bad_inputs.py) in this one process, through `mlxtune.cli.main`.

    python tests/bad_inputs_worker.py ROOT OUT.jsonl NAME...
Builds the shared inputs under ROOT/shared once (a tiny model, data, trained adapters with checkpoints), then for each case:
writes its files into ROOT/cases/NAME, fingerprints every file there and under ROOT/shared, calls `main(argv)` with the case
directory as the working directory and stdout/stderr captured, and appends to OUT.jsonl a `start` event, then a `result`:
exit code, outputs, the exception that escaped `main` (a traceback), and the files changed or created."""
import contextlib, hashlib, io, json, os, shutil, signal, sys, time, traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
ROOT, OUT, NAMES = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3:]
os.environ.update(MLXTUNE_CACHE=str(ROOT/'cache'), HF_HOME=str(ROOT/'hf'), HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1',
                  TRANSFORMERS_OFFLINE='1', MPLBACKEND='Agg', TOKENIZERS_PARALLELISM='false',
                  MLXTUNE_DEBUG='1')   # a defect of mlxtune's escapes `main` with its traceback: we report where it was raised

import mlxtune  # noqa: F401  (first: sets up the BLAS under MLX)
from mlxtune.cli import main
import bad_inputs as bi

CASE_SECONDS = 120

def emit(**ev):
    with open(OUT, 'a') as f: f.write(json.dumps(ev) + '\n')

def call(argv, cwd):
    "Run `main(argv)` in `cwd`: `(code, stdout, stderr, exc)`; `exc` describes an exception that escaped `main`."
    out, err, exc, code = io.StringIO(), io.StringIO(), None, 0
    old = os.getcwd(); os.chdir(cwd)
    def alarm(*_): raise TimeoutError(f'the case ran past {CASE_SECONDS}s')
    signal.signal(signal.SIGALRM, alarm); signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): main(list(argv))
    except SystemExit as e:
        if e.code is None: code = 0
        elif isinstance(e.code, int): code = e.code
        else: err.write(f'{e.code}\n'); code = 1
    except BaseException as e:
        tb = traceback.extract_tb(e.__traceback__)
        ours = [f for f in tb if '/mlxtune/' in f.filename.replace('\\', '/') and 'tests/' not in f.filename]
        f = (ours or tb)[-1]
        where = f'{Path(f.filename).stem}.{f.name}:{f.lineno}' + ('' if ours and ours[-1] is tb[-1] else f' (raised in {Path(tb[-1].filename).name}:{tb[-1].lineno})')
        exc = {'type': type(e).__name__, 'msg': str(e)[:300], 'where': where,
               'traceback': ''.join(traceback.format_exception(type(e), e, e.__traceback__))[-3000:]}
        code = 1
    finally:
        signal.alarm(0); os.chdir(old)
    return code, out.getvalue(), err.getvalue(), exc

def fingerprint(*dirs)->dict:
    "`{path: sha256 or 'dir'}` of everything under `dirs` (links not followed)."
    fp = {}
    for d in dirs:
        for p, sub, fs in os.walk(d):
            for s in sub: fp[os.path.join(p, s)] = 'dir'
            for f in fs:
                q = os.path.join(p, f)
                if os.path.islink(q): fp[q] = 'link:' + os.readlink(q); continue
                try:
                    h = hashlib.sha256()
                    with open(q, 'rb') as fh:
                        for b in iter(lambda: fh.read(1 << 20), b''): h.update(b)
                    fp[q] = h.hexdigest()
                except OSError as e: fp[q] = f'unreadable: {e.errno}'
    return fp

def build_shared(s:dict):
    "The shared inputs: tiny models, good data, and adapter runs with checkpoints (trained through the command line itself)."
    from mlxtune.tiny import build_tiny_model
    done = s['M'].parent/'.done'
    if done.exists(): return
    if s['M'].parent.exists(): shutil.rmtree(s['M'].parent)
    build_tiny_model(s['M'])
    build_tiny_model(s['W'], hidden_size=128)
    for split in ('train', 'valid', 'test'): bi.put(s['D']/f'{split}.jsonl', bi._good(split))
    for model, run in (('M', 'A'), ('W', 'V')):
        argv = [a.replace('$M', str(s[model])).replace('$D', str(s['D'])).replace('$A', str(s[run])) for a in bi.SHARED_RUN]
        code, out, err, exc = call(argv, s['M'].parent)
        if code != 0 or exc: raise RuntimeError(f'{argv} failed ({code}):\n{out[-2000:]}\n{err[-2000:]}\n{(exc or {}).get("traceback", "")}')
    done.write_text('ok')

def run_case(c, s:dict)->dict:
    d = ROOT/'cases'/c.name
    if d.exists(): shutil.rmtree(d)
    d.mkdir(parents=True)
    if c.setup: c.setup(d, s)
    reason = c.skip(d) if c.skip else None
    if reason: return {'skipped': reason}
    before = fingerprint(d, s['M'].parent)
    argv = bi._expand(list(c.argv), s, d)
    t = time.time()
    code, out, err, exc = call(argv, d)
    secs = time.time() - t
    after = fingerprint(d, s['M'].parent)
    allowed = [str(d/w) for w in c.writes]
    def ok(p): return any(p == a or p.startswith(a + os.sep) for a in allowed)
    changed = sorted(os.path.relpath(p, ROOT) for p, h in before.items() if after.get(p) != h and not ok(p))
    new = sorted(os.path.relpath(p, ROOT) for p in after if p not in before and not ok(p))
    return dict(code=code, stdout=out[-3000:], stderr=err[-4000:], exc=exc, changed=changed, new=new, seconds=round(secs, 2),
                argv=argv, dir=str(d))

def cleanup(d:Path):
    "Make every file of a case removable again (a case may chmod its files)."
    for p, sub, fs in os.walk(d):
        for x in sub + fs:
            try: os.chmod(os.path.join(p, x), 0o755, follow_symlinks=False)
            except (OSError, NotImplementedError): pass

if __name__ == '__main__':
    s = bi.shared_paths(ROOT)
    try: build_shared(s)
    except Exception: emit(event='setup_failed', error=traceback.format_exc()[-4000:]); sys.exit(3)
    by_name = {c.name: c for c in bi.CASES}
    for name in NAMES:
        emit(event='start', name=name)
        try: r = run_case(by_name[name], s)
        except Exception: r = {'crashed': 'the case setup failed:\n' + traceback.format_exc()[-1500:]}
        cleanup(ROOT/'cases'/name)
        emit(event='result', name=name, **r)
