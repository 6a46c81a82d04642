"""LoRA through peft: targets, trainable parameters, the update by hand, merging."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("peft")

from polytask.methods.finetuning.lora import apply_lora, lora_targets, merge_lora  # noqa: E402


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_default_targets_and_trainable_count():
    model = apply_lora(mlp(), r=2, alpha=4)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # r (in + out) per Linear: 2 (4 + 3) + 2 (3 + 2) = 24
    assert trainable == 24
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_lora_update_by_hand():
    base = mlp()
    model = apply_lora(mlp(), r=2, alpha=4, target_modules=["0"])
    layer = model[0]
    a = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])  # r x in
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # out x r
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(a)
        layer.lora_B["default"].weight.copy_(b)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    # delta = (alpha / r) B A x = 2 * B [1, 2] = 2 * [1, 2, 3] = [2, 4, 6]
    torch.testing.assert_close(layer(x) - base[0](x), torch.tensor([[2.0, 4.0, 6.0]]))
    assert isinstance(model[2], nn.Linear) and not model[2].weight.requires_grad  # not a target: frozen


def test_merge_gives_plain_module_with_equal_outputs():
    model = apply_lora(mlp(), r=2, alpha=8)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "lora_B"):
                m.lora_B["default"].weight.normal_()
    x = torch.randn(5, 4)
    before = model(x)
    merged = merge_lora(model)
    assert [type(m) for m in merged] == [nn.Linear, nn.ReLU, nn.Linear]
    assert not any("lora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(merged(x), before)


def test_conv2d_is_adapted():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 2 * 2, 2))
    apply_lora(net, r=1, alpha=1)
    # conv: A is Conv2d(2 -> 1, 3x3) = 18, B is Conv2d(1 -> 3, 1x1) = 3; linear: 1 (12 + 2) = 14
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 18 + 3 + 14


def test_unknown_target_lists_adaptable_layers():
    with pytest.raises(ValueError, match=r"LoRA target 'fc' matches no module \(adaptable: 0, 2\)"):
        apply_lora(mlp(), target_modules=["fc"])
    with pytest.raises(ValueError, match="not nn.Linear or nn.Conv2d"):
        lora_targets(mlp(), ["1"])
    with pytest.raises(ValueError, match="rank r must be an integer >= 1"):
        apply_lora(mlp(), r=0)


def test_suffix_targets_resolve_to_full_names():
    net = nn.Module()
    net.block, net.head = nn.Module(), nn.Module()
    net.block.fc, net.head.fc, net.head.out = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    assert lora_targets(net, ["fc"]) == ["block.fc", "head.fc"]
    assert lora_targets(net, ["head.out", "block.fc"]) == ["head.out", "block.fc"]
    apply_lora(net, r=1, target_modules=["fc"])
    assert isinstance(net.head.out, nn.Linear)  # only the resolved layers are adapted
    assert hasattr(net.block.fc, "lora_A") and hasattr(net.head.fc, "lora_A")
