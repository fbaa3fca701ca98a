"""The notebook controls in a real Jupyter kernel: a run started with `train_in_background` leaves the kernel free, its
status widget updates while it trains, and a click on Stop, sent as JupyterLab sends it (a comm message), stops it
gracefully with a checkpoint."""
import queue, re, time
import pytest

START = '''
import tempfile, os
from mlxtune.tiny import build_tiny_model, tiny_chat_data
from mlxtune.adapters import load
from mlxtune.data import DataArgs, load_split
from mlxtune.lora import LoraArgs, apply_lora
from mlxtune.trainer import TrainingArgs
from mlxtune.widgets import TrainingControls, LivePlot, train_in_background
model, tok = load(build_tiny_model(tempfile.mkdtemp()))
cfg = apply_lora(model, LoraArgs(r=4))
run_dir = tempfile.mkdtemp()
controls = TrainingControls()
run = train_in_background(model, load_split(tiny_chat_data(), tok, DataArgs()), None,
                          TrainingArgs(batch_size=8, iters=2000, learning_rate=1e-3, steps_per_report=10, adapter_path=run_dir),
                          adapter_config=cfg, callbacks=[controls, LivePlot()], log=None)
'''
WAIT = '''
hist = run.join(120)
print('LAST STEP', hist.train[-1]['step'], 'CHECKPOINTS', sorted(os.listdir(run_dir)))
print('STATUS', controls.status.value)
'''

def test_stop_button_in_a_real_kernel():
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name='python3')
    s = {'stop_id': None, 'statuses': [], 'out': '', 'errors': []}
    def handle(msg):
        t, c = msg['msg_type'], msg['content']
        if t == 'comm_open':
            st = c['data'].get('state', {})
            if st.get('_model_name') == 'ButtonModel' and st.get('description') == 'Stop': s['stop_id'] = c['comm_id']
        elif t == 'comm_msg' and c['data'].get('method') == 'update':
            v = c['data'].get('state', {}).get('value')
            if isinstance(v, str) and v.startswith(('step', 'finished')): s['statuses'].append(v)
        elif t == 'stream': s['out'] += c['text']
        elif t == 'error': s['errors'].append('\n'.join(c['traceback']))
    try:
        kc.execute_interactive(START, timeout=120, output_hook=handle)   # returns while the run goes on in its thread
        assert not s['errors'], s['errors']
        deadline, clicked = time.time() + 120, False
        while time.time() < deadline and not clicked:
            try: handle(kc.get_iopub_msg(timeout=1))
            except queue.Empty: continue
            m = re.match(r'step (\d+) of', (s['statuses'] or [''])[-1])
            if m and int(m.group(1)) >= 20 and s['stop_id']:
                # what JupyterLab sends when the button is clicked
                kc.shell_channel.send(kc.session.msg('comm_msg', {'comm_id': s['stop_id'], 'data': {'method': 'custom', 'content': {'event': 'click'}}}))
                clicked = True
        assert clicked, (s['stop_id'], s['statuses'][:3])
        kc.execute_interactive(WAIT, timeout=180, output_hook=handle)
        assert not s['errors'], s['errors']
        assert len({v for v in s['statuses'] if v.startswith('step')}) > 10, s['statuses'][:5]   # the status changed during training
        m = re.search(r'LAST STEP (\d+) CHECKPOINTS (.*)', s['out'])
        assert m, s['out']
        # the widget's final state, read in the kernel (its last comm update may carry the parent header of the cell
        # that started the run, which execute_interactive filters out)
        end = re.search(r'STATUS finished at step (\d+) \(stopped from the notebook\)', s['out'])
        assert end, (s['out'], s['statuses'][-3:])
        last = int(end.group(1))
        assert 20 <= last < 2000, last                         # stopped soon after the click, long before the end
        assert f"'checkpoint-{last}'" in m.group(2), s['out']   # with a checkpoint of the step it stopped at
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)
