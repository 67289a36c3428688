"""``Module``, ``Parameter`` and ``Sequential``: the containers every network is built from.

They follow ``torch.nn`` so a PyTorch user's habits carry over:

* assigning a ``Parameter`` or a ``Module`` to an attribute *registers* it
  (``self.conv1 = Conv2d(...)`` makes ``conv1.weight`` appear in ``parameters()``);
* ``register_buffer(name, array)`` registers state that is saved but not trained
  (batch norm's running statistics);
* ``named_parameters()`` / ``state_dict()`` use dotted names, ``layer1.0.conv1.weight``;
* ``train()`` / ``eval()`` set the ``training`` flag of every sub-module;
* ``model(x)`` calls ``forward(x)``.

Buffers are plain backend arrays (NumPy or CuPy), not Tensors: no gradient ever flows
into them, and ``F.batch_norm`` updates the running statistics in place.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ..backend import check_device, device_of, get_array_module, to_device
from ..engine import Tensor


class Parameter(Tensor):
    """A Tensor that is a trainable weight: ``requires_grad=True`` and registered by ``Module``.

    ``Parameter(data)`` keeps ``data``'s dtype (NumPy float32 stays float32).
    """

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class _RemovableHandle:
    """Returned by ``register_forward_hook``; ``handle.remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = _RemovableHandle._next_id
        _RemovableHandle._next_id += 1

    def remove(self):
        self._hooks.pop(self.id, None)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and network, as ``torch.nn.Module``.

    Subclasses call ``super().__init__()`` first, assign their layers and parameters as
    attributes, and define ``forward``::

        class TwoLayer(Module):
            def __init__(self):
                super().__init__()
                self.fc1 = Linear(4, 8)
                self.fc2 = Linear(8, 2)

            def forward(self, x):
                return self.fc2(self.fc1(x).relu())
    """

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these dictionaries to exist.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook):
        """Call ``hook(module, args, output)`` after every forward; a non-None return value
        replaces the output. Returns a handle whose ``remove()`` unregisters the hook.

        Handy for looking inside a network, e.g. recording each layer's responses.
        """
        handle = _RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------ registration
    def _registries(self):
        try:
            return self.__dict__["_parameters"], self.__dict__["_buffers"], self.__dict__["_modules"]
        except KeyError:
            raise AttributeError(
                f"cannot assign to {type(self).__name__} before Module.__init__() is called: "
                "call super().__init__() first in your __init__"
            ) from None

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            params, buffers, modules = self._registries()
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            params, buffers, modules = self._registries()
            self._forget(name)
            modules[name] = value
        elif name in self.__dict__.get("_parameters", ()):
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as parameter {name!r} of {type(self).__name__} "
                    "(minires.nn.Parameter or None expected)"
                )
            self._parameters[name] = None
        elif name in self.__dict__.get("_modules", ()):
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as child module {name!r} of {type(self).__name__} "
                    "(a Module or None expected)"
                )
            self._modules[name] = None
        elif name in self.__dict__.get("_buffers", ()):
            self._buffers[name] = _check_buffer(type(self).__name__, name, value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name):
        """Remove ``name`` from every registry and the instance dict (it is being re-assigned)."""
        for registry in self._registries():
            registry.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(registry, ()):
                del self.__dict__[registry][name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter, or None for an absent one such as ``bias=False``)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"register_parameter: {name!r} must be a minires.nn.Parameter or None, got {type(param).__name__}")
        params, _, _ = self._registries()
        self._forget(name)
        params[name] = param

    def register_buffer(self, name, array):
        """Register a non-trained array (e.g. running statistics): saved in ``state_dict``,
        moved by ``to(device)``, never returned by ``parameters()``."""
        _, buffers, _ = self._registries()
        array = _check_buffer(type(self).__name__, name, array)
        self._forget(name)
        buffers[name] = array

    def add_module(self, name, module):
        """Register ``module`` under ``name`` (same as ``setattr(self, name, module)``)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got {type(module).__name__}")
        _, _, modules = self._registries()
        self._forget(name)
        modules[name] = module

    # --------------------------------------------------------------- traversal
    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and every sub-module, parents first, each once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:  # an explicit stack: correct for any nesting depth
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs, e.g. ``('layer1.0.conv1.weight', p)``; shared ones once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, module in modules:
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, module in modules:
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module and on self (children first); returns self."""
        for m in reversed(list(self.modules())):
            fn(m)
        return self

    # ------------------------------------------------------------------ modes
    def train(self, mode=True):
        """Set training mode (``mode=True``) or evaluation mode on self and every sub-module.

        It changes what layers do: batch norm normalises with the batch's statistics and
        updates its running ones in training mode, and uses the running ones in eval mode.
        """
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        """Evaluation mode, same as ``train(False)``."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient: to None (PyTorch's default), or to zeros."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = get_array_module(p.grad).zeros_like(p.grad)

    # ---------------------------------------------------------- device, dtype
    def to(self, device=None, dtype=None):
        """Move parameters and buffers to ``device`` ('cpu'/'gpu') and/or cast their floating
        arrays to ``dtype``, *in place*: the Parameter objects stay the same, so an optimizer
        built before ``.to`` keeps working. ``model.to('gpu')``, ``model.to(dtype=np.float64)``.
        Returns self.
        """
        if device is not None and not isinstance(device, str):  # model.to(np.float64)
            device, dtype = None, device
        if device is not None:
            device = check_device(device)
        if dtype is not None:
            dtype = np.dtype(dtype)
            if not np.issubdtype(dtype, np.floating):
                raise TypeError(f"Module.to: dtype must be a floating-point type, got {dtype}")

        def convert(array):
            if device is not None:
                array = to_device(array, device)
            if dtype is not None and np.issubdtype(array.dtype, np.floating) and array.dtype != dtype:
                array = array.astype(dtype)
            return array

        for p in self.parameters():
            p.data = convert(p.data)
            if p.grad is not None:
                p.grad = convert(p.grad)
        for m in self.modules():
            for name, b in m._buffers.items():
                if b is not None:
                    m._buffers[name] = convert(b)
        return self

    def cpu(self):
        return self.to("cpu")

    def gpu(self):
        return self.to("gpu")

    def float(self):
        """Cast floating parameters and buffers to float32 (in place); returns self."""
        return self.to(dtype=np.float32)

    def double(self):
        """Cast floating parameters and buffers to float64 (in place), e.g. for gradcheck."""
        return self.to(dtype=np.float64)

    # ------------------------------------------------------------- state dict
    def state_dict(self):
        """An ordered ``{dotted name: array}`` of every parameter and buffer.

        The arrays are the live backend arrays (as PyTorch's state_dict shares storage):
        copy them (``{k: v.copy() ...}``) to keep a snapshot while training goes on, and
        use ``minires.backend.to_numpy`` on each before ``np.savez`` for a GPU model.
        """
        sd = OrderedDict()
        for mod_name, module in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    sd[prefix + name] = p.data
            for name, b in module._buffers.items():
                if b is not None:
                    sd[prefix + name] = b
        return sd

    def load_state_dict(self, state_dict, strict=True):
        """Copy the arrays of ``state_dict`` into this module's parameters and buffers.

        Values are written into the existing arrays, so each keeps its dtype and device and
        the Parameter objects stay the same; NumPy arrays load into a GPU model. ``state_dict``
        is any mapping of names to arrays or Tensors (an ``np.load``-ed ``.npz`` file works).

        Raises RuntimeError, before changing anything, listing every missing and unexpected
        key (when ``strict``) and every entry whose shape differs. Returns
        ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        own = self.state_dict()
        given = list(state_dict.keys())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in given if k not in own]
        errors, pairs = [], []
        for key in given:
            if key not in own:
                continue
            src = state_dict[key]
            src = src.data if isinstance(src, Tensor) else src
            dst = own[key]
            if not hasattr(src, "shape"):
                src = np.asarray(src)
            if tuple(src.shape) != tuple(dst.shape):
                errors.append(
                    f"size mismatch for {key}: copying an array with shape {tuple(src.shape)} from the "
                    f"state dict, the shape in the current model is {tuple(dst.shape)}"
                )
            elif not np.can_cast(src.dtype, dst.dtype, casting="same_kind"):
                errors.append(f"dtype mismatch for {key}: cannot copy {src.dtype} into the model's {dst.dtype}")
            else:
                pairs.append((dst, src))
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(repr(k) for k in unexpected) + ".")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(repr(k) for k in missing) + ".")
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors)
            )
        for dst, src in pairs:
            src = to_device(src, device_of(dst)) if device_of(src) != device_of(dst) else src
            dst[...] = src.astype(dst.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------- repr
    def extra_repr(self):
        """The text inside this module's parentheses in ``repr`` (layers override it)."""
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        if not self._modules:  # a leaf: one line
            return f"{type(self).__name__}({extra})"
        return type(self).__name__ + "(\n  " + "\n  ".join(lines) + "\n)"


def _check_buffer(owner, name, array):
    """A buffer must be a NumPy/CuPy array (or None)."""
    if array is None:
        return None
    if isinstance(array, Tensor):
        raise TypeError(
            f"{owner}: buffer {name!r} must be a NumPy or CuPy array, got a Tensor (use tensor.data); "
            "buffers are not part of the autograd graph"
        )
    if get_array_module(array) is np and not isinstance(array, np.ndarray):
        raise TypeError(f"{owner}: buffer {name!r} must be a NumPy or CuPy array, got {type(array).__name__}")
    return array


class Sequential(Module):
    """Modules applied one after the other: ``Sequential(conv, bn, relu)(x) == relu(bn(conv(x)))``.

    Children are named ``'0'``, ``'1'``, ... (or by an OrderedDict's keys), as in PyTorch.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} must be a Module, got {type(m).__name__}")
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():  # a loop, not recursion: 600 blocks are fine
            x = m(x)
        return x

    def append(self, module):
        """Add ``module`` at the end; returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(items) <= index < len(items):
            raise IndexError(f"Sequential: index {index!r} is out of range for {len(items)} modules")
        return items[int(index)][1]


__all__ = ["Parameter", "Module", "Sequential", "IncompatibleKeys"]
