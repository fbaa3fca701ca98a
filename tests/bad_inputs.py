"""The corpus of malformed inputs: every way a user can hand the command line something wrong, and what they must see.

Each `Case` is a command line (`argv`, after `mlxtune`), a `setup` that writes the user's files into a fresh case directory,
the exit code expected (2: refused; 0: accepted), and the pieces of text the one error line must contain: what is wrong
and where (the path, `file:line`, the option's name). `tests/bad_inputs_worker.py` runs them all in one process through
`mlxtune.cli.main`; `judge` says what each run did. `python tests/bad_inputs.py` runs the corpus and prints the report.

Placeholders in `argv`, in `msg` and in file contents written by `setup`: `$M` the built-in tiny model, `$W` a wider tiny
model, `$D` a good data directory (train/valid/test), `$A` a trained adapter directory (rank 4, with `checkpoint-1` and
`checkpoint-2`), `$V` adapters trained on the wider model, `$C` the case's own directory. They are shared by all cases
(and checked for changes after every case); a case that breaks something copies it into its own directory first."""
import gzip, json, os, re, shutil, subprocess, sys, time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).parent
WORKER = HERE/'bad_inputs_worker.py'

@dataclass
class Case:
    name: str
    argv: list                       # after `mlxtune`; placeholders $M $W $D $A $V $C
    setup: Callable|None = None      # setup(case_dir, shared) writes the user's files
    code: int = 2                    # expected exit code: 2 refused, 0 accepted
    msg: tuple = ()                  # each item (or one of a tuple of alternatives) must be in the error line
    forbid: tuple = ()               # must not be in the error line (e.g. 'unrecognized' for options we must know)
    writes: tuple = ()               # paths (relative to the case dir) the command may create or change
    skip: Callable|None = None       # skip(case_dir) -> a reason to skip after setup, or None
    why: str = ''                    # what the case is about, when the name does not say it

# ---------------------------------------------------------------------------------------------------------------
# Building blocks of the setups

_GOOD = object()   # "the good content of this split"

def _records():
    from mlxtune.tiny import tiny_chat_data
    return tiny_chat_data()

def jsonl(recs)->str: return ''.join(json.dumps(r) + '\n' for r in recs)

def _good(split):
    r = _records()
    return jsonl({'train': r[:40], 'valid': r[40:44], 'test': r[44:]}[split])

def put(path:Path, content):
    "Write `content` (str, bytes, records, a callable(path)) at `path`."
    path.parent.mkdir(parents=True, exist_ok=True)
    if callable(content): content(path)
    elif isinstance(content, bytes): path.write_bytes(content)
    elif isinstance(content, (list, tuple)): path.write_text(jsonl(content))
    else: path.write_text(content)

def _expand(s, shared, d):
    if isinstance(s, (list, tuple)): return type(s)(_expand(x, shared, d) for x in s)
    if not isinstance(s, str): return s
    for k, v in shared.items(): s = s.replace(f'${k}', str(v))
    return s.replace('$C', str(d))

def files(spec:dict)->Callable:
    "A setup writing `{relative path: content}`; contents may use the placeholders."
    def setup(d, shared):
        for rel, content in spec.items(): put(d/rel, _expand(content, shared, d) if isinstance(content, str) else content)
    return setup

def data(train=_GOOD, valid=_GOOD, test=None, dirname='data', more:dict|None=None)->Callable:
    "A setup writing a data directory: each split's content (None: no such file; _GOOD: good records), plus `more` files."
    def setup(d, shared):
        for split, content in (('train', train), ('valid', valid), ('test', test)):
            if content is None: continue
            put(d/dirname/f'{split}.jsonl', _good(split) if content is _GOOD else content)
        for rel, content in (more or {}).items(): put(d/rel, content)
    return setup

def both(*setups)->Callable:
    def setup(d, shared):
        for s in setups: s(d, shared)
    return setup

def copy_of(key, dest, edit=None)->Callable:
    "A setup copying a shared directory (`'M'`, `'A'`...) to `dest` (without checkpoints), then `edit(dest_path)`."
    def setup(d, shared):
        shutil.copytree(shared[key], d/dest, ignore=shutil.ignore_patterns('checkpoint-*'))
        if edit: edit(d/dest)
    return setup

def write(name, content)->Callable:
    "An edit writing `content` to file `name` of a directory."
    return lambda p: put(p/name, content)

def remove(*names)->Callable:
    def edit(p):
        for n in names:
            for f in p.glob(n): shutil.rmtree(f) if f.is_dir() else f.unlink()
    return edit

def truncate(name, keep=0.5)->Callable:
    def edit(p):
        b = (p/name).read_bytes(); (p/name).write_bytes(b[:int(len(b)*keep)])
    return edit

def json_edit(name, fn)->Callable:
    def edit(p):
        cfg = json.loads((p/name).read_text()); fn(cfg); (p/name).write_text(json.dumps(cfg, indent=2))
    return edit

def edits(*fns)->Callable:
    def edit(p):
        for f in fns: f(p)
    return edit

def mkdir(path): path.mkdir(parents=True, exist_ok=True)

def unreadable(path):
    path.write_text(_good('train')); path.chmod(0)

def readable_anyway(rel)->Callable:
    "Skip when the file can be read despite chmod 000 (as root)."
    def skip(d):
        try: open(d/rel).close()
        except PermissionError: return None
        return 'chmod 000 does not stop this user from reading (running as root)'
    return skip

def opt(name)->tuple:
    "An option's name as a message may spell it: `lora_alpha`, `--lora-alpha`, `lora-alpha` or `lora alpha`."
    return (name, '--' + name.replace('_', '-'), name.replace('_', '-'), name.replace('_', ' '))

def chat(*msgs)->dict: return {'messages': [dict(role=r, content=c) for r, c in msgs]}
QA = chat(('user', 'What colour is the sky?'), ('assistant', 'The sky is blue.'))

def _good_lazy(split):
    "Good records for a split, computed when the setup runs."
    return lambda p: p.write_text(_good(split))

def _ckpt(d, shared, edit):
    "Copy $A's checkpoint-1 to ck/ and break it with `edit`."
    shutil.copytree(shared['A']/'checkpoint-1', d/'ck')
    edit(d/'ck')

# ---------------------------------------------------------------------------------------------------------------
# The command lines the cases start from

LORA = ['lora', '--model', '$M', '--data', 'data', '--iters', '2', '--batch-size', '2', '--steps-per-report', '1',
        '--steps-per-eval', '2', '--val-batches', '1']
GEN = ['generate', '--model', '$M', '--max-tokens', '2']
FUSE = ['fuse', '--model', '$M', '--save-path', 'fused']
TEST_ONLY = ['lora', '--model', '$M', '--data', '$D', '--no-train', '--test', '--batch-size', '2']
RESUME = ['lora', '--model', '$M', '--data', '$D', '--iters', '2', '--batch-size', '2', '--r', '4', '--save-every', '1',
          '--steps-per-eval', '2', '--val-batches', '1', '--keep-checkpoints', '0', '--target-modules', 'all-linear']
SHARED_RUN = [*RESUME, '--adapter-path', '$A']   # how $A was trained (RESUME's options)
CAL = files({'cal.txt': 'The quick brown fox jumps over the lazy dog. ' * 200})
QUANT_RTN = ['quant', 'rtn', '--model', '$M', '--save-path', 'q']
QUANT_GPTQ = ['quant', 'gptq', '--model', '$M', '--data', 'cal.txt', '--save-path', 'q', '--num-samples', '2', '--seq-len', '16']

def yaml_case(name, text, code=2, msg=('c.yaml',), argv=None, **kw)->Case:
    "A `-c c.yaml` case: `text` is the config file (placeholders allowed); data in `data/`."
    return Case(name, [*(argv or LORA), '-c', 'c.yaml'], both(data(), files({'c.yaml': text})), code, msg, **kw)

# ---------------------------------------------------------------------------------------------------------------
# The corpus

C = Case
CASES = [
    # --- controls: good inputs are accepted (and write only their outputs)
    C('ok_baseline', LORA, data(), 0, writes=('adapters',), why='a good run: the corpus runner works'),
    C('ok_crlf_lines', LORA, data(train=lambda p: p.write_bytes(_good('train').replace('\n', '\r\n').encode())), 0,
      writes=('adapters',), why='Windows line ends are fine'),
    C('ok_learning_rate_flag_1e-5', [*LORA, '--learning-rate', '1e-5'], data(), 0, writes=('adapters',)),
    yaml_case('ok_yaml_learning_rate_1e-5', 'learning_rate: 1e-5\n', 0, (), writes=('adapters',),
              why='YAML 1.1 reads 1e-5 as a string; a number is meant'),
    yaml_case('ok_yaml_mlx_lm_example', 'model: $M\ntrain: true\nfine_tune_type: lora\noptimizer: adamw\ndata: data\nseed: 0\n'
              'num_layers: 2\nbatch_size: 2\niters: 2\nval_batches: 1\nlearning_rate: 1e-5\nsteps_per_report: 1\n'
              'steps_per_eval: 2\nadapter_path: out\nsave_every: 100\nmax_seq_length: 2048\ngrad_checkpoint: false\n'
              'lora_parameters:\n  keys: ["self_attn.q_proj", "self_attn.v_proj"]\n  rank: 4\n  scale: 20.0\n  dropout: 0.0\n',
              0, (), argv=['lora'], writes=('out',), why="mlx-lm's own example config works unchanged"),
    C('ok_json_array_file', ['lora', '--model', '$M', '--data', 'train.json', '--iters', '2', '--batch-size', '2'],
      lambda d, s: (d/'train.json').write_text(json.dumps(_records()[:8], indent=1)), 0, writes=('adapters',),
      why='a .json file holding a list of records'),
    C('ok_generate', [*GEN, '--adapter-path', '$A'], None, 0),

    # --- data files
    C('data_train_is_a_directory', LORA, data(train=mkdir), msg=('train.jsonl',)),
    C('data_train_unreadable', LORA, data(train=unreadable), msg=('train.jsonl',), skip=readable_anyway('data/train.jsonl')),
    C('data_non_utf8', LORA, data(train=jsonl([QA]).encode() + b'{"text": "caf\xe9"}\n'), msg=('train.jsonl:2',)),
    C('data_latin1_file', LORA, data(train='{"text": "na\u00efve caf\u00e9"}\n'.encode('latin-1')), msg=('train.jsonl:1',)),
    C('data_invalid_json', LORA, data(train=jsonl([QA, QA]) + '{"messages": [\n'), msg=('train.jsonl:3',)),
    C('data_trailing_garbage', LORA, data(train=jsonl([QA]) + json.dumps(QA) + ' xyz\n'), msg=('train.jsonl:2',)),
    C('data_json_array_of_numbers', ['lora', '--model', '$M', '--data', 'data.json', '--iters', '2'],
      files({'data.json': '[1, 2, 3]\n'}), msg=('data.json',)),
    C('data_json_truncated', ['lora', '--model', '$M', '--data', 'data.json', '--iters', '2'],
      files({'data.json': '[\n' + json.dumps(QA) + ',\n' + json.dumps(QA)[:20] + '\n'}), msg=('data.json',)),
    C('data_csv_no_known_columns', LORA, data(train=None, more={'data/train.csv': 'question,answer\nwhy,because\n'}),
      msg=('train.csv', 'question')),
    C('data_gz_not_gzip', LORA, data(train=None, more={'data/train.jsonl.gz': b'this is not gzip\n'}), msg=('train.jsonl.gz',)),
    C('data_gz_truncated', LORA, data(train=None, more={'data/train.jsonl.gz': gzip.compress(jsonl([QA] * 40).encode())[:60]}),
      msg=('train.jsonl.gz',)),
    C('data_parquet_file', ['lora', '--model', '$M', '--data', 'train.parquet', '--iters', '2'],
      files({'train.parquet': b'PAR1\x00\x00garbage PAR1'}), msg=('train.parquet',)),
    C('data_parquet_only_dir', LORA, data(train=None, valid=None, more={'data/train.parquet': b'PAR1\x00\x00PAR1'}),
      msg=('data', ('train.jsonl', 'train.parquet'))),
    C('data_gzip_named_jsonl', LORA, data(train=gzip.compress(jsonl([QA] * 4).encode())), msg=('train.jsonl',)),
    C('data_deeply_nested_array', LORA, data(train=jsonl([QA]) + '[' * 100000 + '\n'), msg=('train.jsonl:2',)),
    C('data_deeply_nested_object', LORA, data(train='{"text": ' + '{"a": ' * 50000 + '1' + '}' * 50001 + '\n'), msg=('train.jsonl:1',)),
    C('data_lone_surrogate', LORA, data(train=jsonl([QA]) + '{"messages": [{"role": "user", "content": "hi \\ud800"}, '
                                        '{"role": "assistant", "content": "ok"}]}\n'), msg=('train.jsonl:2',)),
    C('data_empty_file', LORA, data(train=''), msg=('train.jsonl', 'empty')),
    C('data_blank_lines_only', LORA, data(train='\n  \n\t\n'), msg=('train.jsonl',)),
    C('data_record_not_object', LORA, data(train=jsonl([QA]) + '[1, 2]\n'), msg=('train.jsonl:2',)),
    C('data_record_is_string', LORA, data(train='"hello"\n'), msg=('train.jsonl:1',)),
    C('data_record_is_null', LORA, data(train='null\n'), msg=('train.jsonl:1',)),
    C('data_messages_not_list', LORA, data(train=jsonl([{'messages': 'hi'}])), msg=('train.jsonl:1', 'messages')),
    C('data_messages_empty', LORA, data(train=jsonl([QA, {'messages': []}])), msg=('train.jsonl:2', 'messages')),
    C('data_message_not_object', LORA, data(train=jsonl([{'messages': ['hi', 'there']}])), msg=('train.jsonl:1',)),
    C('data_message_no_role', LORA, data(train=jsonl([{'messages': [{'content': 'hi'}]}])), msg=('train.jsonl:1', 'role')),
    C('data_unknown_role', LORA, data(train=jsonl([QA, chat(('robot', 'beep'), ('assistant', 'ok'))])),
      msg=('train.jsonl:2', 'robot')),
    C('data_content_not_string', LORA, data(train=jsonl([{'messages': [{'role': 'user', 'content': 5},
                                                                       {'role': 'assistant', 'content': 'ok'}]}])),
      msg=('train.jsonl:1', 'content')),
    C('data_content_list_of_parts', LORA, data(train=jsonl([{'messages': [{'role': 'user', 'content': [{'type': 'image'}]},
                                                                          {'role': 'assistant', 'content': 'ok'}]}])),
      msg=('train.jsonl:1', 'content')),
    C('data_weight_not_0_1', LORA, data(train=jsonl([{'messages': [{'role': 'user', 'content': 'hi'},
                                                                   {'role': 'assistant', 'content': 'ok', 'weight': 2}]}])),
      msg=('train.jsonl:1', 'weight')),
    C('data_tools_not_list', LORA, data(train=jsonl([{**QA, 'tools': 'calculator'}])), msg=('train.jsonl:1', 'tools')),
    C('data_mixed_formats', LORA, data(train=jsonl([QA, {'text': 'plain text'}])), msg=('train.jsonl:2',)),
    C('data_two_formats_in_one_record', LORA, data(train=jsonl([{'text': 'a', 'prompt': 'b', 'completion': 'c'}])),
      msg=('train.jsonl:1',)),
    C('data_no_known_fields', LORA, data(train=jsonl([{'question': 'a', 'answer': 'b'}])), msg=('train.jsonl:1', 'question')),
    C('data_text_not_string', LORA, data(train=jsonl([{'text': 5}])), msg=('train.jsonl:1', 'text')),
    C('data_text_empty', LORA, data(train=jsonl([{'text': 'ok'}, {'text': ''}])), msg=('train.jsonl:2', 'text')),
    C('data_text_is_nan', LORA, data(train='{"text": NaN}\n'), msg=('train.jsonl:1',)),
    C('data_completion_missing_prompt', LORA, data(train=jsonl([{'completion': 'b'}])), msg=('train.jsonl:1', 'prompt')),
    C('data_prompt_not_string', LORA, data(train=jsonl([{'prompt': ['a'], 'completion': 'b'}])), msg=('train.jsonl:1', 'prompt')),
    C('data_completion_empty', LORA, data(train=jsonl([{'prompt': 'a', 'completion': ''}])), msg=('train.jsonl:1', 'completion')),
    C('data_no_trained_tokens', LORA, data(train=jsonl([chat(('user', 'hello'))] * 4), valid=None),
      msg=('train.jsonl',), why='no assistant turn anywhere: nothing to learn'),
    C('data_two_files_for_one_split', LORA, data(more={'data/train.json': lambda p: p.write_text(json.dumps(_records()[:8]))}),
      msg=('train.jsonl', 'train.json')),
    C('data_valid_is_a_directory', LORA, data(valid=mkdir), msg=('valid.jsonl',)),
    C('data_train_dangling_link', LORA, data(train=lambda p: p.symlink_to('elsewhere/gone.jsonl')), msg=('train.jsonl',)),
    C('data_tool_calls_not_list', LORA, data(train=jsonl([{'messages': [{'role': 'user', 'content': 'add 1 and 2'},
                                                                        {'role': 'assistant', 'tool_calls': 'add(1, 2)'}]}])),
      msg=('train.jsonl:1', 'tool_calls')),
    C('data_valid_invalid_json', LORA, data(valid=jsonl([QA]) + '{"messages": \n'), msg=('valid.jsonl:2',)),
    C('data_valid_empty_file', LORA, data(valid=''), msg=('valid.jsonl',)),
    C('data_test_invalid_with_test', [*LORA, '--train', '--test'], data(test='not json\n'), msg=('test.jsonl:1',),
      why='the test split is read (and refused) before training writes anything'),
    C('data_missing_train_split', LORA, data(train=None), msg=('data', 'train')),
    C('data_wrong_split_names', LORA, data(train=None, valid=None, more={'data/training.jsonl': _good_lazy('train'),
                                                                'data/validation.jsonl': _good_lazy('valid')}),
      msg=('data', 'training.jsonl'), why='the message lists what it found'),
    C('data_empty_dir', LORA, lambda d, s: (d/'data').mkdir(), msg=('data', 'train')),
    C('data_missing_relative', [*LORA[:3], '--data', 'nodata', *LORA[5:]], None, msg=('nodata',)),
    C('data_missing_dot_relative', [*LORA[:3], '--data', './nodata', *LORA[5:]], None, msg=('nodata',)),
    C('data_missing_absolute', [*LORA[:3], '--data', '/nonexistent/mlxtune-data', *LORA[5:]], None, msg=('/nonexistent/mlxtune-data',)),
    C('data_missing_home', [*LORA[:3], '--data', '~/nonexistent-mlxtune-data', *LORA[5:]], None, msg=('nonexistent-mlxtune-data',)),
    C('data_missing_jsonl_file', [*LORA[:3], '--data', 'nodata.jsonl', *LORA[5:]], None, msg=('nodata.jsonl',)),
    C('data_hub_name_offline', [*LORA[:3], '--data', 'someone/some-dataset', *LORA[5:]], None, msg=('someone/some-dataset',),
      why='no internet: the Hub name is named, no traceback from datasets'),
    C('data_text_file', [*LORA[:3], '--data', 'notes.txt', *LORA[5:]], files({'notes.txt': 'hello\n'}), msg=('notes.txt',)),
    C('data_saved_dataset_corrupt', LORA, files({'data/dataset_dict.json': '{not json', 'data/train.jsonl': _good_lazy('train')}),
      msg=(('dataset_dict.json', 'data'),)),
    C('data_chat_without_template', [*LORA[:1], '--model', 'notemplate', *LORA[3:]],
      both(data(), copy_of('M', 'notemplate', json_edit('tokenizer_config.json', lambda c: c.pop('chat_template', None))),
           lambda d, s: [f.unlink() for f in (d/'notemplate').glob('chat_template.*')]),
      msg=('train.jsonl:1', 'template')),
    C('data_max_seq_length_1', [*LORA, '--max-seq-length', '1'], data(), msg=(opt('max_seq_length'),)),
    C('data_max_seq_length_drops_all', [*LORA, '--max-seq-length', '2', '--drop-untrained'], data(),
      msg=('train.jsonl',), why='every sample truncated to nothing trainable'),
    C('data_train_on_bogus', [*LORA, '--train-on', 'prompts'], data(), msg=(opt('train_on'), 'prompts')),
    C('data_hf_config_with_local_dir', [*LORA, '--hf-config', 'en'], data(), msg=(opt('hf_config'),),
      why='an option that cannot apply to local files must not be ignored silently'),

    # --- YAML configs
    yaml_case('yaml_not_mapping', '- iters\n- 2\n'),
    yaml_case('yaml_scalar', 'just some words\n'),
    yaml_case('yaml_invalid_syntax', 'iters: 2\nbatch_size: 2\n\tlearning_rate: 0.1\n', msg=(('c.yaml:3', 'line 3'),)),
    yaml_case('yaml_unclosed_bracket', 'iters: 2\ntarget_modules: [q_proj, v_proj\nbatch_size: 2\n', msg=(('c.yaml:3', 'line 3'),)),
    yaml_case('yaml_duplicate_key', 'iters: 2\nbatch_size: 2\niters: 3\n', msg=('c.yaml', opt('iters'))),
    yaml_case('yaml_unknown_key', 'lerning_rate: 0.1\n', msg=('c.yaml', 'lerning_rate', opt('learning_rate'))),
    yaml_case('yaml_wrong_type', 'iters: many\n', msg=('c.yaml', opt('iters'), 'many')),
    yaml_case('yaml_float_for_int', 'iters: 2.5\n', msg=('c.yaml', opt('iters'))),
    yaml_case('yaml_bool_for_int', 'batch_size: yes\n', msg=('c.yaml', opt('batch_size'))),
    yaml_case('yaml_string_for_int', "batch_size: '2'\n", msg=('c.yaml', opt('batch_size'))),
    yaml_case('yaml_list_for_scalar', 'iters: [1, 2]\n', msg=('c.yaml', opt('iters'))),
    yaml_case('yaml_mapping_for_scalar', 'learning_rate: {value: 0.1}\n', msg=('c.yaml', opt('learning_rate'))),
    yaml_case('yaml_number_for_list', 'target_modules: 5\n', msg=('c.yaml', opt('target_modules'))),
    yaml_case('yaml_seed_negative', 'seed: -1\n', msg=('c.yaml', opt('seed'))),
    yaml_case('yaml_learning_rate_nan', 'learning_rate: .nan\n', msg=('c.yaml', opt('learning_rate'))),
    yaml_case('yaml_learning_rate_inf', 'learning_rate: .inf\n', msg=('c.yaml', opt('learning_rate'))),
    yaml_case('yaml_lora_alpha_nan', 'lora_alpha: .nan\n', msg=('c.yaml', opt('lora_alpha'))),
    yaml_case('yaml_lora_alpha_negative', 'lora_alpha: -16\n', msg=('c.yaml', opt('lora_alpha'))),
    yaml_case('yaml_lora_dropout_nan', 'lora_dropout: .nan\n', msg=('c.yaml', opt('lora_dropout'))),
    yaml_case('yaml_learning_rate_string_word', 'learning_rate: fast\n', msg=('c.yaml', opt('learning_rate'), 'fast')),
    yaml_case('yaml_python_tag', 'iters: !!python/object/apply:os.getcwd []\n', msg=('c.yaml',)),
    yaml_case('yaml_key_not_string', '1: 2\n', msg=('c.yaml',)),
    yaml_case('yaml_train_on_bogus', 'train_on: prompts\n', msg=('c.yaml', opt('train_on'), 'prompts')),
    yaml_case('yaml_mlx_lora_parameters_not_mapping', 'lora_parameters: 5\n', msg=('lora_parameters',), forbid=('unknown key',)),
    yaml_case('yaml_mlx_lora_parameters_rank_zero', 'lora_parameters: {rank: 0, scale: 10.0, dropout: 0.0}\n',
              msg=('c.yaml', ('rank', 'lora_parameters')), forbid=('unknown key',)),
    yaml_case('yaml_mlx_lora_parameters_unknown_key', 'lora_parameters: {rank: 4, scale: 10.0, dropout: 0.0, alpha: 3}\n',
              msg=('lora_parameters', 'alpha'), forbid=('unknown key \'lora_parameters\'',)),
    yaml_case('yaml_mlx_lr_schedule_unknown', 'lr_schedule: {name: bogus_decay, arguments: [1.0e-5, 100]}\n',
              msg=('c.yaml', opt('lr_schedule'), 'bogus_decay'), forbid=('unknown key',)),
    yaml_case('yaml_mlx_lr_schedule_bad_arguments', 'lr_schedule: {name: cosine_decay, arguments: oops}\n',
              msg=('c.yaml', opt('lr_schedule')), forbid=('unknown key',)),
    yaml_case('yaml_mlx_optimizer_config_other', 'optimizer: adam\noptimizer_config: {sgd: {momentum: 0.5}}\n',
              msg=('c.yaml', 'optimizer_config', 'sgd'), forbid=('unknown key',),
              why='settings for an optimizer that is not used must not be dropped silently'),
    yaml_case('yaml_mlx_optimizer_config_not_mapping', 'optimizer: adamw\noptimizer_config: 3\n',
              msg=('optimizer_config',), forbid=('unknown key',)),
    yaml_case('yaml_adapter_path_empty', "adapter_path: ''\n", msg=('c.yaml', opt('adapter_path'))),
    yaml_case('yaml_data_missing', 'data: nowhere/data\n', msg=('nowhere/data',), argv=[*LORA[:3], *LORA[5:]]),
    yaml_case('yaml_mlx_scale_and_lora_alpha', 'lora_alpha: 16\nlora_parameters: {rank: 4, scale: 10.0, dropout: 0.0}\n',
              msg=('c.yaml', ('lora_alpha', 'lora-alpha'), ('scale', 'lora_parameters')), why='two settings of one thing that disagree'),
    yaml_case('yaml_alias_conflict', 'save_every: 5\nsteps_per_save: 7\n', msg=('c.yaml', ('steps_per_save', 'steps-per-save'))),
    C('yaml_config_missing', [*LORA, '-c', 'nope.yaml'], data(), msg=('nope.yaml',)),
    C('yaml_config_is_directory', [*LORA, '-c', 'confdir'], both(data(), lambda d, s: (d/'confdir').mkdir()), msg=('confdir',)),
    C('yaml_config_non_utf8', [*LORA, '-c', 'c.yaml'], both(data(), files({'c.yaml': b'iters: 2\n# caf\xe9\n'})), msg=('c.yaml',)),
    C('yaml_config_binary', [*LORA, '-c', 'c.yaml'], both(data(), files({'c.yaml': b'\x00\x01\x02\xff\xfe'})), msg=('c.yaml',)),

    # --- flags and numbers
    C('flag_unknown', [*LORA, '--bogus-flag'], data(), msg=('--bogus-flag',)),
    C('flag_misspelt', [*LORA, '--lerning-rate', '0.1'], data(), msg=('--lerning-rate',)),
    C('flag_bad_int', [*LORA, '--iters', 'two'], data(), msg=('--iters', 'two')),
    C('flag_float_for_int', [*LORA, '--batch-size', '2.5'], data(), msg=('--batch-size', '2.5')),
    C('flag_hex_float', [*LORA, '--learning-rate', '0x10'], data(), msg=('--learning-rate',)),
    C('flag_missing_value', [*LORA, '--iters'], data(), msg=('--iters',)),
    C('flag_negative_iters', [*LORA, '--iters', '-1'], data(), msg=(opt('iters'),)),
    C('flag_zero_iters', [*LORA, '--iters', '0'], data(), msg=(opt('iters'),)),
    C('flag_zero_batch_size', [*LORA, '--batch-size', '0'], data(), msg=(opt('batch_size'),)),
    C('flag_zero_epochs', [*LORA[:5], '--epochs', '0'], data(), msg=(opt('epochs'),)),
    C('flag_iters_and_epochs', [*LORA, '--epochs', '1'], data(), msg=('iters', 'epochs')),
    C('flag_zero_grad_accumulation', [*LORA, '--grad-accumulation-steps', '0'], data(), msg=(opt('grad_accumulation_steps'),)),
    C('flag_lora_alpha_zero', [*LORA, '--lora-alpha', '0'], data(), msg=(opt('lora_alpha'),),
      why='scale 0: the adapters can never change the output'),
    C('flag_lora_alpha_inf', [*LORA, '--lora-alpha', 'inf'], data(), msg=(opt('lora_alpha'),)),
    C('flag_r_zero', [*LORA, '--r', '0'], data(), msg=(('r must', "'r'", '--r', 'r='),)),
    C('flag_lora_dropout_one', [*LORA, '--lora-dropout', '1'], data(), msg=(opt('lora_dropout'),)),
    C('flag_learning_rate_nan', [*LORA, '--learning-rate', 'nan'], data(), msg=(opt('learning_rate'),)),
    C('flag_learning_rate_inf', [*LORA, '--learning-rate', 'inf'], data(), msg=(opt('learning_rate'),)),
    C('flag_learning_rate_negative', [*LORA, '--learning-rate', '-0.1'], data(), msg=(opt('learning_rate'),)),
    C('flag_min_learning_rate_negative', [*LORA, '--lr-schedule', 'cosine', '--min-learning-rate', '-1'], data(),
      msg=(opt('min_learning_rate'),)),
    C('flag_min_learning_rate_above_peak', [*LORA, '--lr-schedule', 'cosine', '--learning-rate', '0.001',
                                            '--min-learning-rate', '0.1'], data(), msg=(opt('min_learning_rate'),)),
    C('flag_warmup_negative', [*LORA, '--warmup-steps', '-1'], data(), msg=(opt('warmup_steps'),)),
    C('flag_weight_decay_negative', [*LORA, '--optimizer', 'adamw', '--weight-decay', '-0.1'], data(), msg=(opt('weight_decay'),)),
    C('flag_weight_decay_nan', [*LORA, '--optimizer', 'adamw', '--weight-decay', 'nan'], data(), msg=(opt('weight_decay'),)),
    C('flag_momentum_negative', [*LORA, '--optimizer', 'sgd', '--momentum', '-1'], data(), msg=(opt('momentum'),)),
    C('flag_max_grad_norm_nan', [*LORA, '--max-grad-norm', 'nan'], data(), msg=(opt('max_grad_norm'),)),
    C('flag_max_grad_norm_negative', [*LORA, '--max-grad-norm', '-1'], data(), msg=(opt('max_grad_norm'),)),
    C('flag_seed_negative', [*LORA, '--seed', '-1'], data(), msg=(opt('seed'),)),
    C('flag_seed_huge', [*LORA, '--seed', str(2**70)], data(), msg=(opt('seed'),)),
    C('flag_optimizer_bogus', [*LORA, '--optimizer', 'adamx'], data(), msg=(opt('optimizer'), 'adamx')),
    C('flag_lr_schedule_bogus', [*LORA, '--lr-schedule', 'exponential'], data(), msg=(opt('lr_schedule'), 'exponential')),
    C('flag_fine_tune_type_bogus', [*LORA, '--fine-tune-type', 'bogus'], data(), msg=(opt('fine_tune_type'), 'bogus')),
    C('flag_init_bogus', [*LORA, '--init', 'gaussian'], data(), msg=(opt('init'), 'gaussian')),
    C('flag_report_to_bogus', [*LORA, '--report-to', 'tensorboard'], data(), msg=(opt('report_to'), 'tensorboard')),
    C('flag_target_invalid_regex', [*LORA, '--target-modules', '('], data(), msg=(opt('target_modules'), '(')),
    C('flag_target_matches_nothing', [*LORA, '--target-modules', 'nonexistent_proj'], data(),
      msg=(opt('target_modules'), 'nonexistent_proj')),
    C('flag_num_layers_zero', [*LORA, '--num-layers', '0'], data(), msg=(opt('num_layers'),)),
    C('flag_num_layers_too_many', [*LORA, '--num-layers', '999'], data(), msg=(opt('num_layers'), '999')),
    C('flag_num_layers_minus_two', [*LORA, '--num-layers', '-2'], data(), msg=(opt('num_layers'),)),
    C('flag_layers_to_transform_out_of_range', [*LORA, '--layers-to-transform', '0', '7'], data(),
      msg=(opt('layers_to_transform'), '7')),
    C('flag_max_seq_length_zero', [*LORA, '--max-seq-length', '0'], data(), msg=(opt('max_seq_length'),)),
    C('flag_val_batches_zero_keep_best', [*LORA, '--val-batches', '0', '--keep-best'], data(), msg=(opt('keep_best'), ('val_batches', 'val-batches', 'validation'))),
    C('flag_val_batches_minus_two', [*LORA, '--val-batches', '-2'], data(), msg=(opt('val_batches'),)),
    C('flag_keep_best_without_valid', [*LORA, '--keep-best'], data(valid=None), msg=(opt('keep_best'), 'valid')),
    C('flag_early_stopping_without_valid', [*LORA, '--early-stopping-patience', '2'], data(valid=None),
      msg=(opt('early_stopping_patience'), 'valid')),
    C('flag_early_stopping_negative', [*LORA, '--early-stopping-patience', '-1'], data(), msg=(opt('early_stopping_patience'),)),
    C('flag_early_stopping_min_delta_negative', [*LORA, '--early-stopping-patience', '2', '--early-stopping-min-delta', '-1'],
      data(), msg=(opt('early_stopping_min_delta'),)),
    C('flag_test_without_test_split', [*LORA, '--train', '--test'], data(), msg=('data', 'test'),
      why='refused before training: no adapters may be written'),
    C('flag_adapter_path_empty', [*LORA, '--adapter-path', ''], data(), msg=(opt('adapter_path'),),
      why="'' would write the adapters into the current directory"),
    C('flag_adapter_path_is_a_file', [*LORA, '--adapter-path', 'out'], both(data(), files({'out': 'my notes\n'})),
      msg=('out',)),
    C('flag_save_every_zero', [*LORA, '--save-every', '0'], data(), msg=(opt('save_every'),)),
    C('flag_keep_checkpoints_negative', [*LORA, '--keep-checkpoints', '-1'], data(), msg=(opt('keep_checkpoints'),)),
    C('flag_steps_per_report_zero', [*LORA, '--steps-per-report', '0'], data(), msg=(opt('steps_per_report'),)),
    C('flag_pack_length_without_pack', [*LORA, '--pack-length', '64'], data(), msg=(opt('pack_length'),)),
    C('flag_pad_multiple_zero', [*LORA, '--pad-multiple', '0'], data(), msg=(opt('pad_multiple'),)),
    C('flag_loss_chunk_size_negative', [*LORA, '--loss-chunk-size', '-1'], data(), msg=(opt('loss_chunk_size'),)),
    C('flag_attention_chunk_size_negative', [*LORA, '--attention-chunk-size', '-4'], data(), msg=(opt('attention_chunk_size'),)),
    C('flag_cache_limit_negative', [*LORA, '--cache-limit-gb', '-1'], data(), msg=(opt('cache_limit_gb'),)),
    C('flag_memory_limit_zero', [*LORA, '--memory-limit-gb', '0'], data(), msg=(opt('memory_limit_gb'),)),
    C('flag_no_train_no_test', [*LORA, '--no-train'], data(), msg=('train', 'test')),
    C('flag_data_without_model', ['lora', '--data', 'data'], data(), msg=('--model',)),
    C('flag_model_without_data', ['lora', '--model', '$M'], None, msg=('--data',)),
    C('flag_unknown_command', ['lorra', '--model', '$M'], None, msg=('lorra',)),
    C('flag_resume_adapter_file_missing', [*LORA, '--resume-adapter-file', 'nope.safetensors'], data(), msg=('nope.safetensors',),
      forbid=('unrecognized',)),
    C('flag_resume_adapter_file_garbage', [*LORA, '--resume-adapter-file', 'start.safetensors'],
      both(data(), files({'start.safetensors': b'\x00' * 40})), msg=('start.safetensors',)),
    C('flag_resume_adapter_file_other_rank', [*LORA, '--r', '2', '--resume-adapter-file', '$A/adapters.safetensors'], data(),
      msg=('adapters.safetensors',)),
    C('flag_test_batches_zero', [*TEST_ONLY, '--adapter-path', '$A', '--test-batches', '0'], None, msg=(opt('test_batches'),)),
    C('flag_betas_one_value', [*LORA, '--betas', '0.9'], data(), msg=(opt('betas'),)),
    C('flag_betas_out_of_range', [*LORA, '--betas', '0.9', '1.5'], data(), msg=(opt('betas'),)),
    C('flag_eps_negative', [*LORA, '--eps=-1e-8'], data(), msg=(opt('eps'),)),
    C('flag_decay_steps_negative', [*LORA, '--lr-schedule', 'cosine', '--decay-steps', '-5'], data(), msg=(opt('decay_steps'),)),
    C('flag_bool_bad_value', [*LORA, '--keep-best', 'maybe'], data(), msg=('--keep-best', 'maybe')),
    C('flag_train_split_missing', [*LORA, '--train-split', 'training'], data(), msg=('data', 'training')),
    C('flag_valid_split_named_but_missing', [*LORA, '--valid-split', 'dev'], data(), msg=('data', 'dev'),
      why='a split the user names must exist (an unnamed valid split may be missing)'),
    C('flag_alias_conflict', [*LORA, '--save-every', '5', '--steps-per-save', '7'], data(), msg=(opt('steps_per_save'), opt('save_every'))),
    C('flag_resume_from_and_adapter_file', [*LORA, '--resume-from', '$A', '--resume-adapter-file', '$A/adapters.safetensors'], data(),
      msg=(opt('resume_adapter_file'), opt('resume_from'))),
    C('flag_num_layers_and_layers_to_transform', [*LORA, '--num-layers', '1', '--layers-to-transform', '0'], data(),
      msg=(opt('num_layers'), opt('layers_to_transform')), why='two ways to pick the blocks that disagree'),
    # options that another option makes meaningless: accepted silently, they would be ignored
    C('flag_lora_dropout_with_full', [*LORA, '--fine-tune-type', 'full', '--lora-dropout', '0.1'], data(), msg=(opt('lora_dropout'),)),
    C('flag_rslora_with_full', [*LORA, '--fine-tune-type', 'full', '--use-rslora'], data(), msg=(opt('use_rslora'),)),
    C('flag_momentum_with_adam', [*LORA, '--optimizer', 'adam', '--momentum', '0.5'], data(), msg=(opt('momentum'),)),
    C('flag_min_learning_rate_with_constant', [*LORA, '--min-learning-rate', '1e-6'], data(), msg=(opt('min_learning_rate'),)),
    C('flag_min_delta_without_patience', [*LORA, '--early-stopping-min-delta', '0.1'], data(), msg=(opt('early_stopping_min_delta'),)),
    C('flag_project_name_without_report_to', [*LORA, '--project-name', 'mine'], data(), msg=(opt('project_name'),)),
    C('flag_dora_and_full', [*LORA, '--use-dora', '--fine-tune-type', 'full'], data(), msg=(('use_dora', '--use-dora'), 'full')),

    # --- model directories
    C('model_missing', [*LORA[:2], 'nomodel', *LORA[3:]], data(), msg=('nomodel',)),
    C('model_missing_absolute', [*LORA[:2], '/nonexistent/mlxtune-model', *LORA[3:]], data(), msg=('/nonexistent/mlxtune-model',)),
    C('model_is_a_file', [*LORA[:2], 'model.bin', *LORA[3:]], both(data(), files({'model.bin': b'\x00' * 64})), msg=('model.bin',)),
    C('model_empty_dir', [*LORA[:2], 'mymodel', *LORA[3:]], both(data(), lambda d, s: (d/'mymodel').mkdir()), msg=('mymodel',)),
    C('model_config_garbage', [*LORA[:2], 'mymodel', *LORA[3:]], both(data(), copy_of('M', 'mymodel', write('config.json', '{oops'))),
      msg=('config.json',)),
    C('model_config_not_object', [*GEN[:2], 'mymodel', *GEN[3:]], copy_of('M', 'mymodel', write('config.json', '[1, 2]')),
      msg=('config.json',)),
    C('model_config_unknown_type', [*GEN[:2], 'mymodel', *GEN[3:]],
      copy_of('M', 'mymodel', json_edit('config.json', lambda c: c.update(model_type='bogus_arch'))), msg=('mymodel', 'bogus_arch')),
    C('model_config_missing_field', [*GEN[:2], 'mymodel', *GEN[3:]],
      copy_of('M', 'mymodel', json_edit('config.json', lambda c: c.pop('hidden_size'))), msg=('mymodel', 'hidden_size')),
    C('model_config_wrong_shape', [*LORA[:2], 'mymodel', *LORA[3:]],
      both(data(), copy_of('M', 'mymodel', json_edit('config.json', lambda c: c.update(hidden_size=128))), ),
      msg=('mymodel',), why='config.json says 128 wide, the weights are 64 wide'),
    C('model_weights_truncated', [*LORA[:2], 'mymodel', *LORA[3:]], both(data(), copy_of('M', 'mymodel', truncate('model.safetensors'))),
      msg=('model.safetensors',)),
    C('model_weights_garbage', [*GEN[:2], 'mymodel', *GEN[3:]], copy_of('M', 'mymodel', write('model.safetensors', b'\xff' * 256)),
      msg=('model.safetensors',)),
    C('model_weights_empty', [*GEN[:2], 'mymodel', *GEN[3:]], copy_of('M', 'mymodel', write('model.safetensors', b'')),
      msg=('model.safetensors',)),
    C('model_no_weights', [*GEN[:2], 'mymodel', *GEN[3:]], copy_of('M', 'mymodel', remove('*.safetensors')), msg=('mymodel',)),
    C('model_no_tokenizer', [*LORA[:2], 'mymodel', *LORA[3:]],
      both(data(), copy_of('M', 'mymodel', remove('tokenizer*', 'special_tokens_map.json', 'chat_template*'))),
      msg=('mymodel', 'tokenizer')),
    C('model_tokenizer_garbage', [*GEN[:2], 'mymodel', *GEN[3:]], copy_of('M', 'mymodel', write('tokenizer.json', '{"broken": ')),
      msg=('tokenizer.json',)),
    C('model_tokenizer_config_garbage', [*GEN[:2], 'mymodel', *GEN[3:]],
      copy_of('M', 'mymodel', write('tokenizer_config.json', 'not json')), msg=('tokenizer_config.json',)),
    C('model_hub_name_offline', [*GEN[:2], 'someone/some-model', *GEN[3:]], None, msg=('someone/some-model',)),

    # --- adapter directories (generate, fuse, lora --no-train --test)
    C('adapter_missing_generate', [*GEN, '--adapter-path', 'nope'], None, msg=('nope',)),
    C('adapter_dir_is_a_file', [*GEN, '--adapter-path', 'ad'], files({'ad': 'x'}), msg=('ad',)),
    C('adapter_empty_dir', [*GEN, '--adapter-path', 'ad'], lambda d, s: (d/'ad').mkdir(), msg=('ad',)),
    C('adapter_config_empty', [*GEN, '--adapter-path', 'ad'], copy_of('A', 'ad', write('adapter_config.json', '')),
      msg=('adapter_config.json',)),
    C('adapter_config_garbage', [*GEN, '--adapter-path', 'ad'], copy_of('A', 'ad', write('adapter_config.json', '{"rank": ')),
      msg=('adapter_config.json',)),
    C('adapter_config_not_object', [*GEN, '--adapter-path', 'ad'], copy_of('A', 'ad', write('adapter_config.json', '[]')),
      msg=('adapter_config.json',)),
    C('adapter_config_no_lora_parameters', [*GEN, '--adapter-path', 'ad'],
      copy_of('A', 'ad', json_edit('adapter_config.json', lambda c: c.pop('lora_parameters'))),
      msg=('adapter_config.json', 'lora_parameters')),
    C('adapter_config_no_num_layers', [*GEN, '--adapter-path', 'ad'],
      copy_of('A', 'ad', json_edit('adapter_config.json', lambda c: c.pop('num_layers'))),
      msg=('adapter_config.json', 'num_layers')),
    C('adapter_config_bad_type', [*GEN, '--adapter-path', 'ad'],
      copy_of('A', 'ad', json_edit('adapter_config.json', lambda c: c.update(fine_tune_type='bogus'))),
      msg=('adapter_config.json', 'bogus')),
    C('adapter_config_rank_string', [*GEN, '--adapter-path', 'ad'],
      copy_of('A', 'ad', json_edit('adapter_config.json', lambda c: c['lora_parameters'].update(rank='four'))),
      msg=('adapter_config.json', 'rank')),
    C('adapter_weights_missing', [*GEN, '--adapter-path', 'ad'], copy_of('A', 'ad', remove('adapters.safetensors')),
      msg=('adapters.safetensors',)),
    C('adapter_weights_truncated', [*GEN, '--adapter-path', 'ad'], copy_of('A', 'ad', truncate('adapters.safetensors')),
      msg=('adapters.safetensors',)),
    C('adapter_weights_garbage', [*GEN, '--adapter-path', 'ad'], copy_of('A', 'ad', write('adapters.safetensors', b'\x07' * 99)),
      msg=('adapters.safetensors',)),
    C('adapter_other_rank', [*GEN, '--adapter-path', 'ad'],
      copy_of('A', 'ad', json_edit('adapter_config.json', lambda c: c['lora_parameters'].update(rank=8))),
      msg=('adapters.safetensors',), why='the config says rank 8, the weights are rank 4'),
    C('adapter_other_keys', [*GEN, '--adapter-path', 'ad'],
      copy_of('A', 'ad', json_edit('adapter_config.json', lambda c: c['lora_parameters'].update(keys=['self_attn.q_proj']))),
      msg=('adapters.safetensors',), why='weights for layers the config does not adapt'),
    C('adapter_of_another_model', [*GEN, '--adapter-path', '$V'], None, msg=('adapters.safetensors',),
      why='adapters trained on a 128-wide model, loaded on a 64-wide one'),
    C('adapter_no_train_test_missing', [*TEST_ONLY, '--adapter-path', 'nope'], None, msg=('nope',)),
    C('adapter_no_train_test_garbage', [*TEST_ONLY, '--adapter-path', 'ad'],
      copy_of('A', 'ad', write('adapter_config.json', 'garbage')), msg=('adapter_config.json',)),
    C('adapter_no_train_test_truncated', [*TEST_ONLY, '--adapter-path', 'ad'], copy_of('A', 'ad', truncate('adapters.safetensors', 0.9)),
      msg=('adapters.safetensors',)),
    C('adapter_fuse_missing', [*FUSE, '--adapter-path', 'nope'], None, msg=('nope',)),
    C('adapter_fuse_other_rank', [*FUSE, '--adapter-path', 'ad'],
      copy_of('A', 'ad', json_edit('adapter_config.json', lambda c: c['lora_parameters'].update(rank=2))),
      msg=('adapters.safetensors',)),
    C('adapter_fuse_config_garbage', [*FUSE, '--adapter-path', 'ad'], copy_of('A', 'ad', write('adapter_config.json', '{')),
      msg=('adapter_config.json',)),

    # --- checkpoints (--resume-from)
    C('ckpt_missing', [*RESUME, '--resume-from', 'nope'], None, msg=('nope',)),
    C('ckpt_empty_dir', [*RESUME, '--resume-from', 'ck'], lambda d, s: (d/'ck').mkdir(), msg=('ck',)),
    C('ckpt_is_a_file', [*RESUME, '--resume-from', 'ck'], files({'ck': 'x'}), msg=('ck',)),
    C('ckpt_state_empty', [*RESUME, '--resume-from', 'ck'], lambda d, s: _ckpt(d, s, write('trainer_state.json', '')),
      msg=('trainer_state.json',)),
    C('ckpt_state_garbage', [*RESUME, '--resume-from', 'ck'], lambda d, s: _ckpt(d, s, write('trainer_state.json', '{"step": 1,')),
      msg=('trainer_state.json',)),
    C('ckpt_state_not_object', [*RESUME, '--resume-from', 'ck'], lambda d, s: _ckpt(d, s, write('trainer_state.json', '[]')),
      msg=('trainer_state.json',)),
    C('ckpt_state_missing_keys', [*RESUME, '--resume-from', 'ck'], lambda d, s: _ckpt(d, s, write('trainer_state.json', '{}')),
      msg=('trainer_state.json',)),
    C('ckpt_state_step_string', [*RESUME, '--resume-from', 'ck'],
      lambda d, s: _ckpt(d, s, json_edit('trainer_state.json', lambda c: c.update(step='one'))), msg=('trainer_state.json', 'step')),
    C('ckpt_adapters_truncated', [*RESUME, '--resume-from', 'ck'], lambda d, s: _ckpt(d, s, truncate('adapters.safetensors')),
      msg=('adapters.safetensors',)),
    C('ckpt_optimizer_missing', [*RESUME, '--resume-from', 'ck'], lambda d, s: _ckpt(d, s, remove('optimizer.safetensors')),
      msg=('optimizer.safetensors',)),
    C('ckpt_adapter_config_garbage', [*RESUME, '--resume-from', 'ck'], lambda d, s: _ckpt(d, s, write('adapter_config.json', '{')),
      msg=('adapter_config.json',)),
    C('ckpt_past_the_end', [*RESUME[:6], '1', *RESUME[7:], '--resume-from', '$A/checkpoint-2'], None, msg=('checkpoint-2', opt('iters')),
      why='a checkpoint at step 2 of a run now asked to stop at step 1'),
    C('ckpt_state_step_negative', [*RESUME, '--resume-from', 'ck'],
      lambda d, s: _ckpt(d, s, json_edit('trainer_state.json', lambda c: c.update(step=-3))), msg=('trainer_state.json', 'step')),
    C('ckpt_of_another_run', [*RESUME, '--batch-size', '4', '--resume-from', '$A/checkpoint-1'], None,
      msg=('checkpoint-1', opt('batch_size'))),
    C('ckpt_of_another_rank', [*RESUME, '--r', '8', '--resume-from', '$A/checkpoint-1'], None,
      msg=('checkpoint-1',)),
    C('ckpt_of_another_model', [*RESUME[:2], '$W', *RESUME[3:], '--resume-from', '$A/checkpoint-1'], None,
      msg=('checkpoint-1',)),

    # --- generate
    C('gen_max_tokens_zero', [*GEN[:3], '--max-tokens', '0'], None, msg=(opt('max_tokens'),)),
    C('gen_max_tokens_negative', [*GEN[:3], '--max-tokens', '-5'], None, msg=(opt('max_tokens'),)),
    C('gen_temp_negative', [*GEN, '--temp', '-1'], None, msg=(opt('temp'),)),
    C('gen_temp_nan', [*GEN, '--temp', 'nan'], None, msg=(opt('temp'),)),
    C('gen_top_p_two', [*GEN, '--top-p', '2'], None, msg=(opt('top_p'),), forbid=('unrecognized',),
      why="mlx-lm's flag, with a value out of (0, 1]"),
    C('gen_seed_negative', [*GEN, '--temp', '0.5', '--seed', '-1'], None, msg=(opt('seed'),)),
    C('gen_top_k_negative', [*GEN, '--temp', '0.5', '--top-k', '-1'], None, msg=(opt('top_k'),)),
    C('gen_min_p_two', [*GEN, '--temp', '0.5', '--min-p', '2'], None, msg=(opt('min_p'),)),
    C('gen_adapter_base_model_missing', ['generate', '--adapter-path', 'ad', '--max-tokens', '2'],
      copy_of('A', 'ad', json_edit('adapter_config.json', lambda c: c.update(model='/nonexistent/base-model'))),
      msg=('/nonexistent/base-model',), why='no --model: the base model recorded with the adapters is gone'),
    C('gen_unknown_flag', [*GEN, '--bogus'], None, msg=('--bogus',)),
    C('gen_system_without_template', ['generate', '--model', 'notemplate', '--max-tokens', '2', '--system-prompt', 'Be brief.'],
      both(copy_of('M', 'notemplate', json_edit('tokenizer_config.json', lambda c: c.pop('chat_template', None))),
           lambda d, s: [f.unlink() for f in (d/'notemplate').glob('chat_template.*')]),
      msg=(('system', 'System'), 'template')),
    C('gen_config_unknown_key', [*GEN, '-c', 'g.yaml'], files({'g.yaml': 'max_token: 5\n'}), msg=('g.yaml', 'max_token')),

    # --- fuse
    C('fuse_save_path_is_model_dir', ['fuse', '--model', 'mymodel', '--adapter-path', '$A', '--save-path', 'mymodel'],
      copy_of('M', 'mymodel'), msg=(opt('save_path'), 'mymodel'), why='would overwrite the model being read'),
    C('fuse_save_path_is_model_dir_spelt_otherwise', ['fuse', '--model', 'mymodel', '--adapter-path', '$A', '--save-path', './mymodel/'],
      copy_of('M', 'mymodel'), msg=(opt('save_path'),)),
    C('fuse_save_path_is_adapter_dir', ['fuse', '--model', '$M', '--adapter-path', 'ad', '--save-path', 'ad'],
      copy_of('A', 'ad'), msg=(opt('save_path'), 'ad')),
    C('fuse_save_path_is_a_file', [*FUSE[:3], '--adapter-path', '$A', '--save-path', 'out.txt'], files({'out.txt': 'mine\n'}),
      msg=('out.txt',)),
    C('fuse_export_gguf_unknown_type', [*FUSE, '--adapter-path', '$A', '--export-gguf', '--gguf-type', 'q3'], None,
      msg=(opt('gguf_type'), 'q3', 'q4_k_m'), forbid=('unrecognized',), why='the types that exist are listed'),
    C('fuse_gguf_type_without_export', [*FUSE, '--adapter-path', '$A', '--gguf-type', 'q8_0'], None, msg=(opt('gguf_type'),),
      why='an option that does nothing must not be accepted silently'),
    C('fuse_upload_repo_offline', [*FUSE, '--adapter-path', '$A', '--upload-repo', 'someone/fused'], None,
      msg=('someone/fused',), forbid=('unrecognized',), writes=('fused',)),
    C('fuse_gguf_path_without_export', [*FUSE, '--adapter-path', '$A', '--gguf-path', 'model.gguf'], None, msg=(opt('gguf_path'),),
      why='an option that does nothing must not be accepted silently'),
    C('fuse_hf_path_without_upload', [*FUSE, '--adapter-path', '$A', '--hf-path', 'someone/base'], None, msg=(opt('hf_path'),)),
    C('fuse_dtype_bogus', [*FUSE, '--adapter-path', '$A', '--dtype', 'half'], None, msg=(opt('dtype'), 'half')),
    C('fuse_unknown_flag', [*FUSE, '--adapter-path', '$A', '--de-quantize-everything'], None, msg=('--de-quantize-everything',)),

    # --- quant
    C('quant_no_method', ['quant'], None, msg=('rtn',)),
    C('quant_unknown_method', ['quant', 'bogus', '--model', '$M'], None, msg=('bogus',)),
    C('quant_flag_before_method', ['quant', '--model', '$M', 'rtn'], None, msg=('rtn',)),
    C('quant_bad_bits', [*QUANT_RTN, '--bits', '7'], None, msg=(opt('bits'), '7')),
    C('quant_bad_group_size', [*QUANT_RTN, '--group-size', '48'], None, msg=(opt('group_size'), '48')),
    C('quant_bad_mode', [*QUANT_RTN, '--mode', 'int4'], None, msg=(opt('mode'), 'int4')),
    C('quant_gptq_without_data', QUANT_GPTQ[:4] + QUANT_GPTQ[6:], None, msg=('--data',)),
    C('quant_gptq_mode_mxfp4', [*QUANT_GPTQ, '--mode', 'mxfp4', '--group-size', '32'], CAL, msg=('gptq', 'mxfp4')),
    C('quant_data_missing', [*QUANT_GPTQ[:5], 'nope.txt', *QUANT_GPTQ[6:]], None, msg=('nope.txt',)),
    C('quant_data_invalid_jsonl', [*QUANT_GPTQ[:5], 'cal.jsonl', *QUANT_GPTQ[6:]],
      files({'cal.jsonl': '{"text": "fine"}\n{"text": \n'}), msg=('cal.jsonl:2',)),
    C('quant_data_empty_text', [*QUANT_GPTQ[:5], 'empty.txt', *QUANT_GPTQ[6:]], files({'empty.txt': ''}), msg=('empty.txt',)),
    C('quant_num_samples_zero', [*QUANT_GPTQ, '--num-samples', '0'], CAL, msg=(opt('num_samples'),)),
    C('quant_seq_len_zero', [*QUANT_GPTQ, '--seq-len', '0'], CAL, msg=(opt('seq_len'),)),
    C('quant_batch_size_zero', [*QUANT_GPTQ, '--batch-size', '0'], CAL, msg=(opt('batch_size'),)),
    C('quant_gptq_damp_negative', [*QUANT_GPTQ, '--damp', '-1'], CAL, msg=(opt('damp'),)),
    C('quant_dwq_loss_bogus', ['quant', 'dwq', *QUANT_GPTQ[2:], '--loss', 'mse'], CAL, msg=(opt('loss'), 'mse')),
    C('quant_dynamic_target_bpw_zero', ['quant', 'dynamic', '--model', '$M', '--data', 'cal.txt', '--save-path', 'q',
                                        '--target-bpw', '0', '--num-samples', '2', '--seq-len', '16'], CAL,
      msg=(opt('target_bpw') + ('bits per weight',),)),
    C('quant_save_path_is_model_dir', ['quant', 'rtn', '--model', 'mymodel', '--save-path', 'mymodel'], copy_of('M', 'mymodel'),
      msg=(opt('save_path'), 'mymodel')),
    C('quant_save_path_is_a_file', [*QUANT_RTN[:4], '--save-path', 'q.txt'], files({'q.txt': 'mine\n'}), msg=('q.txt',)),
    C('quant_dwq_init_bogus', ['quant', 'dwq', *QUANT_GPTQ[2:], '--init', 'hqq'], CAL, msg=(opt('init'), 'hqq')),
    C('quant_awq_max_shrink_too_big', ['quant', 'awq', *QUANT_GPTQ[2:], '--max-shrink', '1.5'], CAL, msg=(opt('max_shrink'),)),
    C('quant_dynamic_bit_choices_bad', ['quant', 'dynamic', '--model', '$M', '--data', 'cal.txt', '--save-path', 'q',
                                        '--bit-choices', '7', '--num-samples', '2', '--seq-len', '16'], CAL, msg=(opt('bit_choices'), '7')),
    C('quant_model_missing', ['quant', 'rtn', '--model', 'nomodel', '--save-path', 'q'], None, msg=('nomodel',)),
]

# ---------------------------------------------------------------------------------------------------------------
# Judging a run

ERROR_LINE = re.compile(r'^mlxtune(?: [\w-]+)*: error: ')
OUTCOMES = ('refused cleanly', 'accepted', 'traceback', 'crashed', 'silently accepted', 'wrong exit code',
            'wrong message', 'modified input', 'skipped')

def error_lines(stderr:str)->list[str]: return [l for l in stderr.splitlines() if ERROR_LINE.match(l)]

def _short(paths, case, tops):
    "Paths relative to the case directory (for new files: only the top-level entries), at most 6."
    pre, out = f'cases/{case.name}/', []
    rel = [p[len(pre):] if p.startswith(pre) else p for p in paths]
    for q in rel:
        if tops and '/' not in q and any(x.startswith(q + '/') for x in rel): continue   # shown as its files' folder
        if tops: q = q.split('/')[0] + ('/' if '/' in q else '')
        if q not in out: out.append(q)
    return out[:6] + (['...'] if len(out) > 6 else [])

def judge(case:Case, r:dict, shared:dict|None=None)->tuple[str, list[str]]:
    "What the run `r` (a result of the worker) did, and what is wrong with it: `(outcome, problems)`."
    if r.get('skipped'): return 'skipped', []
    if r.get('crashed'): return 'crashed', [r['crashed']]
    probs, outcome = [], None
    err = r.get('stderr', '')
    internal = [l for l in err.splitlines() if ': internal error: ' in l]
    if r.get('exc') or 'Traceback (most recent call last)' in err or internal:
        e = r.get('exc') or {}
        probs.append(f"traceback {e.get('type', '(in stderr)')} in {e.get('where', '?')}: {e.get('msg', '')}"[:300]
                     if e or not internal else internal[0][:300])
        outcome = 'traceback'
    elif r['code'] != case.code:
        outcome = 'silently accepted' if r['code'] == 0 else 'wrong exit code'
        probs.append(f"exit {r['code']}, expected {case.code}" + (' (accepted silently)' if r['code'] == 0 else ''))
    lines = [l for l in err.splitlines() if l.strip()]
    errs = error_lines(err)
    if case.code == 0:
        if errs: probs.append(f'an error line in an accepted run: {errs[0]}'); outcome = outcome or 'wrong message'
    elif r['code'] != 0 and not r.get('exc'):
        line = errs[-1] if errs else ''
        exp = [_expand(m, shared or {}, Path(r.get('dir', ''))) for m in case.msg]
        missing = [m for m in exp if not any(a in line for a in (m if isinstance(m, tuple) else (m,)))]
        bad = []
        if len(errs) != 1: bad.append(f'{len(errs)} lines of the form "mlxtune CMD: error: ..." (want exactly one)')
        elif lines[-1] != line: bad.append(f'more text after the error line: {lines[-1][:100]!r}')
        if missing: bad.append('the error line lacks ' + ', '.join(repr(m) for m in missing))
        found = [f for f in case.forbid if f in line]
        if found: bad.append('the error line has ' + ', '.join(repr(f) for f in found))
        if bad: probs += bad; outcome = outcome or 'wrong message'
    if r.get('changed'):
        probs.append('inputs modified: ' + ', '.join(_short(r['changed'], case, False))); outcome = outcome or 'modified input'
    if r.get('new'):
        probs.append('files written: ' + ', '.join(_short(r['new'], case, True))); outcome = outcome or 'modified input'
    return outcome or ('accepted' if case.code == 0 else 'refused cleanly'), probs

# ---------------------------------------------------------------------------------------------------------------
# Running the corpus

def run_corpus(root:Path, cases=None, timeout:float=1500, log=None)->dict:
    "Run `cases` (all) in worker processes under `root`; `{name: result}`. A worker that dies is restarted after the case it died in."
    cases = CASES if cases is None else cases
    root = Path(root); root.mkdir(parents=True, exist_ok=True)
    remaining, results, n, t0 = [c.name for c in cases], {}, 0, time.time()
    while remaining:
        n += 1
        out, wlog = root/f'results-{n}.jsonl', root/f'worker-{n}.log'
        out.unlink(missing_ok=True)
        env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'MPLBACKEND': 'Agg'}
        with open(wlog, 'w') as f:
            try: rc = subprocess.run([sys.executable, str(WORKER), str(root), str(out), *remaining], stdout=f, stderr=subprocess.STDOUT,
                                     env=env, timeout=max(60, timeout - (time.time() - t0))).returncode
            except subprocess.TimeoutExpired: rc = 'timeout'
        current = None
        for line in (out.read_text().splitlines() if out.exists() else []):
            ev = json.loads(line)
            if ev['event'] == 'start': current = ev['name']
            elif ev['event'] == 'result': results[ev['name']] = ev; current = None
            elif ev['event'] == 'setup_failed': raise RuntimeError(f"building the shared inputs failed:\n{ev['error']}")
        tail = wlog.read_text()[-1500:]
        if current is None and rc != 0:
            raise RuntimeError(f'the corpus worker failed (exit {rc}) outside any case:\n{tail}')
        if current is not None:
            results[current] = {'name': current, 'crashed': f'the worker died in this case (exit {rc}): {tail[-600:]}'}
            if rc == 'timeout': break
        remaining = [x for x in remaining if x not in results]
        if log: log(f'worker {n}: {len(results)} cases done, {time.time() - t0:.0f}s')
    for x in remaining: results[x] = {'name': x, 'crashed': 'not run: the corpus ran out of time'}
    return results

def shared_paths(root:Path)->dict:
    s = Path(root)/'shared'
    return {'M': s/'model', 'W': s/'model_wide', 'D': s/'data', 'A': s/'run', 'V': s/'run_wide'}

def report(results:dict, cases=None, shared=None)->tuple[str, list]:
    "The summary table and the failing cases: `(text, [(name, outcome, problems, stderr)])`."
    cases = CASES if cases is None else cases
    counts, failing = {o: 0 for o in OUTCOMES}, []
    for c in cases:
        r = results[c.name]
        outcome, probs = judge(c, r, shared)
        counts[outcome] += 1
        if probs: failing.append((c.name, outcome, probs, r.get('stderr', '')))
    width = max(map(len, OUTCOMES))
    skipped = [f"{c.name} ({results[c.name]['skipped']})" for c in cases if results[c.name].get('skipped')]
    text = f'{len(cases)} malformed-input cases, {len(cases) - len(failing)} as intended:\n' + \
           '\n'.join(f'  {o:<{width}} {n:4d}' for o, n in counts.items() if n) + \
           ''.join(f'\n  skipped: {x}' for x in skipped)
    return text, failing

def failure_text(failing)->str:
    out = []
    for name, outcome, probs, err in failing:
        out.append(f'- {name} [{outcome}]: ' + '; '.join(' '.join(p.split()) for p in probs))
        tail = '\n'.join(l for l in err.strip().splitlines()[-3:])
        if tail and outcome != 'traceback': out.append('    stderr: ' + tail[-300:].replace('\n', '\n            '))
    return '\n'.join(out)

if __name__ == '__main__':
    import argparse, tempfile
    ap = argparse.ArgumentParser(description='Run the malformed-input corpus and print the report.')
    ap.add_argument('names', nargs='*', help='cases to run (default all); a name ending in * is a prefix')
    ap.add_argument('--root', help='working directory (default: a temporary one)')
    a = ap.parse_args()
    sel = [c for c in CASES if not a.names or any(c.name == n or (n.endswith('*') and c.name.startswith(n[:-1])) for n in a.names)]
    root = Path(a.root or tempfile.mkdtemp(prefix='bad_inputs-'))
    t = time.time()
    res = run_corpus(root, sel, log=print)
    text, failing = report(res, sel, shared_paths(root))
    print(text, f'\n({time.time() - t:.0f}s, in {root})\n')
    print(failure_text(failing))
