"mlxtune's quantized models against mlx-lm's (0.32): the same round-to-nearest weights, and each loads the other's."
import tempfile
from pathlib import Path
import mlx.core as mx
import mlx_lm
from mlx.utils import tree_flatten
from mlxtune.tiny import build_tiny_model
from mlxtune.quant.core import rtn_quantize, save_quantized

def test_rtn_equals_mlx_lm_quantize_model():
    from mlx_lm.utils import quantize_model, save_model, save_config
    d = build_tiny_model(tempfile.mkdtemp(), hidden_size=128, intermediate_size=256)
    for bits, gs, mode in [(4, 64, 'affine'), (3, 32, 'affine'), (6, 128, 'affine'), (4, 32, 'mxfp4')]:
        ours, tok, cfg = mlx_lm.load(str(d), return_config=True)
        rtn_quantize(ours, bits, gs, mode, fallback=False)
        peer, _, pcfg = mlx_lm.load(str(d), return_config=True)
        peer, pcfg = quantize_model(peer, pcfg, gs, bits, mode=mode)
        a, b = dict(tree_flatten(ours.parameters())), dict(tree_flatten(peer.parameters()))
        assert a.keys() == b.keys()
        for k in a: assert mx.array_equal(a[k], b[k]).item(), (bits, gs, mode, k)
        # mlx-lm's saved model loads through our loader, ours through mlx-lm's
        out = Path(tempfile.mkdtemp())
        save_model(out, peer, donate_model=False); save_config(pcfg, config_path=out/'config.json'); tok.save_pretrained(str(out))
        from mlxtune.adapters import load
        m, _ = load(str(out), dtype='keep')
        x = mx.array([[1, 2, 3, 4, 5]])
        assert mx.allclose(m(x), ours(x), atol=1e-4).item()
        m2, _ = mlx_lm.load(str(save_quantized(ours, tok, Path(tempfile.mkdtemp())/'q', cfg)))
        assert mx.allclose(m2(x), peer(x), atol=1e-4).item()
