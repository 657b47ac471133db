"""Schematic drawings: blocks as stacks of layers (the paper's Fig. 1) and the windows of a
strided convolution over a padded input (where SAME padding puts its zeros).
"""
from .canvas import AXIS, BLUE, GREEN, MUTED, ORANGE, PURPLE, RED, TEXT, new_figure

# layer kind -> fill colour of its box
LAYER_COLORS = {"conv": (198, 219, 239), "dw": (199, 233, 192), "bn": (240, 240, 240), "act": (253, 208, 162),
                "se": (218, 190, 230), "add": (255, 255, 255), "io": (255, 255, 255)}


def block_columns(columns, title=None, box=(200, 30), gap=12):
    """Blocks side by side, each a top-to-bottom stack of layers. `columns`: dicts with title,
    layers (a list of (text, kind) with kind a key of LAYER_COLORS) and skip (True: an arrow from
    the input around the stack into the last layer, which should be the addition)."""
    bw, bh = box
    tallest = max(len(c["layers"]) for c in columns)
    top = 50 if title else 12
    width = len(columns) * (bw + 110) + 20
    height = top + 34 + tallest * (bh + gap) + 20
    image, draw, fonts = new_figure((width, height), title)
    small = fonts["small"]
    for k, column in enumerate(columns):
        x0 = 30 + k * (bw + 110)
        draw.text((x0 + bw / 2, top), column["title"], fill=TEXT, font=fonts["title"], anchor="ma")
        y = top + 34
        centers = []
        for i, (text, kind) in enumerate(column["layers"]):
            box_xy = (x0, y, x0 + bw, y + bh)
            if kind == "add":
                r = bh / 2
                cx = x0 + bw / 2
                draw.ellipse((cx - r, y, cx + r, y + bh), fill=LAYER_COLORS["add"], outline=AXIS, width=2)
            else:
                draw.rounded_rectangle(box_xy, radius=6, fill=LAYER_COLORS.get(kind, "white"),
                                       outline=PURPLE if kind == "se" else AXIS, width=3 if kind == "se" else 1)
            draw.text((x0 + bw / 2, y + bh / 2), text, fill=TEXT, font=small, anchor="mm")
            if i:
                ax = x0 + bw / 2
                draw.line([(ax, y - gap), (ax, y)], fill=AXIS, width=2)
                draw.polygon([(ax - 4, y - 6), (ax + 4, y - 6), (ax, y)], fill=AXIS)
            centers.append(y + bh / 2)
            y += bh + gap
        if column.get("skip"):
            right = x0 + bw + 26
            draw.line([(x0 + bw, centers[0]), (right, centers[0]), (right, centers[-1]),
                       (x0 + bw / 2 + bh / 2, centers[-1])], fill=MUTED, width=2)
            draw.text((right + 4, (centers[0] + centers[-1]) / 2), "skip", fill=MUTED, font=small, anchor="lm")
    return image


WINDOW_COLORS = (BLUE, ORANGE, GREEN, RED, PURPLE, (140, 86, 75), (227, 119, 194), (23, 190, 207))


def conv_windows(panels, title=None, cell=44):
    """Where each output of a strided convolution looks. `panels`: dicts with title, values (the
    input, a list of rows), pad ((top, bottom), (left, right)), kernel, stride and optional notes
    (lines of text under the grid). Padding cells are grey zeros; each output's window is outlined
    in its own colour, inset a little more per window so that overlapping windows stay visible."""
    grids = []
    for p in panels:
        (pt, pb), (pl, pr) = p["pad"]
        rows, cols = len(p["values"]), len(p["values"][0])
        grids.append((rows + pt + pb, cols + pl + pr))
    top = 50 if title else 12
    notes = max(len(p.get("notes", ())) for p in panels)
    width = sum(c * cell + 60 for _, c in grids) + 20
    height = top + 30 + max(r for r, _ in grids) * cell + 20 + 18 * notes + 10
    image, draw, fonts = new_figure((width, height), title)
    small = fonts["small"]
    x0 = 30
    for p, (rows, cols) in zip(panels, grids):
        (pt, pb), (pl, pr) = p["pad"]
        k, s = p["kernel"], p["stride"]
        y0 = top + 30
        draw.text((x0 + cols * cell / 2, top), p["title"], fill=TEXT, font=fonts["title"], anchor="ma")
        for r in range(rows):
            for c in range(cols):
                inside = pt <= r < rows - pb and pl <= c < cols - pr
                box = (x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell, y0 + (r + 1) * cell)
                draw.rectangle(box, fill="white" if inside else (225, 225, 225), outline=(190, 190, 190))
                value = p["values"][r - pt][c - pl] if inside else 0
                draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), f"{value:g}",
                          fill=TEXT if inside else MUTED, font=small, anchor="mm")
        out_rows, out_cols = (rows - k) // s + 1, (cols - k) // s + 1
        for i in range(out_rows):
            for j in range(out_cols):
                n = i * out_cols + j
                inset = 3 + 4 * n
                color = WINDOW_COLORS[n % len(WINDOW_COLORS)]
                draw.rectangle((x0 + j * s * cell + inset, y0 + i * s * cell + inset,
                                x0 + (j * s + k) * cell - inset, y0 + (i * s + k) * cell - inset), outline=color,
                               width=3)
        for m, line in enumerate(p.get("notes", ())):
            draw.text((x0, y0 + rows * cell + 12 + 18 * m), line, fill=TEXT, font=small)
        x0 += cols * cell + 60
    return image
