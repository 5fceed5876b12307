"""The mean-pooled classification head reads the mean of the non-padding token states."""

from __future__ import annotations

import torch

from trainers.heads import get_format
from trainers.tasks import get_task


def test_mean_pooling_ignores_padding_and_feeds_xlmr_head(tiny_encoder):
    fmt = get_format("classification")
    task = get_task("nli")
    torch.manual_seed(0)
    model = fmt.build_model(task, tiny_encoder, pooling="mean").eval()
    cls = fmt.build_model(task, tiny_encoder, pooling="cls").eval()
    ids = torch.tensor([[0, 10, 11, 12, 2]])
    padded = torch.tensor([[0, 10, 11, 12, 2, 1, 1]])
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        pads = model(input_ids=padded, attention_mask=(padded != 1).long()).logits
        states = model.roberta(ids).last_hidden_state
        by_hand = model.classifier(states.mean(1, keepdim=True))
    assert torch.allclose(plain, pads, atol=1e-5)  # padding changes nothing
    assert torch.allclose(plain, by_hand, atol=1e-6)  # XLM-R's head on the mean state
    cls.classifier.load_state_dict(model.classifier.state_dict())
    with torch.no_grad():
        first = cls.classifier(cls.roberta(ids).last_hidden_state)  # the <s> state
    assert not torch.allclose(plain, first, atol=1e-3)
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([1])).loss
    assert loss.item() == torch.nn.functional.cross_entropy(plain, torch.tensor([1])).item()
