"""Where QLoRA's time and memory go: one LoRA linear layer, forward + backward, bf16 base vs quantized base.

For each layer shape of a model (q/k/v/o, gate/up/down) and a token count, times (median of `--repeats`):
  fwd      y = base(x) + scale * (x @ A) @ B
  fwd+bwd  the same plus gradients w.r.t. A, B and x (what a LoRA step needs: the base gets no gradient)
and the parts: the base product forward (x @ W.T) and its input-gradient product (g @ W), bf16 vs quantized
(`mx.quantized_matmul` with transpose=True / False), and the alternative: dequantize the weight, then a bf16 product.

    python bench/qmm_profile.py --shape llama-3.2-1b --tokens 2048 --bits 4 --group-size 64
"""
import argparse, time, json
import mlx.core as mx

from tuner_vs_mlxlm import SHAPES   # the published model shapes, shared with the benchmark harness

def layer_shapes(name):
    c = SHAPES[name]
    h, m, nh, nkv = c['hidden_size'], c['intermediate_size'], c['num_attention_heads'], c['num_key_value_heads']
    hd = c.get('head_dim', h // nh)
    return {'q_proj': (h, nh * hd), 'k_proj': (h, nkv * hd), 'v_proj': (h, nkv * hd), 'o_proj': (nh * hd, h),
            'gate_proj': (h, m), 'up_proj': (h, m), 'down_proj': (m, h)}

def timeit(f, repeats):
    mx.eval(f()); mx.synchronize()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); mx.eval(f()); mx.synchronize(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--shape', default='llama-3.2-1b', choices=list(SHAPES))
    ap.add_argument('--tokens', type=int, default=2048)
    ap.add_argument('--bits', type=int, default=4)
    ap.add_argument('--group-size', type=int, default=64)
    ap.add_argument('--rank', type=int, default=8)
    ap.add_argument('--repeats', type=int, default=20)
    a = ap.parse_args()
    dt = mx.bfloat16
    T, r = a.tokens, a.rank
    out = {'device': str(mx.default_device()), 'args': vars(a), 'layers': {}}
    tot = {k: 0.0 for k in ('mm', 'qmm', 'mm_T', 'qmm_T', 'deq_mm', 'step_bf16', 'step_q', 'step_deq', 'fwd_bf16', 'fwd_q', 'fwd_deq')}
    for name, (din, dout) in layer_shapes(a.shape).items():
        W = (mx.random.normal((dout, din)) * din ** -0.5).astype(dt)
        wq, s, b = mx.quantize(W, group_size=a.group_size, bits=a.bits)
        x = mx.random.normal((T, din)).astype(dt)
        g = mx.random.normal((T, dout)).astype(dt)
        A = (mx.random.normal((din, r)) * 0.01).astype(mx.float32)
        B = (mx.random.normal((r, dout)) * 0.01).astype(mx.float32)
        mx.eval(W, wq, s, b, x, g, A, B)
        qmm = lambda v, t: mx.quantized_matmul(v, wq, s, b, transpose=t, group_size=a.group_size, bits=a.bits)
        res = {
            'mm': timeit(lambda: x @ W.T, a.repeats),
            'qmm': timeit(lambda: qmm(x, True), a.repeats),
            'mm_T': timeit(lambda: g @ W, a.repeats),
            'qmm_T': timeit(lambda: qmm(g, False), a.repeats),
            'deq_mm': timeit(lambda: x @ mx.dequantize(wq, s, b, group_size=a.group_size, bits=a.bits).T, a.repeats),
        }
        def lora(base):
            def f(A, B, x):
                y = base(x) + 2.0 * ((x @ A.astype(dt)) @ B.astype(dt))
                return (y.astype(mx.float32) * g.astype(mx.float32)).sum()
            return f
        deq = lambda v: v @ mx.dequantize(wq, s, b, group_size=a.group_size, bits=a.bits).T
        for tag, base in (('bf16', lambda v: v @ W.T), ('q', lambda v: qmm(v, True)), ('deq', deq)):
            f = lora(base)
            vg = mx.value_and_grad(f, argnums=(0, 1, 2))
            res[f'fwd_{tag}'] = timeit(lambda: f(A, B, x), a.repeats)
            res[f'step_{tag}'] = timeit(lambda: vg(A, B, x), a.repeats)
        for k in tot: tot[k] += res[k]
        out['layers'][name] = {k: round(v * 1e3, 3) for k, v in res.items()}
        print(name, f'{din}x{dout}', ' '.join(f'{k} {v*1e3:.3f}ms' for k, v in res.items()), flush=True)
    print('block total:', ' '.join(f'{k} {v*1e3:.2f}ms' for k, v in tot.items()))
    print(f"ratios: qmm/mm {tot['qmm']/tot['mm']:.2f}  qmm_T/mm_T {tot['qmm_T']/tot['mm_T']:.2f}  "
          f"LoRA step q/bf16 {tot['step_q']/tot['step_bf16']:.2f}  fwd q/bf16 {tot['fwd_q']/tot['fwd_bf16']:.2f}  "
          f"dequantize+mm / mm {tot['deq_mm']/tot['mm']:.2f}  LoRA step dequantized/bf16 {tot['step_deq']/tot['step_bf16']:.2f}")
    out['block_ms'] = {k: round(v * 1e3, 3) for k, v in tot.items()}
    print(json.dumps(out))

if __name__ == '__main__':
    main()
