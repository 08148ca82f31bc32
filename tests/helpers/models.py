"""Model set-up shared by the model, deploy and export tests."""
import torch


def randomise_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics and affine terms and layer scales of ~0.75 (timm's or ours): so that
    eval-mode normalisation and folding are really compared, and the blocks' (1e-6-scaled) branches count."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
        if isinstance(getattr(m, 'gamma', None), torch.nn.Parameter):
            m.gamma.data.uniform_(0.5, 1.0)
    return model
