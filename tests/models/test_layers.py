"""backbones.models.layers against timm's namesakes: the same numbers on the same seed, so the model computes
what it computed on timm's layers (and its converted checkpoints still match timm's forward)."""
import pytest
import torch

from backbones.models import layers


def test_drop_path_draws_as_timm():
    from timm.layers import DropPath
    x = torch.randn(64, 8, 5, 5)
    for p, scale in ((0.3, True), (0.5, False), (1.0, True), (0.0, True)):
        ours, theirs = layers.DropPath(p, scale).train(), DropPath(p, scale).train()
        torch.manual_seed(0)
        a = ours(x)
        torch.manual_seed(0)
        b = theirs(x)
        assert torch.equal(a, b), p
        assert repr(ours) == repr(theirs)
    assert layers.DropPath(0.3).eval()(x) is x


def test_layer_norm_2d_and_init_as_timm():
    from timm.layers import LayerNorm2d, trunc_normal_
    ours, theirs = layers.LayerNorm2d(16), LayerNorm2d(16)
    with torch.no_grad():
        for p in (ours.weight, ours.bias):
            p.normal_()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 16, 7, 9)
    assert torch.equal(ours(x), theirs(x))
    assert ours.eps == theirs.eps == 1e-6 and ours.state_dict().keys() == theirs.state_dict().keys()
    a, b = torch.empty(300, 40), torch.empty(300, 40)
    torch.manual_seed(1)
    layers.trunc_normal_(a, std=.02)
    torch.manual_seed(1)
    trunc_normal_(b, std=.02)
    assert torch.equal(a, b)


@pytest.mark.parametrize('arch', ['atto', 'convnext_tiny'])
def test_model_in_training_equals_on_timms_layers(arch, monkeypatch):
    """A model built on timm's layers (the layers module patched) computes the same training forward, drop
    path draws included."""
    import timm.layers

    from backbones.models import inceptionnext
    from backbones.models.ops import fast_block
    kw = dict(drop_path_rate=0.3, fast_path=False)
    torch.manual_seed(0)
    ours = inceptionnext.InceptionNeXt(arch, **kw).train()
    monkeypatch.setattr(inceptionnext, 'DropPath', timm.layers.DropPath)
    monkeypatch.setattr(fast_block, 'DropPath', timm.layers.DropPath)
    torch.manual_seed(0)
    theirs = inceptionnext.InceptionNeXt(arch, **kw).train()
    assert any(type(m) is timm.layers.DropPath for m in theirs.modules())
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(3)
    a = ours(x)
    torch.manual_seed(3)
    b = theirs(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
