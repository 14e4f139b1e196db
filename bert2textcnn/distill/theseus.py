"""BERT-of-Theseus (Xu et al. 2020; ``001``): module replacement between a frozen, fine-tuned BERT
(the predecessor) and a smaller one (the successor).

The predecessor's n layers form m modules of n/m consecutive layers; successor layer i stands in
for module i. During the replacement stage each module's output is mixed with its successor
layer's, fed the same input:

    bernoulli:     ε_i ~ Bernoulli(p) per module and step;  out_i = ε_i·S_i(x) + (1 − ε_i)·P_i(x)
    proportional:  out_i = k·P_i(x) + (1 − k)·S_i(x)        (``003``: stable where ε is not)

The predecessor runs its own forward (embeddings, pooler, classifier included); forward hooks on
each module's first and last layer capture the module's input and swap its output, so the
successor layer is called exactly as the predecessor's layers are, whatever the transformers
version's calling convention.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from bert2textcnn.distill.options import TheseusOptions
from bert2textcnn.errors import UserError


def successor_shares(options: TheseusOptions, batches_done: int, stage_batches: int, modules: int) -> torch.Tensor:
    """Each module's successor share for this step: 1 = the successor's output alone, 0 = the
    predecessor's; Bernoulli draws use the global generator (seeded per epoch)."""
    if options.replacement == "proportional":
        k = options.proportion
        if options.anneal_proportion:
            k *= max(0.0, 1 - batches_done / max(1, stage_batches))
        return torch.full((modules,), 1 - k)
    p = replace_probability(options, batches_done)
    return (torch.rand(modules) < p).float()


def replace_probability(options: TheseusOptions, batches_done: int) -> float:
    """p = min(1, slope·t + rate): constant when the slope is 0."""
    return min(1.0, options.replace_slope * batches_done + options.replace_rate)


@contextmanager
def replaced_modules(
    predecessor_layers: Sequence[nn.Module], successor_layers: Sequence[nn.Module], shares: torch.Tensor
) -> Iterator[None]:
    """Within the block, the predecessor's forward mixes module i's output with successor layer i's:
    ``shares[i]``·S_i(x) + (1 − ``shares[i]``)·P_i(x). A share of 0 leaves the successor unrun."""
    size = module_size(len(predecessor_layers), len(successor_layers))
    handles = []
    for i, successor in enumerate(successor_layers):
        first, last = predecessor_layers[i * size], predecessor_layers[(i + 1) * size - 1]
        share = float(shares[i])
        seen: dict[str, Any] = {}

        def keep_input(module: nn.Module, args: tuple, kwargs: dict, seen: dict = seen) -> None:
            seen["args"], seen["kwargs"] = args, kwargs

        def mix_output(
            module: nn.Module, args: tuple, kwargs: dict, output: Any, seen: dict = seen, share: float = share,
            successor: nn.Module = successor,
        ) -> Any:  # fmt: skip
            if share == 0:
                return output
            replaced = hidden(successor(*seen["args"], **seen["kwargs"]))
            mixed = replaced if share == 1 else share * replaced + (1 - share) * hidden(output)
            return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

        handles.append(first.register_forward_pre_hook(keep_input, with_kwargs=True))
        handles.append(last.register_forward_hook(mix_output, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def module_size(predecessor_layers: int, successor_layers: int) -> int:
    """Predecessor layers per module: m successor layers must divide the predecessor's n."""
    if successor_layers < 1 or predecessor_layers % successor_layers:
        raise UserError(
            f"--model.student_layers must divide the teacher's {predecessor_layers} layers (each successor "
            f"layer replaces a module of n/m of them), got {successor_layers}"
        )
    return predecessor_layers // successor_layers


def hidden(output: Any) -> torch.Tensor:
    """A layer's hidden states: transformers 5 returns them bare, 4 as the first of a tuple."""
    return output[0] if isinstance(output, tuple) else output
