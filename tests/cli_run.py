"Run one of the project's commands (or any program) the way a user would, for the command-line tests."
import os, subprocess, sys
from pathlib import Path

PY_BIN = Path(sys.executable).parent

def run(args, cwd, env_extra=None, check=True):
    "Run `args` in `cwd` with the mlxtune cache inside it; fail with both outputs when `check` and it exits non-zero."
    env = {**os.environ, 'MLXTUNE_CACHE': str(cwd/'cache'), **(env_extra or {})}
    exe = str(PY_BIN/args[0]) if (PY_BIN/args[0]).exists() else args[0]
    p = subprocess.run([exe, *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0: raise AssertionError(f'{args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}')
    return p
