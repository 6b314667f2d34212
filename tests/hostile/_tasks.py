"""Task files a careless or hostile user writes: written into each test's folder as ``tasks.py``."""

SOURCE = '''
import torch
import slimkit
from torch import nn


def _data(n=32, shift=0):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return slimkit.Batches({"input": x}, (x[:, 0] > 0).long() + shift, batch_size=8)


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, input):
        raise RuntimeError("boom from my forward")


def _task(name, model=None, **kw):
    torch.manual_seed(0)
    return slimkit.Task(name, model if model is not None else nn.Linear(4, 2), train_data=_data(), **kw)


def ok():
    return _task("ok")


def raises():
    return _task("raises", Boom())


def nan_metric():
    return _task("nan", metric=slimkit.Metric("m", lambda o, t: float("nan")))


def raising_metric():
    return _task("rm", metric=slimkit.Metric("m", lambda o, t: 1 / 0))


def tensor_metric():
    return _task("tm", metric=slimkit.Metric("m", lambda o, t: (o.argmax(1) == t).float()))


def string_metric():
    return _task("sm", metric=slimkit.Metric("m", lambda o, t: "high"))


def empty():
    return slimkit.Task("empty", nn.Linear(4, 2), train_data=slimkit.Batches({"input": torch.zeros(0, 4)},
                        torch.zeros(0, dtype=torch.long), batch_size=8))


def bad_labels():
    return slimkit.Task("bl", nn.Linear(4, 2), train_data=_data(shift=5))


def factory_raises():
    raise ValueError("my factory is broken")


def returns_none():
    return None


def nan_output():
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    return _task("nanout", model)


def not_a_module():
    return slimkit.Task("nm", 42, train_data=_data())


def wrong_inputs():
    return slimkit.Task("wi", nn.Linear(7, 2), train_data=_data())
'''
