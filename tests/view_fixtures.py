"""Reading the eval-view fixtures (tests/fixtures/make_view_fixtures.py writes them): photos,
and what each library's view made of them, pixel for pixel."""
import io

from PIL import Image

from tinyeffnet.weights.files import read_state_dict


def load(fixture, folder):
    """(photo paths by name, written into `folder`; {view: {photo: (size, uint8 RGB bytes)}}; the
    fixture's metadata)."""
    records, metadata = read_state_dict(fixture)
    photos, pixels = {}, {}
    for key, record in records.items():
        kind, rest = key.split("/", 1)
        if kind == "photo":
            photos[rest] = str(folder / rest)
            with open(photos[rest], "wb") as f:
                f.write(record.raw)
        else:
            view, name = rest.rsplit("/", 1)
            with Image.open(io.BytesIO(record.raw)) as img:
                pixels.setdefault(view, {})[name] = (img.size, img.tobytes())
    return photos, pixels, metadata
