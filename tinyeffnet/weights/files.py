"""Published weights files: timm's and the Hugging Face hub's `model.safetensors`.

They hold PyTorch state dicts (tensors named `conv_stem.weight`, `blocks.0.0.bn1.running_var`,
...), read and written as raw bytes by tinyeffnet._safetensors (`Record`: the header's
dtype code, shape, bytes), so whatever is read can be written back byte for byte. This
module adds what is particular to foreign files: their errors, and refusing PyTorch's own
pickle files (.pth, .bin), since unpickling can run code.
"""
from .. import _safetensors
from .._safetensors import Record  # noqa: F401  (what callers build state dicts from)


PICKLE_ADVICE = ("tinyeffnet never unpickles (loading a pickle can run code); download the model.safetensors of the "
                 "same weights, or save them with safetensors.torch.save_file")


class WeightsError(ValueError):
    """A weights file that cannot be read, converted or written as asked; the message is
    one line naming the file, the first thing that does not fit, and the fix."""


def read_state_dict(path):
    """({name: Record}, the file's metadata dict or None) of a safetensors state dict."""
    try:
        return _safetensors.read(path)
    except _safetensors.SafetensorsError as e:
        if _safetensors.is_pickle(path):
            raise WeightsError(f"{path} is a PyTorch pickle (torch.save), not safetensors: {PICKLE_ADVICE}") from None
        raise WeightsError(f"{path} is not a readable safetensors file ({e})") from None


def write_state_dict(path, records, metadata=None):
    """Write a safetensors state dict atomically: nothing appears at `path` unless all of it does."""
    return _safetensors.write(path, _safetensors.serialize(records, metadata))
